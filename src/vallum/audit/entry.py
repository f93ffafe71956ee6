"""The shape of audit log entries: building them from decisions, and the checkpoint message.

Every entry is one JSON object on one line, with these members in every kind:

``v`` (format version, 1), ``seq`` (0, 1, 2, … across all files), ``kind``, ``ts`` (RFC 3339 UTC,
microseconds, ``Z``), ``prev`` (hash of the entry before; 64 zeros for seq 0) and ``hash``
(SHA-256 hex of the canonical encoding of the entry without ``hash``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from vallum.audit.canonical import CanonicalError, canonical_bytes, canonical_float
from vallum.audit.redaction import scrub_text, scrub_value
from vallum.decisions.record import DecisionRecord, Principal
from vallum.detection.model import Finding

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


_second_cache: list[tuple[int, str]] = [(-1, "")]


def rfc3339(ts: float) -> str:
    """``2026-11-22T03:49:38.123456Z`` for a POSIX timestamp."""
    micros = round(ts * 1_000_000)
    secs, us = divmod(micros, 1_000_000)
    # Consecutive entries mostly share the second: format it once. The (second, text) pair is
    # replaced as one object, so concurrent writers never mix one second with another's text.
    cached = _second_cache[0]
    if cached[0] != secs:
        cached = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
        _second_cache[0] = cached
    return f"{cached[1]}.{us:06d}Z"


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


@lru_cache(maxsize=4096)
def _principal(p: Principal) -> tuple[dict[str, Any], int]:
    # Principals repeat across many decisions; the result is shared and never mutated.
    return scrub_value(json_safe(p.to_dict()), by_name=False)


def _finding_uncached(f: Finding) -> tuple[dict[str, Any], int]:
    d = f.to_dict()
    n = 0
    for name in ("evidence", "message", "location"):
        v = d[name]
        if type(v) is str:
            d[name], k = scrub_text(v)
            n += k
        else:
            d[name] = json_safe(v)
    for name in ("rule", "category", "severity"):
        if type(d[name]) is not str:
            d[name] = json_safe(d[name])
    d["decoded"] = json_safe(d["decoded"])
    if "score" in d:
        d["score"] = json_safe(d["score"])
    if "extra" in d:
        d["extra"], k = scrub_value(json_safe(d["extra"]))
        n += k
    return d, n


_finding_cached = lru_cache(maxsize=4096)(_finding_uncached)


def _finding(f: Finding) -> tuple[dict[str, Any], int]:
    # `extra` is excluded from Finding's equality, so only findings without it can share a cache slot.
    if f.extra is None:
        try:
            return _finding_cached(f)
        except TypeError:  # an unhashable field value
            pass
    return _finding_uncached(f)


def decision_body(record: DecisionRecord) -> tuple[dict[str, Any], int]:
    """The decision-specific members of an entry, re-redacted and canonically encodable;
    returns (body, number of redactions). Same members as `DecisionRecord.to_dict`, with ``ts``
    as an RFC 3339 string."""
    n = 0
    findings = []
    for f in record.findings:
        fd, k = _finding(f)
        findings.append(fd)
        n += k
    try:
        principal, k = _principal(record.principal)
    except TypeError:
        principal, k = scrub_value(json_safe(record.principal.to_dict()), by_name=False)
    n += k
    dest = record.destination
    if dest is not None:
        if type(dest) is str:
            dest, k = scrub_text(dest)
            n += k
        else:
            dest = json_safe(dest)
    d: dict[str, Any] = {
        "request_id": record.request_id,
        "transport": record.transport,
        "direction": record.direction,
        "action": record.action,
        "destination": dest,
        "principal": principal,
        "rules": sorted({fd["rule"] for fd in findings}),
        "findings": findings,
    }
    for name in ("request_id", "transport", "direction", "action"):
        if type(d[name]) is not str:
            d[name] = json_safe(d[name])
    if record.reason:
        d["reason"], k = scrub_text(str(record.reason))
        n += k
    if record.duration_ms is not None:
        d["duration_ms"] = json_safe(round(record.duration_ms, 3))
    if record.extra:
        d["extra"], k = scrub_value(json_safe(record.extra))
        n += k
    ts = record.ts
    d["ts"] = rfc3339(ts) if isinstance(ts, (int, float)) else json_safe(str(ts))
    return d, n


def checkpoint_message(seq: int, prev: str, ts: str, key_id: str, reason: str) -> bytes:
    """The bytes a checkpoint's Ed25519 signature covers."""
    return canonical_bytes(
        {"ctx": CHECKPOINT_CONTEXT, "key_id": key_id, "prev": prev, "reason": reason, "seq": seq, "ts": ts}
    )
