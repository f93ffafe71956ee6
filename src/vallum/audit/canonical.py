"""The canonical encoding that audit hashes and signatures are computed over.

``canonical_bytes(value)`` is JSON with:

- object keys sorted by Unicode code point, no duplicate keys, keys are strings;
- no whitespace at all (separators ``,`` and ``:``);
- strings as UTF-8, not ASCII-escaped; only ``"`` ``\\`` and control characters below U+0020 are
  escaped (``\\b \\f \\n \\r \\t`` in short form, the rest as ``\\u00xx`` with lowercase hex);
  a lone surrogate is an error;
- ``true``, ``false``, ``null``; integers in plain decimal;
- floats without ambiguity: a float with an integral value below 2**53 is written as that integer
  (``1.0`` → ``1``, ``-0.0`` → ``0``); other finite floats with 1e-4 <= |x| < 1e16 are written in
  their shortest round-trip decimal form (``0.25``, ``12.5``), which is also what JavaScript and
  RFC 8785 produce in that range. Any other float (NaN, infinities, tiny or huge non-integral
  magnitudes) is an error: the audit writer turns such a value into a string before hashing.

A parser that reads an entry back and re-encodes it gets the same bytes, which is what lets
``vallum audit verify`` recompute every hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: the `prev` of the very first entry of a log
GENESIS_PREV = "0" * 64

_MAX_EXACT = 2**53


def _refuse(o: Any) -> Any:
    raise TypeError(f"cannot encode a value of type {type(o).__name__}")


_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    # Built once: JSONEncoder.encode would build a C encoder for every call, which doubles the cost.
    _c_encode = _c_make_encoder(None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def _dumps(value: Any) -> str:
        return "".join(_c_encode(value, 0))

else:  # pragma: no cover - CPython always has the C accelerator
    _dumps = json.JSONEncoder(  # type: ignore[assignment]
        ensure_ascii=False,
        allow_nan=False,
        sort_keys=True,
        separators=(",", ":"),
        check_circular=False,
        default=_refuse,
    ).encode


class CanonicalError(ValueError):
    """A value that has no canonical encoding."""


def canonical_float(x: float) -> int | float:
    """The number a float is encoded as; raises `CanonicalError` if it has no canonical form."""
    if x != x or x in (float("inf"), float("-inf")):
        raise CanonicalError(f"non-finite float {x!r}")
    if x.is_integer() and -_MAX_EXACT < x < _MAX_EXACT:
        return int(x)
    if 1e-4 <= abs(x) < 1e16:
        return x
    raise CanonicalError(f"float {x!r} is outside the canonical range (store it as a string)")


def normalize(value: Any) -> Any:
    """Validate `value` for canonical encoding and map floats to their canonical numbers."""
    t = type(value)
    if t is str:
        _check_str(value)
        return value
    if t is int or t is bool or value is None:
        return value
    if t is float:
        return canonical_float(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalError(f"object key {k!r} is not a string")
            _check_str(k)
            out[k] = normalize(v)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, str):  # str subclasses (e.g. StrEnum) encode as their text
        return normalize(str(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return canonical_float(float(value))
    raise CanonicalError(f"cannot encode a value of type {t.__name__}")


def _check_str(s: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalError("string holds a lone surrogate (not valid Unicode)") from None


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of a JSON-like value (see the module docstring)."""
    return _dumps(normalize(value)).encode("utf-8")


def encode_normalized(value: Any) -> bytes:
    """Canonical bytes of a value already passed through `normalize` (the writer's fast path)."""
    return _dumps(value).encode("utf-8")


def entry_hash(entry_without_hash: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding of an entry without its ``hash`` member."""
    return hashlib.sha256(canonical_bytes(entry_without_hash)).hexdigest()


def entry_line(encoded: bytes, digest: str) -> bytes:
    """The stored line: the canonical entry with ``"hash"`` appended as its last member, then LF."""
    return b'%s,"hash":"%s"}\n' % (encoded[:-1], digest.encode("ascii"))
