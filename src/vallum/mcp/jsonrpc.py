"""JSON-RPC 2.0 framing for MCP, parsed by hand so unknown (newer) messages relay untouched.

`parse_message(raw)` returns a `Message` (or raises `MessageError`): the decoded object, its kind
(request / notification / response / error / batch), and the original bytes so a message the
proxy does not change is forwarded byte for byte. Duplicate keys anywhere in a message are an
error: two parsers that pick different duplicates are how filters get bypassed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

MessageKind = Literal["request", "notification", "response", "error", "batch"]

#: JSON-RPC code for requests blocked by vallum (INTERFACES §5)
BLOCKED_CODE = -32001
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class MessageError(ValueError):
    """A message that is not valid JSON-RPC; `id` is the request id if one could be read."""

    def __init__(self, message: str, id: Any = None, rule: str = "mcp.protocol.invalid") -> None:
        super().__init__(message)
        self.id = id
        self.rule = rule


class DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(raw: str | bytes) -> Any:
    """`json.loads` that rejects duplicate keys and NaN/Infinity."""
    return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as MCP stdio frames it (one line, no embedded newlines)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(slots=True)
class Message:
    """One decoded JSON-RPC message (or batch) with its original bytes."""

    obj: Any
    kind: MessageKind
    raw: bytes | None = None

    @property
    def id(self) -> Any:
        return self.obj.get("id") if isinstance(self.obj, dict) else None

    @property
    def method(self) -> str | None:
        m = self.obj.get("method") if isinstance(self.obj, dict) else None
        return m if isinstance(m, str) else None

    @property
    def params(self) -> dict[str, Any]:
        p = self.obj.get("params") if isinstance(self.obj, dict) else None
        return p if isinstance(p, dict) else {}

    def encode(self) -> bytes:
        """The bytes to forward: the original ones when the message was not changed."""
        return self.raw if self.raw is not None else dumps(self.obj)

    def replace(self, obj: Any) -> Message:
        """A changed copy (forwarded re-encoded)."""
        return Message(obj=obj, kind=self.kind, raw=None)


def _guess_id(obj: Any) -> Any:
    if isinstance(obj, dict):
        i = obj.get("id")
        if isinstance(i, str | int) and not isinstance(i, bool):
            return i
    return None


def classify(obj: Any) -> MessageKind:
    """The kind of a decoded message; raises `MessageError` for a malformed one."""
    if isinstance(obj, list):
        if not obj:
            raise MessageError("empty batch")
        for item in obj:
            classify(item)
        return "batch"
    if not isinstance(obj, dict):
        raise MessageError(f"a JSON-RPC message must be an object, not {type(obj).__name__}")
    if obj.get("jsonrpc") != "2.0":
        raise MessageError("missing or wrong 'jsonrpc' (must be \"2.0\")", _guess_id(obj))
    has_id = "id" in obj
    rid = obj.get("id")
    if has_id and (isinstance(rid, bool) or not isinstance(rid, str | int | type(None))):
        raise MessageError("'id' must be a string, an integer or null", None)
    if "method" in obj:
        if not isinstance(obj["method"], str):
            raise MessageError("'method' must be a string", _guess_id(obj))
        if "params" in obj and not isinstance(obj["params"], dict | list):
            raise MessageError("'params' must be an object or an array", _guess_id(obj))
        if "result" in obj or "error" in obj:
            raise MessageError("a message cannot be both a request and a response", _guess_id(obj))
        return "request" if has_id and rid is not None else "notification"
    if "result" in obj and "error" in obj:
        raise MessageError("a response cannot hold both 'result' and 'error'", _guess_id(obj))
    if "result" in obj:
        if not has_id:
            raise MessageError("a response needs an 'id'")
        return "response"
    if "error" in obj:
        err = obj["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int) or isinstance(err.get("code"), bool):
            raise MessageError("'error' must be an object with an integer 'code'", _guess_id(obj))
        return "error"
    raise MessageError("not a request, notification or response", _guess_id(obj))


def parse_message(raw: str | bytes) -> Message:
    """Decode and classify one framed message (a stdio line or an HTTP body)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    try:
        obj = loads_strict(data)
    except DuplicateKeyError as exc:
        # read the id leniently so the blocked request can still be answered
        try:
            lenient = json.loads(data)
        except ValueError:
            lenient = None
        raise MessageError(f"duplicate JSON key {str(exc)!r}", _guess_id(lenient),
                           rule="mcp.protocol.duplicate_keys") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MessageError(f"invalid JSON: {exc}", rule="mcp.protocol.parse_error") from None
    return Message(obj=obj, kind=classify(obj), raw=data.strip())


def from_object(obj: Any) -> Message:
    """Classify an already-decoded message (kind `mcp` scan input); raw bytes are not kept."""
    return Message(obj=obj, kind=classify(obj), raw=None)


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (for optional `params`, `_meta` …)."""
    return value if isinstance(value, dict) else {}


def error_response(id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": err}


def result_response(id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": result}
