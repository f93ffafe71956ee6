"""Tool pins: the approved fingerprint of every tool of a server, kept across restarts.

A `PinStore` holds, per server: `tools` (name → approved fingerprint and definition) and `pending`
(name → the last definition seen that differs from its pin or was never approved), so
`vallum mcp approve` can accept a change without talking to the server. `FilePinStore` keeps one
JSON file per server under a folder (atomic replace on every write) and re-reads a file that
another process (the `approve` command) changed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from vallum.mcp.fingerprint import tool_fingerprint

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def server_file_name(server: str) -> str:
    """A file name for a server name (unsafe characters replaced, never empty)."""
    return (_SAFE.sub("_", server).strip("._") or "default") + ".json"


def empty_state(server: str) -> dict[str, Any]:
    return {"version": 1, "server": server, "initialized": False, "tools": {}, "pending": {}}


class PinStore:
    """In-memory pins (kind `mcp` scans, tests). Subclasses persist them."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def state(self, server: str) -> dict[str, Any]:
        """The pin state of a server (created empty)."""
        with self._lock:
            return self._states.setdefault(server, empty_state(server))

    def save(self, server: str) -> None:
        """Persist a server's state (no-op in memory)."""

    def servers(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    # ------------------------------------------------------------------ operations
    def pin(self, server: str, tool: dict[str, Any], now: float) -> None:
        st = self.state(server)
        st["tools"][tool["name"]] = {"fingerprint": tool_fingerprint(tool), "definition": tool,
                                     "approved_at": now}
        st["pending"].pop(tool["name"], None)

    def set_pending(self, server: str, tool: dict[str, Any], reason: str, now: float) -> bool:
        """Record a definition waiting for approval; True if it was not already recorded."""
        st = self.state(server)
        fp = tool_fingerprint(tool)
        cur = st["pending"].get(tool["name"])
        if cur and cur.get("fingerprint") == fp:
            return False
        st["pending"][tool["name"]] = {"fingerprint": fp, "definition": tool, "reason": reason, "seen_at": now}
        return True

    def approve(self, server: str, names: list[str] | None, now: float) -> list[str]:
        """Accept pending definitions (all when `names` is empty/None); returns the names approved."""
        with self._lock:
            self.reload(server)
            st = self.state(server)
            chosen = list(st["pending"]) if not names else [n for n in names if n in st["pending"]]
            for n in chosen:
                p = st["pending"].pop(n)
                st["tools"][n] = {"fingerprint": p["fingerprint"], "definition": p["definition"],
                                  "approved_at": now}
            if chosen:
                self.save(server)
            return chosen

    def reload(self, server: str) -> None:
        """Pick up changes made by another process (no-op in memory)."""


class FilePinStore(PinStore):
    """Pins in `<folder>/<server>.json`, written atomically."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self._mtimes: dict[str, float] = {}

    def _path(self, server: str) -> Path:
        return self.folder / server_file_name(server)

    def state(self, server: str) -> dict[str, Any]:
        with self._lock:
            if server not in self._states:
                self._load(server)
            return self._states[server]

    def _load(self, server: str) -> None:
        path = self._path(server)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._mtimes[server] = path.stat().st_mtime_ns
        except FileNotFoundError:
            data = empty_state(server)
        except (OSError, ValueError) as exc:
            # a corrupt pin file must not silently re-pin whatever the server now says
            raise ValueError(f"cannot read pin file {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("tools"), dict):
            raise ValueError(f"pin file {path} has an unexpected shape")
        data.setdefault("pending", {})
        data.setdefault("initialized", bool(data["tools"]))
        self._states[server] = data

    def reload(self, server: str) -> None:
        with self._lock:
            path = self._path(server)
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                return
            if self._mtimes.get(server) != mtime or server not in self._states:
                self._load(server)

    def save(self, server: str) -> None:
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self._path(server)
            data = json.dumps(self._states[server], indent=2, sort_keys=True, ensure_ascii=False)
            fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            self._mtimes[server] = path.stat().st_mtime_ns

    def servers(self) -> list[str]:
        names = set(super().servers())
        if self.folder.is_dir():
            for p in self.folder.glob("*.json"):
                try:
                    names.add(json.loads(p.read_text(encoding="utf-8")).get("server") or p.stem)
                except (OSError, ValueError):
                    names.add(p.stem)
        return sorted(names)
