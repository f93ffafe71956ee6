"""Reading and filtering audit entries (``vallum audit show``). No verification happens here."""

from __future__ import annotations

import calendar
import fnmatch
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vallum.audit.files import list_segments, split_lines
from vallum.audit.verify import log_directories

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ENTRY_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$")


def parse_time(text: str, now: float) -> float:
    """Seconds since the epoch for ``--since/--until``.

    Accepts RFC 3339 / ISO 8601 (``2026-11-22T03:00:00Z``, ``…+01:00``; no offset = UTC),
    a date (``2026-11-22``, midnight UTC), epoch seconds (``1795000000``), or a duration before
    `now` (``30s``, ``15m``, ``2h``, ``7d``, ``1w``). Raises ValueError otherwise.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty time")
    m = _RELATIVE.match(s)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", s) and len(s.split(".")[0]) >= 9:
        return float(s)
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use RFC 3339, a date, epoch seconds or 15m/2h/7d)") from None
    if dt.tzinfo is None:
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    return dt.timestamp()


def entry_time(entry: dict[str, Any]) -> float | None:
    m = _ENTRY_TS.match(str(entry.get("ts", "")))
    if not m:
        return None
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)


@dataclass(slots=True)
class EntryFilter:
    """What ``vallum audit show`` keeps; every given condition must hold."""

    since: float | None = None
    until: float | None = None
    rule: str | None = None
    principal: str | None = None
    action: str | None = None
    kind: str | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.kind is not None and entry.get("kind") != self.kind:
            return False
        if self.action is not None and entry.get("action") != self.action:
            return False
        if self.since is not None or self.until is not None:
            t = entry_time(entry)
            if t is None:
                return False
            if self.since is not None and t < self.since:
                return False
            if self.until is not None and t > self.until:
                return False
        if self.rule is not None:
            rules = entry.get("rules") or []
            if not any(fnmatch.fnmatchcase(str(r), self.rule) for r in rules):
                return False
        if self.principal is not None:
            p = entry.get("principal") or {}
            if not isinstance(p, dict):
                return False
            field, sep, value = self.principal.partition(":")
            if sep and field in ("user", "session", "agent", "api_key", "ip"):
                if str(p.get(field)) != value:
                    return False
            elif self.principal not in {str(v) for v in p.values()}:
                return False
        return True


def iter_entries(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, entry) for every parseable line of a log file or directory, in chain order."""
    p = Path(path)
    files = [p] if p.is_file() else [f for d in log_directories(p) for _, f in list_segments(d)]
    for f in files:
        lines, _ = split_lines(f.read_bytes())
        for raw in lines:
            try:
                entry = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(entry, dict):
                yield f.name, entry


def format_entry(entry: dict[str, Any]) -> str:
    """One human-readable line."""
    kind = entry.get("kind", "?")
    head = f"{entry.get('ts', '?')}  #{entry.get('seq', '?')}"
    if kind != "decision":
        details = {k: v for k, v in entry.items() if k not in ("v", "seq", "kind", "ts", "prev", "hash", "sig")}
        return f"{head}  [{kind}]  " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in details.items())
    principal = entry.get("principal") or {}
    who = " ".join(f"{k}={v}" for k, v in principal.items()) if isinstance(principal, dict) else ""
    rules = ",".join(map(str, entry.get("rules") or [])) or "-"
    parts = [
        head,
        str(entry.get("action", "?")).ljust(5),
        str(entry.get("transport", "?")),
        str(entry.get("destination") or "-"),
        rules,
    ]
    if who:
        parts.append(who)
    if entry.get("reason"):
        parts.append(f"reason={entry['reason']}")
    return "  ".join(parts)
