"""A decision sink that appends JSON Lines to a file (`vallum mcp … --decisions FILE`)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from vallum.decisions import DecisionRecord


class JsonlDecisionSink:
    """Appends each record as one JSON line; refuses (returns False) when the file cannot be written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def emit(self, record: DecisionRecord) -> bool:
        line = json.dumps(record.to_dict(), ensure_ascii=False, default=str) + "\n"
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
            return True
        except OSError:
            return False
