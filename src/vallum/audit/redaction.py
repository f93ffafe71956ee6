"""Defence in depth: strip anything that still looks like a whole secret before it is logged.

Detectors already redact their evidence; this pass exists for the detector that forgot, for a
reason string that quotes a header, and for free-form ``extra`` data. It shortens, with
`vallum.detection.model.redact`:

- long high-entropy tokens (24+ characters of ``[A-Za-z0-9_+=-]`` mixing letters and digits);
- the value after a sensitive name (``password=…``, ``"token": "…"``, ``api_key: …``, ``Bearer …``);
- the password in URL userinfo (``https://user:pass@host``).

It is a heuristic with a bias towards over-redaction; it is not the detection engine.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from vallum.detection.model import redact

_LONG_RUN = r"[A-Za-z0-9_+=\-]{24,}"
_SENSITIVE_NAME = (
    r"(?:pass(?:word|wd)?|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|"
    r"client[_\-]?secret|auth(?:orization)?|session[_\-]?id|cookie|signature|sig|credential)"
)
_CANDIDATE = re.compile(rf"{_LONG_RUN}|(?i:{_SENSITIVE_NAME}|bearer|basic\s)|://[^\s/@]*:[^\s/@]*@")
_LONG_RUN_RE = re.compile(_LONG_RUN)
_NAMED_VALUE = re.compile(rf"(?i)(\b{_SENSITIVE_NAME}[\"']?\s*[=:]\s*[\"']?)(?!(?:bearer|basic)\s)([^\s\"'&,;]{{4,}})")
_BEARER = re.compile(r"(?i)(\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/=\-]{8,})")
_USERINFO = re.compile(r"(://[^\s/:@]*:)([^\s/@]+)(@)")
_REDACTED_MARK = "[redacted]"


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _looks_secret(token: str) -> bool:
    has_digit = any(ch.isdigit() for ch in token)
    has_alpha = any(ch.isalpha() for ch in token)
    return has_digit and has_alpha and _entropy(token) >= 3.5


def _shorten(value: str) -> str:
    if value.endswith(_REDACTED_MARK) or value.endswith("…"):
        return value
    return redact(value)


@lru_cache(maxsize=16384)
def scrub_text(text: str) -> tuple[str, int]:
    """`text` with secret-looking parts shortened, and how many were shortened."""
    if len(text) < 8 or not _CANDIDATE.search(text):
        return text, 0
    count = 0

    def _value(m: re.Match[str]) -> str:
        nonlocal count
        val = m.group(2)
        if _REDACTED_MARK in val:
            return m.group(0)
        count += 1
        return m.group(1) + _shorten(val) + (m.group(3) if m.lastindex and m.lastindex >= 3 else "")

    def _token(m: re.Match[str]) -> str:
        nonlocal count
        tok = m.group(0)
        end = m.end()
        # Already-redacted evidence (`ghp_…[redacted]`) is left alone.
        if text.startswith("…", end) or not _looks_secret(tok):
            return tok
        count += 1
        return redact(tok)

    out = _USERINFO.sub(_value, text)
    out = _BEARER.sub(_value, out)
    out = _NAMED_VALUE.sub(_value, out)
    out = _LONG_RUN_RE.sub(_token, out)
    return out, count


_HASH_KEYS = ("hash", "digest", "sha256", "sha1", "prompt_hash")
_HEX = re.compile(r"[0-9a-f]{32,128}")


_SENSITIVE_KEY = re.compile(rf"(?i)^[\w.\-]*{_SENSITIVE_NAME}[\w.\-]*$")


def scrub_value(value: Any, key: str | None = None, by_name: bool = True) -> tuple[Any, int]:
    """A JSON-like value with every string scrubbed; returns (value, number of redactions).

    With `by_name`, a string under a sensitive key (``password``, ``api_key``, ``token``, …) is
    shortened whatever it looks like.
    """
    if type(value) is str:
        if key is not None:
            if key.endswith(_HASH_KEYS) and _HEX.fullmatch(value):
                return value, 0  # a digest is not a secret
            if by_name and len(value) >= 4 and _REDACTED_MARK not in value and _SENSITIVE_KEY.match(key):
                return redact(value), 1
        return scrub_text(value)
    if isinstance(value, dict):
        total = 0
        out = {}
        for k, v in value.items():
            sk = str(k)
            nk, n1 = scrub_text(sk)
            nv, n2 = scrub_value(v, sk, by_name)
            out[nk] = nv
            total += n1 + n2
        return out, total
    if isinstance(value, (list, tuple)):
        total = 0
        items = []
        for v in value:
            nv, n = scrub_value(v, key, by_name)
            items.append(nv)
            total += n
        return items, total
    return value, 0
