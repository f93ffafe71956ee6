"""The event schema (INTERFACES §7): validation and normalisation of one event. Pure.

`validate_event(obj, now=…)` turns a decoded JSON value into an `Event` or raises `EventError`
with a message naming the field. Time is passed in (`now`, seconds since the epoch) and only used
to reject timestamps far in the future or the past.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CORE_TYPES = frozenset(
    {
        "auth.register",
        "auth.login",
        "auth.login_failed",
        "auth.logout",
        "account.email_change",
        "account.password_change",
        "account.api_key_created",
        "session.start",
        "page.view",
        "llm.request",
        "llm.response",
        "tool.call",
        "tool.result",
        "retrieval.hit",
        "content.edit",
        "billing.charge",
        "guard.verdict",
    }
)

#: identity fields: string, at most MAX_ID_LEN characters
ID_FIELDS = ("id", "user", "session", "conversation", "api_key", "agent")
TEXT_FIELDS = ("user_agent", "accept_language")
KNOWN_FIELDS = frozenset(("type", "ts", "ip", "attrs", *ID_FIELDS, *TEXT_FIELDS))

NUMERIC_ATTRS = frozenset(
    {
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.request.max_tokens",
        "gen_ai.request.temperature",
        "cost_usd",
        "prompt_similarity_prev",
        "guard_score",
        "args_bytes",
        "result_bytes",
        "http_status",
    }
)
BOOL_ATTRS = frozenset({"refused", "stream_cancelled", "logprobs"})
STRING_ATTRS = frozenset(
    {
        "gen_ai.request.model",
        "gen_ai.tool.name",
        "prompt_hash",
        "topic",
        "dest_domain",
        "doc_id",
        "plan",
    }
)
UNIT_ATTRS = frozenset({"prompt_similarity_prev", "guard_score"})

MAX_ID_LEN = 256
MAX_TEXT_LEN = 1024
MAX_ATTRS = 64
MAX_ATTR_STRING = 4096
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
#: epoch milliseconds accepted by the parser: years 1970..9999
_MAX_EPOCH_MS = 253402300799999


class EventError(ValueError):
    """An event that cannot be accepted; the message names the field and the problem."""


@dataclass(slots=True)
class Event:
    """One validated event. `ts` is seconds since the epoch (float, millisecond precision)."""

    type: str
    ts: float
    id: str
    user: str | None = None
    session: str | None = None
    conversation: str | None = None
    api_key: str | None = None
    agent: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    accept_language: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def ts_ms(self) -> int:
        return round(self.ts * 1000)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form (what the store keeps and the API returns)."""
        out: dict[str, Any] = {"type": self.type, "ts": format_ts(self.ts), "id": self.id}
        for name in ("user", "session", "conversation", "api_key", "agent", "ip", "user_agent", "accept_language"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        out["attrs"] = self.attrs
        return out


def format_ts(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-20T19:02:11.250Z``."""
    ms = round(ts * 1000)
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_ts(value: Any) -> float:
    """RFC 3339 string or epoch milliseconds (int or float) → seconds since the epoch.

    Raises `EventError` for anything else (booleans, naive timestamps, out-of-range values).
    """
    if isinstance(value, bool):
        raise EventError("ts must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError("ts must be a finite number")
        if value < 0 or value > _MAX_EPOCH_MS:
            raise EventError(f"ts {value} is out of range for epoch milliseconds")
        return round(float(value)) / 1000.0
    if isinstance(value, str):
        m = _RFC3339.match(value.strip())
        if not m:
            raise EventError(f"ts {value[:64]!r} is not RFC 3339 (e.g. 2026-11-20T19:02:11.250Z) or epoch ms")
        y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
        frac, tz = m.group(7), m.group(8)
        try:
            dt = datetime(y, mo, d, h, mi, min(s, 59), tzinfo=UTC)
        except ValueError as exc:
            raise EventError(f"ts {value[:64]!r}: {exc}") from None
        secs = dt.timestamp()
        if frac:
            secs += int(frac[1:4].ljust(3, "0")) / 1000.0
        if tz not in ("Z", "z"):
            sign = 1 if tz[0] == "+" else -1
            hh, mm = int(tz[1:3]), int(tz[4:6])
            if hh > 23 or mm > 59:
                raise EventError(f"ts {value[:64]!r}: bad UTC offset")
            secs -= sign * (hh * 3600 + mm * 60)
        if secs < 0:
            raise EventError(f"ts {value[:64]!r} is before 1970")
        return round(secs * 1000) / 1000.0
    raise EventError(f"ts must be an RFC 3339 string or epoch milliseconds, not {type(value).__name__}")


def _check_attr(key: str, val: Any) -> None:
    if key in NUMERIC_ATTRS:
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise EventError(f"attrs.{key} must be a number, not {type(val).__name__}")
        if isinstance(val, float) and not math.isfinite(val):
            raise EventError(f"attrs.{key} must be finite")
        if val < 0:
            raise EventError(f"attrs.{key} must not be negative")
        if key in UNIT_ATTRS and val > 1:
            raise EventError(f"attrs.{key} must be between 0 and 1")
    elif key in BOOL_ATTRS:
        if not isinstance(val, bool):
            raise EventError(f"attrs.{key} must be true or false, not {type(val).__name__}")
    elif key in STRING_ATTRS:
        if not isinstance(val, str):
            raise EventError(f"attrs.{key} must be a string, not {type(val).__name__}")
        if len(val) > MAX_ATTR_STRING:
            raise EventError(f"attrs.{key} is longer than {MAX_ATTR_STRING} characters")
    elif isinstance(val, str):
        if len(val) > MAX_ATTR_STRING:
            raise EventError(f"attrs.{key} is longer than {MAX_ATTR_STRING} characters")
    elif isinstance(val, float) and not math.isfinite(val):
        raise EventError(f"attrs.{key} must be finite")


def validate_event(
    obj: Any,
    *,
    now: float | None = None,
    max_future_s: float = 900.0,
    max_past_s: float = 400 * 86400.0,
    id_factory: Any = None,
) -> Event:
    """Validate one decoded JSON value as an event (INTERFACES §7).

    `now` (seconds since the epoch) bounds the timestamp: more than `max_future_s` ahead or
    `max_past_s` behind is rejected. `now=None` skips those two checks (replay, tests).
    """
    if not isinstance(obj, dict):
        raise EventError(f"an event must be a JSON object, not {_json_type(obj)}")
    unknown = [k for k in obj if k not in KNOWN_FIELDS]
    if unknown:
        raise EventError(f"unknown field {unknown[0]!r} (custom data goes in attrs)")
    etype = obj.get("type")
    if etype is None:
        raise EventError("missing required field 'type'")
    if not isinstance(etype, str):
        raise EventError(f"type must be a string, not {_json_type(etype)}")
    if etype not in CORE_TYPES:
        if not etype.startswith("x."):
            raise EventError(f"unknown event type {etype[:64]!r} (custom types must begin with 'x.')")
        if len(etype) > 128 or not _TYPE_RE.match(etype):
            raise EventError(f"custom event type {etype[:64]!r} must be dotted lowercase words, e.g. x.app.export")
    if "ts" not in obj:
        raise EventError("missing required field 'ts'")
    ts = parse_ts(obj["ts"])
    if now is not None:
        if ts > now + max_future_s:
            raise EventError(f"ts {format_ts(ts)} is {ts - now:.0f}s in the future (limit {max_future_s:.0f}s)")
        if ts < now - max_past_s:
            raise EventError(f"ts {format_ts(ts)} is older than the accepted {max_past_s / 86400:.0f} days")
    fields: dict[str, Any] = {}
    for name in ID_FIELDS:
        v = obj.get(name)
        if v is None:
            continue
        if not isinstance(v, str):
            raise EventError(f"{name} must be a string, not {_json_type(v)}")
        if not v or len(v) > MAX_ID_LEN:
            raise EventError(f"{name} must be 1..{MAX_ID_LEN} characters")
        fields[name] = v
    for name in TEXT_FIELDS:
        v = obj.get(name)
        if v is None:
            continue
        if not isinstance(v, str):
            raise EventError(f"{name} must be a string, not {_json_type(v)}")
        fields[name] = v[:MAX_TEXT_LEN]
    if "user" not in fields and etype != "auth.login_failed":
        raise EventError(f"missing required field 'user' (required on {etype})")
    ip = obj.get("ip")
    if ip is not None:
        fields["ip"] = normalize_ip(ip)
    attrs = obj.get("attrs", {})
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise EventError(f"attrs must be an object, not {_json_type(attrs)}")
    if len(attrs) > MAX_ATTRS:
        raise EventError(f"attrs has {len(attrs)} keys (at most {MAX_ATTRS})")
    for k, v in attrs.items():
        _check_attr(k, v)
    eid = fields.pop("id", None)
    if eid is None:
        eid = id_factory() if id_factory else "gen-" + uuid.uuid4().hex
    return Event(type=etype, ts=ts, id=eid, attrs=attrs, **fields)


def normalize_ip(value: Any) -> str:
    """A textual IPv4/IPv6 address in canonical form, or `EventError`."""
    import ipaddress

    if not isinstance(value, str):
        raise EventError(f"ip must be a string, not {_json_type(value)}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise EventError(f"ip {value[:64]!r} is not an IPv4 or IPv6 address") from None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def event_from_stored(d: dict[str, Any]) -> Event:
    """Rebuild an `Event` from its canonical stored form (no time-bound checks)."""
    return validate_event(d, now=None)
