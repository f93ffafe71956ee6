"""Server-sent events: split a stream into events and scan each one, and across events.

Sans-I/O. `SSESplitter.feed(bytes)` returns the complete raw events (forwarded byte-exact once
scanned); `SSEScanner.scan(raw_event)` returns findings for the event's text *together with* the tail
of the text of the events before it, so an injection split across two events is caught. Memory is
bounded by the largest event plus the window.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from vallum.detection.model import Finding

#: a blank line: two line endings in a row (CRLF, LF or CR); atomic so one CRLF is never two endings
_EVENT_END = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")
_LINE = re.compile(r"\r\n|\r|\n")
_TEXT_KEYS = frozenset({"text", "content", "delta", "token", "output_text", "message", "value", "partial_json",
                        "arguments", "data", "completion", "response"})


class SSEError(ValueError):
    """An event larger than the configured maximum."""


class SSESplitter:
    """Bytes in, complete raw events (each with its terminating blank line) out."""

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data
        events: list[bytes] = []
        pos = 0
        while True:
            m = _EVENT_END.search(buf, pos)
            if m is None or (m.end() == len(buf) and buf.endswith(b"\r")):
                break  # (a CR at the very end may be half of a CRLF: wait for the next byte)
            events.append(buf[pos:m.end()])
            pos = m.end()
        self._buf = buf[pos:]
        if len(self._buf) > self.max_event_bytes:
            raise SSEError(f"server-sent event larger than {self.max_event_bytes} bytes")
        return events

    def flush(self) -> bytes:
        """What is left at the end of the stream (an event without its blank line)."""
        rest, self._buf = self._buf, b""
        return rest


def event_data(raw: bytes) -> str:
    """The event's data: its `data:` lines joined by newlines (the SSE spec's interpretation)."""
    text = raw.decode("utf-8", errors="replace")
    lines = []
    for line in _LINE.split(text):
        if line.startswith("data:"):
            v = line[5:]
            lines.append(v[1:] if v.startswith(" ") else v)
    return "\n".join(lines)


def _strings(obj: Any, out: list[str], preferred: list[str], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str):
                (preferred if k in _TEXT_KEYS else out).append(v)
            else:
                _strings(v, out, preferred, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, str):
                out.append(v)
            else:
                _strings(v, out, preferred, depth + 1)


def event_text(data: str) -> str:
    """The text an event contributes to the stream: for JSON, its text-bearing string values.

    Streaming APIs send JSON deltas (`{"delta": {"text": "…"}}`); the text values, concatenated
    across events, are what the model is saying, so that is what is matched across events.
    """
    s = data.lstrip()
    if s[:1] in ("{", "["):
        try:
            obj = json.loads(s)
        except ValueError:
            return data
        other: list[str] = []
        preferred: list[str] = []
        _strings(obj, other, preferred)
        return "".join(preferred) if preferred else " ".join(other)
    return data


class SSEScanner:
    """Scans events one by one with a window over the text of the events before."""

    def __init__(self, scan: Callable[[str, str], list[Finding]], window_chars: int) -> None:
        self._scan = scan
        self.window_chars = window_chars
        self._tail = ""
        self._reported: set[tuple[str, str]] = set()
        self.events = 0

    def scan(self, raw: bytes) -> list[Finding]:
        """Findings that this event brings (alone or joined with the tail of earlier events)."""
        self.events += 1
        data = event_data(raw)
        if not data:
            return []
        text = event_text(data)
        location = f"response.sse[{self.events}]"
        findings = self._scan(self._tail + text, location)
        if text != data:
            findings = findings + self._scan(data, location)
        new = []
        for f in findings:
            key = (f.rule, f.evidence)
            if key not in self._reported:
                self._reported.add(key)
                new.append(f)
        if self.window_chars:
            self._tail = (self._tail + text)[-self.window_chars:]
        return new
