"""The shape of audit log entries: building them from decisions, and the checkpoint message.

Every entry is one JSON object on one line, with these members in every kind:

``v`` (format version, 1), ``seq`` (0, 1, 2, … across all files), ``kind``, ``ts`` (RFC 3339 UTC,
microseconds, ``Z``), ``prev`` (hash of the entry before; 64 zeros for seq 0) and ``hash``
(SHA-256 hex of the canonical encoding of the entry without ``hash``).
"""

from __future__ import annotations

import time
from typing import Any

from vallum.audit.canonical import CanonicalError, canonical_bytes, canonical_float
from vallum.audit.redaction import scrub_text, scrub_value
from vallum.decisions.record import DecisionRecord

FORMAT_VERSION = 1

KIND_DECISION = "decision"
KIND_CHECKPOINT = "checkpoint"
KIND_START = "start"
KIND_RECOVERY = "recovery"
KIND_ROTATE = "rotate"
KIND_DROPPED = "dropped"
KIND_REFUSED = "refused"
KINDS = (KIND_DECISION, KIND_CHECKPOINT, KIND_START, KIND_RECOVERY, KIND_ROTATE, KIND_DROPPED, KIND_REFUSED)

CHECKPOINT_REASONS = ("interval", "rotate", "close")
CHECKPOINT_CONTEXT = "vallum.audit.checkpoint/1"


def rfc3339(ts: float) -> str:
    """``2026-11-22T03:49:38.123456Z`` for a POSIX timestamp."""
    micros = round(ts * 1_000_000)
    secs, us = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{us:06d}Z"


def json_safe(value: Any) -> Any:
    """`value` made canonically encodable: floats out of range and unknown types become strings,
    lone surrogates become U+FFFD. Never raises."""
    t = type(value)
    if t is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if t is int or t is bool or value is None:
        return value
    if t is float:
        try:
            return canonical_float(value)
        except CanonicalError:
            return repr(value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, str):
        return json_safe(str(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return json_safe(float(value))
    return json_safe(repr(value))


def decision_body(record: DecisionRecord) -> tuple[dict[str, Any], int]:
    """The decision-specific members of an entry, re-redacted and canonically encodable;
    returns (body, number of redactions)."""
    d = record.to_dict()
    ts = d.pop("ts")
    n = 0
    dest = d.get("destination")
    if type(dest) is str:
        d["destination"], k = scrub_text(dest)
        n += k
    if d["principal"]:
        d["principal"], k = scrub_value(json_safe(d["principal"]), by_name=False)
        n += k
    for name in ("request_id", "transport", "direction", "action"):
        if type(d[name]) is not str:
            d[name] = json_safe(d[name])
    for f in d["findings"]:
        for name in ("evidence", "message", "location"):
            v = f[name]
            if type(v) is str:
                f[name], k = scrub_text(v)
                n += k
        if "score" in f:
            f["score"] = json_safe(f["score"])
        if "extra" in f:
            f["extra"], k = scrub_value(json_safe(f["extra"]))
            n += k
    if "reason" in d:
        d["reason"], k = scrub_text(str(d["reason"]))
        n += k
    if "duration_ms" in d:
        d["duration_ms"] = json_safe(d["duration_ms"])
    if "extra" in d:
        d["extra"], k = scrub_value(json_safe(d["extra"]))
        n += k
    d["ts"] = rfc3339(ts) if isinstance(ts, (int, float)) else str(ts)
    return d, n


def checkpoint_message(seq: int, prev: str, ts: str, key_id: str, reason: str) -> bytes:
    """The bytes a checkpoint's Ed25519 signature covers."""
    return canonical_bytes(
        {"ctx": CHECKPOINT_CONTEXT, "key_id": key_id, "prev": prev, "reason": reason, "seq": seq, "ts": ts}
    )
