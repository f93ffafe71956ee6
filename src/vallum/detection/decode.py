"""Recursive decoding of encoded payloads (issue 2 §2).

`decode_layers(text, max_depth, max_bytes)` returns every decoded variant found inside `text`
(not including `text` itself), each with the chain of decoders that produced it, e.g.
``("base64", "gzip")``. Bounded in depth and in total output size (`max_bytes` characters).

Decoders: base64 (standard, URL-safe, unpadded, wrapped lines), base32, hex (plain, ``\\x41``,
``0x41``, ``41:42``, ``41 42``), URL percent-encoding (repeated layers come out as
``("url", "url")``), JSON ``\\uXXXX`` escapes, HTML entities, quoted-printable, gzip / zlib /
raw deflate inside a binary layer, and ROT13.

Candidate discovery is cheap: one Hyperscan pass (or the same patterns with `re`) says which
encodings can be present, and base64/base32/hex runs are located on a byte-class image of the
text (one `bytes.translate` plus a literal search). A variant is kept only when it is mostly
printable text (or a compressed layer that decompresses to such text), so long words, hashes,
UUIDs and images do not produce garbage variants. ROT13 is tried only when the text contains at
least two ROT13-encoded directive words (``vtaber`` = ignore, ``cebzcg`` = prompt, …).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import quopri
import re
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from vallum.detection.matcher import PatternScout


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded variant and the decoders that produced it, outermost first."""

    text: str
    chain: tuple[str, ...]


#: shortest base64/base32/hex run worth decoding
MIN_RUN = 16
#: shortest decoded text kept
MIN_TEXT = 6
#: share of printable characters a decoded text needs
PRINTABLE_SHARE = 0.9

_ROT13_WORDS = (
    "ignore", "instructions", "previous", "system", "prompt", "password", "secret", "reveal",
    "disregard", "forget", "assistant", "credentials", "override", "jailbreak", "developer", "token",
)
_ROT13_KEYS = {f"rot13_{w}": codecs.encode(w, "rot13").encode() for w in _ROT13_WORDS}

# PatternScout compiles `re` and Hyperscan from the same text (no flags), so the ROT13 words are
# matched case-insensitively through character classes.
_SCOUT_PATTERNS = {
        "url": rb"%[0-9a-fA-F]{2}",
        "json": rb"\\u[0-9a-fA-F]{4}",
        "entity": rb"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});",
        "qp": rb"=[0-9A-F]{2}[^=\r\n]{0,76}=[0-9A-F]{2}|=[0-9A-F]{2}=\r?\n",
        "xhex": rb"(?:\\x[0-9a-fA-F]{2}){4}",
        "0xhex": rb"(?:0[xX][0-9a-fA-F]{2}[\s,]*){4}",
        "sephex": rb"(?:[0-9a-fA-F]{2}[: ]){5}[0-9a-fA-F]{2}",
    **{k: b"".join(b"[%c%c]" % (c, c - 32) for c in v) for k, v in _ROT13_KEYS.items()},
}
_SCOUT = PatternScout(_SCOUT_PATTERNS)

# byte classes: base64 alphabet → "A", padding stays "=", line breaks stay, the rest → space
_CLASS = bytearray(b" " * 256)
for _c in (string.ascii_letters + string.digits + "+/-_").encode():
    _CLASS[_c] = ord("A")
_CLASS[ord("=")] = ord("=")
_CLASS[ord("\n")] = ord("\n")
_CLASS[ord("\r")] = ord("\r")
_CLASS_TABLE = bytes(_CLASS)
_RUN = re.compile(b"A" * MIN_RUN + rb"A*=*(?:\r?\n(?:A{8,}=*))*")

_HEX = frozenset(b"0123456789abcdefABCDEF")
_B32 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")
_XHEX_RE = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")
_0XHEX_RE = re.compile(r"(?:0[xX][0-9a-fA-F]{2}[\s,]*){4,}")
_SEPHEX_RE = re.compile(r"[0-9a-fA-F]{2}(?:([: ])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){4,}")
_JSON_ESC = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])"
)
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_QP_ESC = re.compile(r"=[0-9A-F]{2}")


def decode_layers(text: str, max_depth: int = 4, max_bytes: int = 4 * 1024 * 1024) -> list[Decoded]:
    """Every decoded variant inside `text`, breadth first, at most `max_depth` layers deep.

    The variants together hold at most `max_bytes` characters; decoding stops there. Never
    raises on any input.
    """
    out: list[Decoded] = []
    if max_depth <= 0 or not text:
        return out
    budget = max_bytes
    seen = {text}
    frontier = [(text, ())]
    for _ in range(max_depth):
        nxt: list[tuple[str, tuple[str, ...]]] = []
        for t, chain in frontier:
            for name, decoded in _decode_once(t, budget):
                if decoded in seen or len(decoded) > budget:
                    continue
                seen.add(decoded)
                budget -= len(decoded)
                full = (*chain, *name)
                out.append(Decoded(decoded, full))
                nxt.append((decoded, full))
                if budget <= 0:
                    return out
        if not nxt:
            break
        frontier = nxt
    return out


def _decode_once(text: str, budget: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """One layer of decoding: (decoder chain, text) for each candidate that decodes to text."""
    data = text.encode("utf-8", "surrogatepass")
    found = _SCOUT.present(data)
    if len(data) >= MIN_RUN:
        yield from _runs(data, budget)
    if not found:
        return
    if "url" in found:
        decoded = unquote(text, errors="replace")
        if decoded != text and _mostly_printable(decoded):
            yield ("url",), decoded
    if "json" in found:
        decoded = _JSON_ESC.sub(_json_char, text)
        if decoded != text and _mostly_printable(decoded):
            yield ("json_escape",), decoded
    if "entity" in found:
        decoded = html.unescape(text)
        if decoded != text and _mostly_printable(decoded):
            yield ("html_entities",), decoded
    if "qp" in found and len(_QP_ESC.findall(text)) >= 2:
        raw = quopri.decodestring(data)
        yield from _bytes_to_text(raw, ("quoted_printable",), budget)
    if "xhex" in found:
        for m in _XHEX_RE.finditer(text):
            raw = bytes.fromhex(m.group(0).replace("\\x", ""))
            yield from _bytes_to_text(raw, ("hex",), budget)
    if "0xhex" in found:
        for m in _0XHEX_RE.finditer(text):
            digits = re.sub(r"0[xX]|[\s,]", "", m.group(0))
            yield from _bytes_to_text(bytes.fromhex(digits), ("hex",), budget)
    if "sephex" in found:
        for m in _SEPHEX_RE.finditer(text):
            yield from _bytes_to_text(bytes.fromhex(m.group(0).replace(m.group(1), "")), ("hex",), budget)
    if sum(1 for k in found if k.startswith("rot13_")) >= 2:
        yield ("rot13",), codecs.encode(text, "rot13")


def _runs(data: bytes, budget: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """base64 / base32 / plain hex runs, located on the byte-class image of `data`."""
    image = data.translate(_CLASS_TABLE)
    if b"A" * MIN_RUN not in image:
        return
    for m in _RUN.finditer(image):
        cand = data[m.start():m.end()]
        if b"\n" in cand or b"\r" in cand:
            cand = cand.replace(b"\r", b"").replace(b"\n", b"")
        yield from _decode_run(cand, budget)


def _decode_run(cand: bytes, budget: int) -> Iterator[tuple[tuple[str, ...], str]]:
    body = cand.rstrip(b"=")
    if not body:
        return
    if _HEX.issuperset(body):
        # hashes, ids and numbers: hex or nothing (as base64 a hex-alphabet run is never text)
        if len(body) % 2 == 0:
            yield from _bytes_to_text(binascii.unhexlify(body), ("hex",), budget)
        return
    if _B32.issuperset(cand) and len(body) >= MIN_RUN and not body.isdigit():
        padded = body + b"=" * (-len(body) % 8)
        try:
            raw = base64.b32decode(padded)
        except (binascii.Error, ValueError):
            raw = b""
        got = list(_bytes_to_text(raw, ("base32",), budget)) if raw else []
        if got:
            yield from got
            return
    if body.islower() and not any(c in b"0123456789+/" for c in body):
        return  # identifiers like some_long_name-here: never base64 of anything readable
    if len(body) % 4 == 1:
        body = body[:-1]
    padded = body + b"=" * (-len(body) % 4)
    if b"-" in body or b"_" in body:
        if b"+" in body or b"/" in body:
            return
        padded = padded.replace(b"-", b"+").replace(b"_", b"/")
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return
    yield from _bytes_to_text(raw, ("base64",), budget)


def _bytes_to_text(raw: bytes, chain: tuple[str, ...], budget: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """`raw` as text when it is mostly printable, or decompressed when it is gzip/zlib/deflate."""
    if len(raw) < 4:
        return
    inner = _decompress(raw, budget)
    if inner is not None:
        name, plain = inner
        text = _as_text(plain)
        if text is not None:
            yield (*chain, name), text
        return
    text = _as_text(raw)
    if text is not None:
        yield chain, text


def _decompress(raw: bytes, budget: int) -> tuple[str, bytes] | None:
    limit = max(budget, 0)
    if raw[:2] == b"\x1f\x8b":
        return _inflate(raw, 16 + zlib.MAX_WBITS, limit, "gzip")
    if raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0:
        got = _inflate(raw, zlib.MAX_WBITS, limit, "deflate")
        if got is not None:
            return got
    if len(raw) >= 24 and not _printable_share_ok(raw):
        return _inflate(raw, -zlib.MAX_WBITS, limit, "deflate")
    return None


def _inflate(raw: bytes, wbits: int, limit: int, name: str) -> tuple[str, bytes] | None:
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(raw, limit + 1)
    except zlib.error:
        return None
    if not out or len(out) > limit:
        return None
    return name, out


def _printable_share_ok(raw: bytes) -> bool:
    printable = len(raw.translate(None, _NON_PRINTABLE_BYTES))
    return printable >= PRINTABLE_SHARE * len(raw)


_NON_PRINTABLE_BYTES = bytes(b for b in range(0x80) if not (32 <= b < 127 or b in (9, 10, 13)))


def _as_text(raw: bytes) -> str | None:
    if len(raw) < MIN_TEXT:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _mostly_printable(text) and any(c.isalpha() for c in text) else None


def _mostly_printable(text: str) -> bool:
    if text.isprintable():
        return True
    bad = sum(1 for c in text if not (c.isprintable() or c in "\n\r\t"))
    return bad <= (1 - PRINTABLE_SHARE) * len(text)


def _json_char(m: re.Match[str]) -> str:
    if m.group(4) is not None:
        return _JSON_SIMPLE[m.group(4)]
    if m.group(3) is not None:
        cp = int(m.group(3), 16)
        return "\ufffd" if 0xD800 <= cp <= 0xDFFF else chr(cp)
    hi, lo = int(m.group(1), 16), int(m.group(2), 16)
    return chr(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
