"""Gates: cheap whole-buffer tests that let an expensive rule skip a buffer.

A rule names its gate in its rule file (``gate: bip39_run``). Before the rule's `re` pass the
matcher asks the gate whether the rule could find anything in the buffer; when the gate says no,
the pass is skipped. A gate is a *necessary condition* of a finding: it may say yes when the rule
then finds nothing, never no when it would find something. Both regex engines ask the same gates,
so findings stay identical whichever is installed (the Hyperscan variant of a gate is only faster).

The one built-in gate exists because the seed-phrase rule matches any run of twelve short words
— every few sentences of ordinary prose — and only its validator (BIP-39 wordlist and checksum)
tells a seed phrase from a sentence: that `re` pass cost ≈ 2 ms per 10 KB of text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vallum.detection.validators import bip39_wordlist

try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs
except Exception:  # ImportError, or a broken native library
    _hs = None

#: gate(text, engine) -> whether the rule could match; engine is "hyperscan" or "re"
Gate = Callable[[str, str], bool]
GATES: dict[str, Gate] = {}


def gate(name: str) -> Callable[[Gate], Gate]:
    def register(fn: Gate) -> Gate:
        if name in GATES:
            raise ValueError(f"gate {name} defined twice")
        GATES[name] = fn
        return fn

    return register


# ----------------------------------------------------------------------------- bip39_run
# The seed-phrase rule matches runs of 12–24 words of 3–8 letters, all lower case or all upper
# case, separated by spaces, tabs, commas, quotes, or line breaks with optional list numbering,
# and its validator accepts a match only if 12 consecutive words of it are BIP-39 words. So a
# finding needs 12 consecutive BIP-39 words in the text, each a whole run of lower-case (or of
# upper-case) ASCII letters, separated only by separator characters.
#
# Shapes: the text's bytes mapped so that the letters of one case stay (as lower case), every
# separator character becomes a space and everything else (the other case, other punctuation,
# non-ASCII bytes) becomes '#'. The 12 words of a seed phrase are then 12 consecutive tokens of
# the shape; Hyperscan finds the runs of 12 tokens of 3–8 letters with one DFA pass (cheap: no
# wordlist in the automaton), and only those runs are looked up in the wordlist.
_SEPARATORS = b" \t,\"'\r\n0123456789.):"


def _shape_table(upper: bool) -> bytes:
    out = bytearray(b"#" * 256)
    for c in _SEPARATORS:
        out[c] = 0x20
    for c in range(ord("a"), ord("z") + 1):
        out[c - 32 if upper else c] = c
    return bytes(out)


_LOWER_SHAPE = _shape_table(upper=False)
_UPPER_SHAPE = _shape_table(upper=True)
_WORDS_ONLY = bytes(c if ord("a") <= c <= ord("z") else 0x20 for c in range(256))  # '#' -> space
_RUN12 = b"\x01" * 12
_RUN_PATTERN = rb"[^a-z][a-z]{3,8}(?: +[a-z]{3,8}){11}[^a-z]"
_bip_words: frozenset[bytes] | None = None
_hs_db: object = None
_hs_scratch: object = None
_hs_lock = threading.Lock()


def _bip() -> frozenset[bytes]:
    global _bip_words
    if _bip_words is None:
        _bip_words = frozenset(w.encode() for w in bip39_wordlist())
    return _bip_words


def _has_bip_run(words: list[bytes]) -> bool:
    return len(words) >= 12 and _RUN12 in bytes(map(_bip().__contains__, words))


def _run_ends(shape: bytes) -> list[int]:
    """End offsets (in `shape`) of every run of 12 tokens of 3–8 letters, each followed by its
    boundary byte."""
    global _hs_db, _hs_scratch
    assert _hs is not None
    ends: list[int] = []
    with _hs_lock:
        if _hs_db is None:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=[_RUN_PATTERN], ids=[0], flags=[0])
            _hs_scratch = _hs.Scratch(db)
            _hs_db = db
        _hs_db.scan(shape, match_event_handler=lambda i, s, e, f, c: ends.append(e),  # type: ignore[attr-defined]
                    scratch=_hs_scratch)
    return ends


@gate("bip39_run")
def bip39_run(text: str, engine: str) -> bool:
    """Whether the text holds 12 consecutive BIP-39 words as the seed-phrase rule reads words."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) < 12 * 4 - 1:
        return False
    for table in (_LOWER_SHAPE, _UPPER_SHAPE):
        shape = b" " + data.translate(table) + b" "
        words = shape.translate(_WORDS_ONLY)
        if engine != "hyperscan" or _hs is None:
            if _has_bip_run(words.split()):
                return True
            continue
        ends = _run_ends(shape)
        i, n = 0, len(ends)
        while i < n:
            # a cluster of run ends close together: one stretch of words, looked up once
            first = last = ends[i]
            i += 1
            while i < n and ends[i] - last <= 64:
                last = ends[i]
                i += 1
            head = words[max(0, first - 256):first].split()
            if len(head) < 12:
                head = words[:first].split()
            if _has_bip_run(head[-12:] + words[first:last].split()):
                return True
    return False
