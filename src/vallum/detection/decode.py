"""Recursive decoding of encoded payloads (issue 2 §2).

`decode_layers(text, max_depth, max_bytes)` returns every decoded variant found inside `text`
(not including `text` itself), each with the chain of decoders that produced it, e.g.
``("base64", "gzip")``. Bounded in depth and in total output size (`max_bytes` characters).

Decoders: base64 (standard, URL-safe, unpadded, wrapped lines — a short last line included —,
also between ``-----BEGIN X-----`` / ``-----END X-----`` armour lines), base32, hex (plain, ``\\x41``,
``0x41``, ``41:42``, ``41 42``), URL percent-encoding (repeated layers come out as
``("url", "url")``), JSON ``\\uXXXX`` escapes, HTML entities, quoted-printable (strict: upper-case
escapes, even a single one; ``key=value`` lines are left alone, see `_qp_decode`), gzip / zlib /
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
        # escapes that touch, a lone one standing for punctuation, or a soft line break
        "qp": rb"=[0-9A-F]{2}=(?:[0-9A-F]{2}|\r?\n)|=(?:2[0-9]|40|60)[A-Za-z]|=(?:[23][A-F]|5[B-F]|7[B-F])"
              rb"|[^\s=]=\r?\n",
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
_RUN = re.compile(b"A" * MIN_RUN + rb"A*=*(?:\r?\n(?:A{8,}=*))*(?P<tail>\r?\nA{1,7}=*(?=[\r\n ]|$))?")

_HEX = frozenset(b"0123456789abcdefABCDEF")
_B32 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")
_XHEX_RE = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")
_0XHEX_RE = re.compile(r"(?:0[xX][0-9a-fA-F]{2}[\s,]*){4,}")
_SEPHEX_RE = re.compile(r"[0-9a-fA-F]{2}(?:([: ])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){4,}")
_JSON_ESC = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])"
)
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


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
    if "qp" in found:
        raw = _qp_decode(data)
        if raw is not None:
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
        region = data[m.start():m.end()]
        if b"-----" in region:
            # armour lines (-----BEGIN X----- / -----END X-----) are not part of the base64
            # between them: look again with dash runs blanked out
            sub = region.replace(b"-----", b"     ")
            for m2 in _RUN.finditer(sub.translate(_CLASS_TABLE)):
                yield from _run_candidates(sub, m2, budget)
        else:
            yield from _run_candidates(data, m, budget)


def _run_candidates(data: bytes, m: re.Match[bytes], budget: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """The decodings of the run `m` of the byte-class image of `data`."""
    cand = data[m.start():m.end()]
    tail = m.group("tail")
    if tail is not None:
        # a short last line of wrapped base64 ("ZQ=="): kept when the whole run then has a
        # base64 length and decodes to text; otherwise it is a short word after the run
        body = cand.replace(b"\r", b"").replace(b"\n", b"")
        head = data[m.start():m.start("tail")]
        if b"=" not in head and len(body) % 4 == 0:
            got = list(_decode_run(body, budget))
            if got:
                yield from got
                return
        cand = head
    if b"\n" in cand or b"\r" in cand:
        cand = cand.replace(b"\r", b"").replace(b"\n", b"")
    yield from _decode_run(cand, budget)


_QP_ESC = re.compile(rb"=[0-9A-F]{2}")
# "=" that starts neither an escape nor a soft line break (applied to one line without its "\n")
_QP_BARE = re.compile(rb"=(?![0-9A-F]{2}|\r?$)")
_QP_BARE_ANY = re.compile(rb"=(?![0-9A-F]{2}|\r?$)", re.M)
_QP_LONE_TRAIL = re.compile(rb"^[^=\n]*=20\r?$", re.M)
# a lone escape (touching no other) that reads as a value: a letter, digit or control byte
# (width=64, id=6ECA…, x=10), a lone non-ASCII byte (never UTF-8; real ones come in runs), a
# number not followed by a letter (y=25), or the start of a hex id (sha=A3F2…). An escape that
# opens a line may continue one split by a soft line break, so it is not judged.
_QP_VALUE = re.compile(
    rb"=(?<=[^\n]=)(?<!=[0-9A-F]{2}=)(?:(?:3[0-9]|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|[01][0-9A-F]|[89A-F][0-9A-F])(?!=)"
    rb"|(?:2[1-9]|40|60)(?![A-Za-z=])|20(?![A-Za-z=]|\r?$)|(?<=[0-9A-Za-z_]=)[0-9A-F]{2}(?=[0-9A-F]))"
)


def _qp_decode(data: bytes) -> bytes | None:
    """Quoted-printable `data` decoded strictly, line by line, or None when no line looks encoded.

    Only upper-case ``=XX`` escapes and soft line breaks (``=`` ending a line) count. A line
    holding a bare ``=`` (``key=value``, ``request_id=6eca…``) is data, not quoted-printable, and
    is left as it is, and so is a line with a lone escape that reads as a value (`_QP_VALUE`:
    encoders never escape a letter or digit singly, and fully encoded text escapes every byte,
    so its escapes touch). In text without any escape, a soft line break counts only at the end
    of a long line of words (not ``x =`` nor base64 padding).
    """
    any_escape = _QP_ESC.search(data) is not None
    if (any_escape and not _QP_BARE_ANY.search(data) and not _QP_VALUE.search(data)
            and not (data.count(b"=") == 1 and _QP_LONE_TRAIL.search(data))):
        return binascii.a2b_qp(data)  # a whole quoted-printable body: one C call
    lines = data.split(b"\n")
    last = len(lines) - 1
    pieces = [line + b"\n" for line in lines]  # each line with its own line break
    pieces[last] = lines[last]
    changed = False
    for i, line in enumerate(lines):
        if b"=" not in line or _QP_BARE.search(line) or _QP_VALUE.search(line):
            continue
        if line.count(b"=") == 1 and line.rstrip(b"\r").endswith(b"=20"):
            continue  # limit=20 (a trailing space, when encoded, comes with other escapes)
        if not any_escape:
            body = line.rstrip(b"\r")
            if len(body) < 41 or body[-2:-1] in (b" ", b"\t") or b" " not in body:
                continue
        decoded = binascii.a2b_qp(line + b"\n")  # a soft line break takes the "\n" with it
        pieces[i] = decoded[:-1] if i == last and decoded.endswith(b"\n") else decoded
        changed = True
    return b"".join(pieces) if changed else None


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
