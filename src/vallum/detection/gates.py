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

import functools
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
# the shape. Two Hyperscan passes narrow the search before any word is looked up:
#
# 1. a DFA for "12 tokens of 3–8 letters in a row" (single match; about a microsecond per KB):
#    most code, JSON and logs stop here;
# 2. the same run where no token is one of the commonest English words that BIP-39 lacks
#    ("the", "and", "with", …; `_NOT_BIP`): ordinary prose almost never has twelve words in a
#    row without one of them, so this reports few runs, and only those are looked up in the
#    wordlist. (A wordlist of 2,048 words does not fit in a Hyperscan pattern, twelve times
#    over; the complement of fifty words does.)
_SEPARATORS = b" \t,\"'\r\n0123456789.):"
#: very common English words of 3–8 letters; those not in the BIP-39 list break a run
_COMMON_TEXT = (
    "the and that with this from have they not was are for but his her she were been their there "
    "would will what when your can has had which them than then these some its our who into only "
    "other could also more over such very just most after well any how even because use many see "
    "where way each those being here both much down should still own through while last might "
    "back years before same another know come since against great old right take three under "
    "never between about make like time"
)
_COMMON_WORDS = _COMMON_TEXT.split()


def _shape_table(upper: bool) -> bytes:
    out = bytearray(b"#" * 256)
    for c in _SEPARATORS:
        out[c] = 0x20
    for c in range(ord("a"), ord("z") + 1):
        out[c - 32 if upper else c] = c
    return bytes(out)


def complement_words(excluded: list[str], lo: int = 3, hi: int = 8) -> str:
    """A regex matching exactly the words of `lo`–`hi` letters a–z that are not in `excluded`
    (built from the trie of `excluded`; Hyperscan has no negative lookahead)."""
    trie: dict[str, dict] = {}
    for w in excluded:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node["$"] = {}

    def suffixes(node: dict[str, dict], depth: int) -> str | None:
        """The regex of the allowed rest after this prefix; None when nothing is allowed."""
        kids = sorted(k for k in node if k != "$")
        alts = []
        others = "".join(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in kids)
        rest_lo, rest_hi = max(0, lo - depth - 1), hi - depth - 1
        if others and rest_hi >= 0:
            cls = "[a-z]" if len(others) == 26 else f"[{others}]"
            alts.append(cls + (f"[a-z]{{{rest_lo},{rest_hi}}}" if rest_hi > 0 else ""))
        if depth + 1 <= hi:
            for k in kids:
                rest = suffixes(node[k], depth + 1)
                if rest is not None:
                    alts.append(k + rest)
        may_end = depth >= lo and "$" not in node  # an excluded word may not end here
        if not alts:
            return "" if may_end else None
        body = "(?:" + "|".join(alts) + ")"
        return body + "?" if may_end else body

    regex = suffixes(trie, 0)
    if not regex:
        raise ValueError("the excluded words leave no word to match")
    return regex


_LOWER_SHAPE = _shape_table(upper=False)
_UPPER_SHAPE = _shape_table(upper=True)
_WORDS_ONLY = bytes(c if ord("a") <= c <= ord("z") else 0x20 for c in range(256))  # '#' -> space
_RUN12 = b"\x01" * 12
_RUN_PATTERN = rb"[^a-z][a-z]{3,8}(?: +[a-z]{3,8}){11}[^a-z]"
_hs_dbs: tuple[object, object, object, object] | None = None
_hs_lock = threading.Lock()


@functools.cache
def _bip() -> frozenset[bytes]:
    return frozenset(w.encode() for w in bip39_wordlist())


def not_bip_common_words() -> list[str]:
    """The common words that break a run: 3–8 letters and not BIP-39 words."""
    bip = _bip()
    return sorted({w for w in _COMMON_WORDS if 3 <= len(w) <= 8 and w.encode() not in bip})


def _has_bip_run(words: list[bytes]) -> bool:
    return len(words) >= 12 and _RUN12 in bytes(map(_bip().__contains__, words))


def _databases() -> tuple[object, object, object, object]:
    global _hs_dbs
    assert _hs is not None
    if _hs_dbs is None:
        runs = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        runs.compile(expressions=[_RUN_PATTERN], ids=[0], flags=[_hs.HS_FLAG_SINGLEMATCH])
        word = "(?:" + complement_words(not_bip_common_words()) + ")"
        rare = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        rare.compile(expressions=[f"[^a-z]{word}(?: +{word}){{11}}[^a-z]".encode()], ids=[0], flags=[0])
        _hs_dbs = (runs, _hs.Scratch(runs), rare, _hs.Scratch(rare))
    return _hs_dbs


def _run_ends(shape: bytes) -> list[int]:
    """End offsets (in `shape`) of the runs of 12 tokens of 3–8 letters, none a common non-BIP-39
    word, each end just after the run's boundary byte; [] at once where no run of 12 short
    tokens exists at all."""
    ends: list[int] = []
    with _hs_lock:
        runs, runs_scratch, rare, rare_scratch = _databases()
        runs.scan(shape, match_event_handler=lambda i, s, e, f, c: ends.append(e),  # type: ignore[attr-defined]
                  scratch=runs_scratch)
        if not ends:
            return ends
        ends.clear()
        rare.scan(shape, match_event_handler=lambda i, s, e, f, c: ends.append(e),  # type: ignore[attr-defined]
                  scratch=rare_scratch)
    return ends


@gate("bip39_run")
def bip39_run(text: str, engine: str) -> bool:
    """Whether the text holds 12 consecutive BIP-39 words as the seed-phrase rule reads words."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) < 12 * 4 - 1:
        return False
    for table in (_LOWER_SHAPE, _UPPER_SHAPE):
        shape = b" " + data.translate(table) + b" "
        if engine != "hyperscan" or _hs is None:
            if _has_bip_run(shape.translate(_WORDS_ONLY).split()):
                return True
            continue
        ends = _run_ends(shape)
        if not ends:
            continue
        words = shape.translate(_WORDS_ONLY)
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
