"""Unexplained high-entropy strings: a net for secrets whose format no rule knows.

`entropy_findings(inspector, text, location, chain, already)` is called by the pipeline for
outbound (and kind `text`) scans when `detection.entropy.enabled`. It reports tokens of at least
`detection.entropy.min_length` characters whose Shannon entropy reaches the threshold, as rule
`entropy.high_entropy_string` (category `entropy`, warn; block in strict mode).

What is random but harmless is filtered first: UUIDs, hex digests of standard lengths (MD5, SHA-1,
SHA-224, SHA-256, SHA-384, SHA-512), `sha256-…` SRI hashes, `sha256=…` wheel RECORD hashes and
`sha256:…` digests, base64 images, fonts and archives (data: URIs, and base64 runs that begin with
a file signature), identifiers and file paths made of words (minified code, `camelCase`,
`snake_case`), dates, numbers. Tokens that a credential rule already explains are skipped.

Speed: clean text must cost almost nothing, so a whole-buffer Python regex is avoided. When
Hyperscan is importable, one exact (non-prefilter) pass answers "is there any run of token
characters at least `min_length` long?"; only then is the text split (`str.split`, C speed) and the
few long pieces examined. Both paths give the same findings.
"""

from __future__ import annotations

import math
import re
import threading
from typing import TYPE_CHECKING

from vallum.detection.model import Action, Finding, redact
from vallum.detection.validators import VALIDATORS, shannon_entropy

if TYPE_CHECKING:  # pragma: no cover
    from vallum.detection.pipeline import Inspector

try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs
except Exception:
    _hs = None

RULE_ID = "entropy.high_entropy_string"
#: at most this many entropy findings per scanned text
MAX_FINDINGS = 16
#: longer runs are blobs (files, images, archives), not credentials; the decoder looks inside them
MAX_TOKEN = 1024
#: hex threshold (bits/char): hex strings top out at 4.0
HEX_THRESHOLD = 3.4

_TOKEN_CHARS = r"A-Za-z0-9+/_\-.~"  # noqa: S105 - a character class, not a secret
_RUN = re.compile(rf"[{_TOKEN_CHARS}]+={{0,2}}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_B64_LINE = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}[\"');,]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_DIGEST_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})
_HASH_NAMES = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3", "blake2b",
                         "blake2s", "blake3", "xxh64", "etag", "integrity", "checksum", "digest"})
_SRI_PREFIXES = ("sha1-", "sha256-", "sha384-", "sha512-", "md5-")
#: base64 openings of harmless binary formats: PNG, JPEG, GIF, WebP, WOFF, WOFF2, TTF, OTF, SVG,
#: PDF, ZIP, gzip, ICO, BMP, MP4
_BLOB_MAGIC = ("iVBORw0KGg", "/9j/", "R0lGOD", "UklGR", "d09GRg", "d09GMg", "AAEAAA", "T1RUTw",
               "PHN2Zy", "PD94bWwg", "JVBERi0", "UEsDB", "H4sI", "AAABAA", "Qk0", "AAAAIGZ0eXA",
               "AAAAHGZ0eXA", "AAAAGGZ0eXA",
               # SSH public keys (ssh-ed25519, ssh-rsa, ssh-dss, ecdsa-sha2-*, sk-ssh-*)
               "AAAAC3NzaC1", "AAAAB3NzaC1", "AAAAE2VjZHNh", "AAAAGnNrLXNzaC1", "AAAAInNrLWVjZHNh")
#: decoders whose output is mostly the input again: entropy there only re-reports (or invents,
#: when `a=6e…` is read as quoted-printable) what the plain text already showed
_SKIP_CHAINS = frozenset({"quoted_printable"})
_CERT_DER = re.compile(r"MII[A-Za-z0-9+/]{3}CCA")  # DER SEQUENCE { SEQUENCE … }: an X.509 certificate


class _Gate:
    """Exact Hyperscan test: does `text` hold a run of token characters of at least n characters?"""

    def __init__(self) -> None:
        self._dbs: dict[int, tuple[object, object]] = {}
        self._lock = threading.Lock()

    def has_long_run(self, text: str, n: int) -> bool:
        if _hs is None:
            return True  # no cheap gate: let the split pass decide
        entry = self._dbs.get(n)
        if entry is None:
            with self._lock:
                entry = self._dbs.get(n)
                if entry is None:
                    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
                    expr = f"[{_TOKEN_CHARS}]{{{n},}}".encode()
                    db.compile(expressions=[expr], ids=[0], flags=[_hs.HS_FLAG_SINGLEMATCH])
                    entry = (db, _hs.Scratch(db))
                    self._dbs[n] = entry
        db, scratch = entry
        found: list[bool] = []

        def on_match(_id: int, _start: int, _end: int, _flags: int, _ctx: object) -> bool:
            found.append(True)
            return True  # stop scanning: one is enough

        try:
            db.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_match,  # type: ignore[attr-defined]
                    scratch=scratch)
        except Exception as exc:  # stopping early raises in some versions; anything else is real
            if not found:
                raise RuntimeError(f"entropy gate scan failed: {exc}") from exc
        return bool(found)


_gate = _Gate()


def is_wordlike(token: str) -> bool:
    """Whether `token` is made of words: an identifier, a path or a dotted name (not random).

    Splits on separators and camelCase; a random string splits into many one- or two-letter
    pieces, an identifier into a few real-looking words.
    """
    parts = _WORD_PARTS.findall(token)
    if not parts:
        return False
    alpha = [p for p in parts if p.isalpha()]
    digits = sum(len(p) for p in parts if p.isdigit())
    if not alpha or digits > 0.25 * len(token):
        return False
    short = sum(1 for p in alpha if len(p) <= 2)
    mean = sum(len(p) for p in alpha) / len(alpha)
    vowels = sum(1 for p in alpha if len(p) > 3 and not re.search(r"[aeiouyAEIOUY]", p))
    return mean >= 3.5 and short <= max(2, len(alpha) // 3) and vowels <= len(alpha) // 5


_SEGMENT_SPLIT = re.compile(r"[._/-]+")
_SHORT_NAME = re.compile(r"(?:[a-z]{1,6}|[A-Z][a-z]{0,5}|[A-Z]{1,4})[0-9]{0,4}|[0-9]{1,4}")


def is_dotted_name(token: str) -> bool:
    """Whether `token` is a dotted / underscored / dashed name whose every segment is a word or a
    short conventional name (`rust_openssl.x448.X448PublicKey`, `CPy_ExceptionMatches`)."""
    segments = [s for s in _SEGMENT_SPLIT.split(token) if s]
    if len(segments) < 2:
        return False
    return all(_SHORT_NAME.fullmatch(s) or is_wordlike(s) for s in segments)


def _threshold(token: str, threshold: float) -> float:
    # a short random token cannot reach a long one's entropy (at most log2(length) bits/char), so
    # the threshold is scaled down for tokens whose ~92% of log2(length) is below the default 4.2
    return threshold * min(1.0, 0.92 * math.log2(len(token)) / 4.2)


def _classes(token: str) -> int:
    return sum((any(c.islower() for c in token), any(c.isupper() for c in token),
                any(c.isdigit() for c in token)))


def harmless_reason(token: str, previous: str = "") -> str | None:
    """Why a long token is random but harmless (UUID, digest, SRI hash, blob, word-like…), or None.

    `previous` is the piece just before it (e.g. ``sha256=`` in a wheel RECORD line).
    """
    bare = token.rstrip("=")
    low = bare.lower()
    if previous.rstrip("=:").lower() in _HASH_NAMES:
        return "labelled hash"
    if low.startswith(_SRI_PREFIXES):
        return "SRI hash"
    if _UUID.fullmatch(bare) or (len(bare) > 36 and _UUID.search(bare) and is_wordlike(_UUID.sub("", bare))):
        return "UUID"
    if bare.isdigit():
        return "number"
    if _HEX.fullmatch(bare):
        digits = bare[2:] if bare.startswith("0x") else bare
        if len(digits) in _DIGEST_LENGTHS or len(digits) < 48 or bare.startswith("0x"):
            return "hex digest or id"
    if _DATE.match(bare):
        return "date"
    if bare.startswith(_BLOB_MAGIC):
        return "base64 file"
    if _CERT_DER.match(bare):
        return "certificate"
    if "/" in bare:
        parts = [p for p in bare.split("/") if p]
        if parts and all(len(p) < 16 or is_wordlike(p) for p in parts):
            return "path"
    if is_wordlike(bare) or is_dotted_name(bare):
        return "identifier"
    return None


#: how far before a token a rule's context (a key name, a URL scheme) may start
_CONTEXT_BEFORE = 160


def _explained(inspector: Inspector, text: str, token: str) -> bool:
    """Whether a validated credential or PII match covers an occurrence of `token`.

    Only a window around each occurrence is matched (the whole match counts, so a generic
    `api_key = …` rule explains its value): cheap, since high-entropy candidates are few.
    """
    start = text.find(token)
    while start != -1:
        lo = max(0, start - _CONTEXT_BEFORE)
        end = start + len(token)
        window = text[lo : end + 16]
        for m in inspector.raw.finditer(window):
            if m.rule.category not in ("credential", "pii"):
                continue
            a, b = m.match.span(0)
            if not (lo + a < end and start < lo + b):
                continue
            if m.rule.validator is not None:
                check = VALIDATORS.get(m.rule.validator)
                if check is None or not check(m.value):
                    continue
            return True
        start = text.find(token, end)
    return False


def high_entropy_tokens(text: str, min_length: int = 20, threshold: float = 4.2) -> list[tuple[str, float]]:
    """Every long, high-entropy, not-harmless token in `text`, with its entropy, in order.

    This is the detector without policy (no rule explanation, no findings); `entropy_findings`
    builds on it.
    """
    if len(text) < min_length or not _gate.has_long_run(text, min_length):
        return []
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    in_blob = False
    recent: list[str] = []
    for raw in text.split():
        if in_blob and _B64_LINE.fullmatch(raw):
            continue  # a continuation line of a base64 image, font, archive or certificate
        in_blob = False
        recent = [*recent[-3:], raw]
        if raw.endswith("-----") and any(r.startswith("-----BEGIN") for r in recent):
            # a certificate, public key, signature or encrypted message body is public; private key
            # blocks have their own rules. Unknown block types stay subject to the entropy check.
            header = " ".join(recent)
            in_blob = any(w in header for w in ("CERTIFICATE", "PUBLIC", "PRIVATE", "SIGNATURE", "MESSAGE"))
            continue
        if len(raw) < min_length:
            continue
        if ";base64," in raw or raw.startswith(("data:", "url(data:")):
            in_blob = True
            continue
        previous = ""
        urlish = "://" in raw
        for piece in _RUN.findall(raw):
            candidates = piece.split("/") if (urlish or piece.startswith("/")) else [piece]
            for tok in candidates:
                tok = tok.strip(".-_~")
                if len(tok) < min_length or len(tok) > MAX_TOKEN or tok in seen:
                    continue
                if harmless_reason(tok, previous) is not None:
                    if tok.startswith(_BLOB_MAGIC):
                        in_blob = True
                    continue
                bare = tok.rstrip("=")
                h = shannon_entropy(bare)
                if _HEX.fullmatch(bare):
                    if h < HEX_THRESHOLD:
                        continue
                elif h < _threshold(bare, threshold) or _classes(bare) < 2:
                    continue
                seen.add(tok)
                out.append((tok, h))
            previous = piece
    return out


def entropy_findings(inspector: Inspector, text: str, location: str, chain: tuple[str, ...],
                     already: list[Finding]) -> list[Finding]:
    """Findings for unexplained high-entropy tokens in `text` (see the module docstring)."""
    settings = inspector.config.detection.entropy
    if _SKIP_CHAINS.intersection(chain):
        return []
    tokens = high_entropy_tokens(text, settings.min_length, settings.threshold)
    if not tokens:
        return []
    explainable = any(f.category in ("credential", "pii") and f.location == location and f.decoded == chain
                      for f in already)
    out: list[Finding] = []
    for tok, h in tokens:
        if explainable and _explained(inspector, text, tok):
            continue
        f = inspector.finding(
            RULE_ID, "entropy", "medium",
            "High-entropy string that matches no known credential format (possible secret)",
            action=Action.WARN, strict_action=Action.BLOCK, location=location, decoded=chain,
            evidence=redact(tok), extra={"entropy": round(h, 2), "length": len(tok)},
        )
        if f is None:  # rule disabled in the config
            return []
        out.append(f)
        if len(out) >= MAX_FINDINGS:
            break
    return out
