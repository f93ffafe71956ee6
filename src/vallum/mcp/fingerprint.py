"""Canonical tool fingerprints and readable diffs between two definitions of a tool.

The fingerprint covers every field of the definition (name, title, description, schemas,
annotations, `_meta`, …): canonical JSON (sorted keys, no whitespace, NFC-normalised strings
left as sent) hashed with SHA-256. Same definition → same fingerprint, whatever the key order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: fields whose change does not alter what a tool does or says (never part of the fingerprint)
VOLATILE_FIELDS: frozenset[str] = frozenset()


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, non-ASCII kept: one spelling per JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def tool_fingerprint(tool: dict[str, Any]) -> str:
    """`sha256:<hex>` of the tool definition's canonical JSON."""
    body = {k: v for k, v in tool.items() if k not in VOLATILE_FIELDS}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _flatten(value[k], f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value


def _short(v: Any, n: int = 160) -> str:
    s = v if isinstance(v, str) else canonical_json(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def tool_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 20) -> list[str]:
    """Readable field-by-field changes: `~ description: "a" → "b"`, `+ inputSchema…`, `- title`."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    lines: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key in a and key in b:
            if a[key] != b[key]:
                lines.append(f"~ {key}: {_short(a[key])!s} → {_short(b[key])!s}")
        elif key in b:
            lines.append(f"+ {key}: {_short(b[key])}")
        else:
            lines.append(f"- {key}: {_short(a[key])}")
        if len(lines) >= limit:
            lines.append("… (more changes)")
            break
    return lines
