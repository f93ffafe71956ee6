"""Normalisation for matching (issue 2 §1).

`normalize_for_matching(text)` returns the text that `target: normalized` rules match against:

1. Unicode NFKC (fullwidth, mathematical alphanumerics, ligatures → plain forms).
2. Homoglyphs → Latin skeleton, from Unicode's confusables table (shipped by the
   `confusable-homoglyphs` package). Latin-script lookalikes (``ɑ``, ``ı``, ``ɡ``) and
   symbols (``⍺``, ``∣``) always fold. Letters of other scripts (Cyrillic ``а``, Greek ``ο``, …)
   fold only inside a word that mixes them with Latin letters, or — when the text is mostly
   Latin — inside a word made entirely of lookalikes (``ехес``). Genuine Russian or Greek words
   keep their script, so rules written in those languages still match.
3. Case folded; invisible and format characters removed (zero-width, soft hyphen, bidi
   controls, variation selectors, Unicode tag characters, Hangul fillers); exotic whitespace
   folded to a space (line and paragraph separators to a newline).
4. Accents stripped from Latin letters (``instrucciónes`` → ``instrucciones``); stray
   combining marks (Zalgo) removed. Marks of other scripts (Japanese dakuten, Devanagari
   vowel signs, Cyrillic ``й``) are kept.
5. Letters spelled out with one consistent separator re-joined: runs of at least three single
   characters (``i g n o r e``, ``i.g.n.o.r.e``, ``i-g-n-o-r-e`` → ``ignore``). Two or more
   spaces end a run, so ``i g n o r e  a l l`` becomes ``ignore all``. A run spelled with single
   spaces throughout gets its word boundaries back when it splits exactly into words of a small
   built-in vocabulary (`_VOCAB`, the words injection rules use): ``i g n o r e a l l`` →
   ``ignore all``, ``a n a i`` → ``an ai``. Otherwise (``A B C``, ``N A S A``, ``S U M M A R Y``)
   it is joined as one word, as is a split that starts or ends with a one-letter word or holds
   two in a row (a second pass would re-join those).
6. Leetspeak folded only inside tokens that mix letters with digits/symbols and become all
   letters when folded (``1gn0r3`` → ``ignore``); numbers and prices (``100``, ``$5``, ``3.14``)
   and tokens such as ``sha256`` are left alone. Short words with a trailing digit (``th3``,
   ``rul3``) fold when they become a word of `_SHORT_WORDS`; two-letter ones (``d0``, ``m3``,
   ``t0``, also chip and instance names) only on a line that holds other leetspeak
   (``D0 n0t t3ll th3 us3r`` → ``do not tell the user``; ``Apple M3`` stays).
7. Runs of spaces and tabs folded to one space. Newlines are kept, and so is punctuation such
   as ``[``, ``]``, ``<|``, ``|>``, ``:``, ``#``.

ASCII input takes a fast path (bytes translate + one Hyperscan scouting pass).

`hidden_payloads(text)` returns text smuggled invisibly: Unicode tag characters
(U+E0020–E007E "ASCII smuggling") and bytes hidden in runs of variation selectors.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from itertools import pairwise

from vallum.detection.matcher import PatternScout

# --------------------------------------------------------------------- ASCII classes
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789@$"  # noqa: S105 - a character class
_TOKEN_SET = frozenset(_TOKEN_CHARS)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
_SEPARATORS = " .-_*/~"

# lower-case ASCII and turn \t \r \v \f into spaces, in one bytes.translate
_ASCII_TABLE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\t\r\x0b\x0c", b"abcdefghijklmnopqrstuvwxyz    "
)

_T = rb"[a-z0-9@$]"
_NT = rb"(?:^|[^a-z0-9@$])"
_NTE = rb"(?:[^a-z0-9@$]|$)"
_SPACED_GATE = b"|".join(
    _NT + _T + re.escape(bytes([s])) + _T + re.escape(bytes([s])) + _T + _NTE for s in _SEPARATORS.encode()
)
# a whole token that leet folding could turn into letters: only letters and 0 1 3 4 5 7 8 @ $,
# mixing both (Hyperscan reports one end per token: just after it, or at the end of the buffer)
_LEET_TOKEN = rb"(?:^|[^a-z0-9@$])[a-z0134578@$]*(?:[a-z][0134578@$]|[0134578@$][a-z])[a-z0134578@$]*(?:[^a-z0-9@$]|$)"
_SCOUT_PATTERNS = {"leet": _LEET_TOKEN, "spaced": _SPACED_GATE}
_SCOUT_LOCATED = {"leet": _LEET_TOKEN}
_SCOUT = PatternScout(_SCOUT_PATTERNS, located=_SCOUT_LOCATED)
# the same tokens for `re` (lookarounds, so adjacent tokens are not swallowed)
_LEET_TOKEN_RE = re.compile(
    r"(?<![a-z0-9@$])[a-z0134578@$]*(?:[a-z][0134578@$]|[0134578@$][a-z])[a-z0134578@$]*(?![a-z0-9@$])"
)

_SPACED_RE = re.compile(
    r"(?<![a-z0-9@$])[a-z0-9@$](?P<sep>[" + re.escape(_SEPARATORS) + r"])[a-z0-9@$]"
    r"(?:(?P=sep)[a-z0-9@$])+(?![a-z0-9@$])"
)


def normalize_for_matching(text: str) -> str:
    """The text `target: normalized` rules match against (see the module docstring)."""
    if text.isascii():
        data = text.encode("ascii").translate(_ASCII_TABLE)
        found = _SCOUT.present(data)
        s = data.decode("ascii")
        if found:
            rejoined = False
            if "spaced" in found:
                s2 = _SPACED_RE.sub(_rejoin, s)
                rejoined = s2 != s
                s = s2
            if rejoined:
                s = _fold_leet(s, [m.end() - 1 for m in _LEET_TOKEN_RE.finditer(s)])
            elif "leet" in found:
                s = _fold_leet(s, _leet_anchors(s, data))
    else:
        s = _normalize_unicode(text)
        if _SPACED_RE.search(s):
            s = _SPACED_RE.sub(_rejoin, s)
        anchors = [m.end() - 1 for m in _LEET_TOKEN_RE.finditer(s)]
        if anchors:
            s = _fold_leet(s, anchors)
    while "  " in s:
        s = s.replace("  ", " ")
    return s


def _leet_anchors(s: str, data: bytes) -> list[int]:
    """Indexes of a character inside each leet candidate token of the ASCII text `s`."""
    if _SCOUT.engine != "hyperscan":
        return [m.end() - 1 for m in _LEET_TOKEN_RE.finditer(s)]
    return [e - 1 if s[e - 1] in _TOKEN_SET else e - 2 for e in _SCOUT.ends("leet", data) if e > 0]


def _rejoin(m: re.Match[str]) -> str:
    run = m.group(0)
    chars = run[::2]
    letters = sum(c.isalpha() for c in chars)
    if letters * 2 < len(chars):
        return run
    return _segment(chars) or chars


# Words injection rules are written with: a spelled-out run whose letters split exactly into
# these gets its word boundaries back ("i g n o r e a l l" → "ignore all", "a n a i" → "an ai").
_VOCAB_TEXT = """
a i ai an am as at be by do go he if in is it me my no not now of on or so to up we you your yours
all and any are act ask but can did does done for from get give has have her him his how its just
let may new off one only our out own per say see set she the them then there these they this too
use was way what when who why will with yes above admin again agent also always answer anything
assistant before below bypass call chat code command commands confidential context credential
credentials data delete developer disable disregard do dump earlier email enable every everything
execute file files filter filters follow following forget full guidelines hidden ignore initial
instruction instructions jailbreak key keys leak mode model must never next obey only original
output override password passwords pretend previous print prior private prompt prompts reveal role
rule rules run safety secret secrets send share show system task tell text token tokens tool tools
unrestricted user users verbatim write please todo
"""
_VOCAB = frozenset(_VOCAB_TEXT.split())
_VOCAB_MAX = max(map(len, _VOCAB))


def _segment(chars: str) -> str | None:
    """`chars` split into the fewest `_VOCAB` words, or None (no full split, a single word, or a
    split that a second pass would re-join: single-letter words at an edge or side by side)."""
    n = len(chars)
    if n < 4 or n > 256:
        return None
    word = chars.translate(_LEET)
    if not word.isalpha() or word in _VOCAB:
        return None
    best: list[tuple[int, int] | None] = [None] * (n + 1)  # (word count, start of last word)
    best[0] = (0, 0)
    for end in range(1, n + 1):
        for start in range(max(0, end - _VOCAB_MAX), end):
            prev = best[start]
            if prev is not None and word[start:end] in _VOCAB and (best[end] is None or prev[0] + 1 < best[end][0]):
                best[end] = (prev[0] + 1, start)
    if best[n] is None or best[n][0] < 2:
        return None
    words: list[str] = []
    end = n
    while end:
        start = best[end][1]
        words.append(word[start:end])
        end = start
    words.reverse()
    if len(words[0]) == 1 or len(words[-1]) == 1:
        return None
    if any(len(a) == 1 and len(b) == 1 for a, b in pairwise(words)):
        return None
    return " ".join(words)


def _fold_leet(s: str, anchors: list[int]) -> str:
    """Fold leetspeak in the tokens around `anchors` (indexes of characters inside tokens).

    A short word with a trailing digit (``th3``, ``rul3``, ``d0``) is folded only when it
    becomes a word of `_SHORT_WORDS`; a two-letter one (``d0``, ``m3``, ``t0``, which are
    also chip, instance and heading names) only when another token of the same line is
    leetspeak too (``D0 n0t t3ll``).
    """
    folds: list[tuple[int, int, str]] = []
    maybe: list[tuple[int, int, str]] = []
    seen_end = 0  # end of the last token looked at: later anchors inside it are skipped
    last = -1
    n = len(s)
    for a in anchors:
        if a < seen_end or a >= n or s[a] not in _TOKEN_SET:
            continue
        start = a
        while start > 0 and s[start - 1] in _TOKEN_SET:
            start -= 1
        end = a + 1
        while end < n and s[end] in _TOKEN_SET:
            end += 1
        seen_end = end
        if start <= last:
            continue
        last = start
        token = s[start:end]
        folded = _fold_token(token, s[end] if end < n else "")
        if folded is None:
            maybe.append((start, end, token.translate(_LEET)))
        elif folded != token:
            folds.append((start, end, folded))
    if maybe and folds:
        for start, end, word in maybe:
            line_start = s.rfind("\n", 0, start)
            line_end = s.find("\n", end)
            line_end = n if line_end < 0 else line_end
            if any(line_start < fs < line_end for fs, _, _ in folds):
                folds.append((start, end, word))
        folds.sort()
    if not folds:
        return s
    pieces: list[str] = []
    pos = 0
    for start, end, word in folds:
        pieces.append(s[pos:start])
        pieces.append(word)
        pos = end
    pieces.append(s[pos:])
    return "".join(pieces)


_NUMBER_WITH_UNIT = re.compile(
    r"[0-9]+(?:am|pm|st|nd|rd|th|k|m|g|b|d|h|s|x|p|kb|mb|gb|tb|ms|px|em|kg|km|cm|mm|hz|khz|mhz|ghz|fps|min|sec)$"
)


# short words that leetspeak spells with a trailing digit (th3, rul3, us3, d0, b3)
_SHORT_WORDS_TEXT = "the rule role mode code use see too are one safe site note file data ai do to go no so me be we he"
_SHORT_WORDS = frozenset(_SHORT_WORDS_TEXT.split())


def _fold_token(token: str, after: str) -> str | None:
    """`token` leet-folded, or as it is; None for a two-letter word that needs context."""
    folded = token.translate(_LEET)
    if not folded.isalpha() or token.isalpha():
        return token
    if "@" in token and (token[0] == "@" or after == "."):
        return token  # an e-mail address or a @mention, not leetspeak
    if token[0] == "$":
        return token  # $HOME, $100
    if not any("a" <= c <= "z" for c in token) or _NUMBER_WITH_UNIT.match(token):
        return token
    stem = token.rstrip("0123456789")
    if stem != token and stem.isalpha() and (len(token) - len(stem) >= 2 or len(stem) <= 3):
        if folded in _SHORT_WORDS:
            return folded if len(folded) > 2 else None  # th3, rul3; d0 and m3 only in context
        return token  # a name with a version or number: utf8, mp4, ipv4, win10
    return folded


# --------------------------------------------------------------------- Unicode path
_MARK_BLOCKS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
# scripts whose text must never be folded to Latin (their confusables are mostly strokes/marks)
_KEEP_PREFIXES = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC", "KANGXI", "BOPOMOFO", "HALFWIDTH")
_EXTRA_LATIN = {"æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ŧ": "t", "ð": "d", "þ": "th",
                "Æ": "ae", "Œ": "oe", "Ø": "o", "Đ": "d", "Ł": "l", "Ħ": "h", "Ŧ": "t", "Ð": "d", "Þ": "th",
                "ı": "i", "ĸ": "k", "ſ": "s", "ß": "ss", "ẞ": "ss"}
_INVISIBLE_EXTRA = (0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F)


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, str | None], dict[str, str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Build (once, on first non-ASCII input) the translate table and the confusable sets."""
    table: dict[int, str | None] = {}
    # invisible / format characters
    for cp in list(range(0x80, 0x2100)) + list(range(0xFE00, 0x10000)) + list(range(0x1BCA0, 0x1BCA4)) + list(
        range(0x1D173, 0x1D17B)
    ) + list(range(0x110BD, 0x110CE)):
        if unicodedata.category(chr(cp)) == "Cf":
            table[cp] = None
    for lo, hi in ((0xE0000, 0xE007F), (0xE0100, 0xE01EF), (0xFE00, 0xFE0F)):
        for cp in range(lo, hi + 1):
            table[cp] = None
    for cp in _INVISIBLE_EXTRA:
        table[cp] = None
    # whitespace
    for cp in range(0x80, 0x3001):
        c = chr(cp)
        if c.isspace():
            table[cp] = "\n" if cp in (0x85, 0x2028, 0x2029) else " "
    table[0x2800] = " "  # braille blank renders as a space
    for c in "\t\r\x0b\x0c":
        table[ord(c)] = " "
    for c in "\x1c\x1d\x1e":
        table[ord(c)] = "\n"
    # stray combining marks (NFKC has already composed the ones that belong to a letter)
    for lo, hi in _MARK_BLOCKS:
        for cp in range(lo, hi + 1):
            table[cp] = None
    # accented Latin letters → their base letter
    for lo, hi in ((0xC0, 0x24F), (0x1E00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF), (0xAB30, 0xAB6F)):
        for cp in range(lo, hi + 1):
            c = chr(cp)
            d = unicodedata.normalize("NFD", c)
            if len(d) > 1 and d[0].isascii() and d[0].isalpha() and all(unicodedata.combining(x) for x in d[1:]):
                table[cp] = d[0].lower()
    for k, v in _EXTRA_LATIN.items():
        table[ord(k)] = v
    # confusables
    path = resources.files("confusable_homoglyphs") / "confusables.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    conditional: dict[str, str] = {}
    for key, entries in data.items():
        if len(key) != 1 or key.isascii() or ord(key) in table:
            continue
        cat = unicodedata.category(key)
        name = unicodedata.name(key, "")
        if cat[0] in "MZC" or cat == "Nd" or name.startswith(_KEEP_PREFIXES):
            continue
        target = _ascii_target(key, entries)
        low = key.lower()
        if key != low and len(low) == 1 and low in data:
            # Unicode's skeleton reads capital I-like letters as "l"; the small letter knows better
            target = _ascii_target(low, data[low]) or target
        if target is None:
            continue
        if cat[0] == "L" and not name.startswith("LATIN"):
            if target.isalpha():
                conditional[key] = target
        elif target.isalpha() or cat[0] in "PS":
            table[ord(key)] = target
    # Latin small capitals that the table lacks (ɢ, ɴ, ʀ, ᴇ …)
    for cp in list(range(0x250, 0x2B0)) + list(range(0x1D00, 0x1D80)) + list(range(0xA730, 0xA780)):
        m = _SMALL_CAPITAL.match(unicodedata.name(chr(cp), ""))
        if m and cp not in table:
            table[cp] = m.group(1).lower()
    cond_class = "".join(re.escape(c) for c in sorted(conditional))
    latin = "a-zA-Z" + "".join(re.escape(chr(cp)) for cp in range(0xC0, 0x250) if chr(cp).isalpha())
    cond_re = re.compile(f"[{cond_class}]")
    # a Latin letter (or a digit/@/$ that leet folding may join to one) next to another script
    mixed_re = re.compile(f"[{latin}0-9@$][^\\W\\d_{latin}]|[^\\W\\d_{latin}][{latin}0-9@$]")
    # words as leet folding will see them: digits, @ and $ join letters into one word
    word_re = re.compile(r"(?:[^\W_]|[@$])+")
    return table, conditional, cond_re, mixed_re, word_re


def _ascii_target(key: str, entries: list[dict[str, str]]) -> str | None:
    """The ASCII character `key` is confusable with: a letter of the same case first."""
    same_case = other_case = punct = None
    for e in entries:
        t = e["c"].strip("\u200e\u200f")
        if len(t) != 1 or not t.isascii():
            continue
        if t.isalpha():
            if (t.isupper() == key.isupper()) and same_case is None:
                same_case = t.lower()
            elif other_case is None:
                other_case = t.lower()
        elif not t.isalnum() and not t.isspace() and punct is None:
            punct = t
    if same_case or other_case:
        return same_case or other_case
    m = _SMALL_CAPITAL.match(unicodedata.name(key, ""))
    return m.group(1).lower() if m else punct


_SMALL_CAPITAL = re.compile(r"LATIN (?:LETTER SMALL CAPITAL|SMALL CAPITAL LETTER) ([A-Z])$")


@lru_cache(maxsize=1)
def _invisible_table() -> dict[int, None]:
    table = _tables()[0]
    return {cp: None for cp, v in table.items() if v is None}


def _normalize_unicode(text: str) -> str:
    table, conditional, cond_re, mixed_re, word_re = _tables()
    s = unicodedata.normalize("NFKC", text)
    if cond_re.search(s):
        # invisible characters must not split (or hide) a word before deciding how to fold it
        s = s.translate(_invisible_table())
        # to a fixed point: folding a mixed word can make the text mostly Latin, which decides
        # the all-lookalike words; iterating keeps normalisation idempotent
        for _ in range(4):
            folded = _fold_confusable_words(s, table, conditional, mixed_re, word_re)
            if folded == s:
                break
            s = folded
    s = s.casefold().translate(table)
    # casefolding can create lookalikes (U+0345 → Greek iota); fold them as a second pass would
    if cond_re.search(s):
        for _ in range(4):
            folded = _fold_confusable_words(s, table, conditional, mixed_re, word_re)
            if folded == s:
                break
            s = folded
    return s


def _fold_confusable_words(s: str, table: dict[int, str | None], conditional: dict[str, str],
                           mixed_re: re.Pattern[str], word_re: re.Pattern[str]) -> str:
    # counted after accents are stripped (so "À" counts as Latin, as it will once normalised),
    # and with digits/@/$ on the Latin side (leet folding turns them into letters later)
    t = s.translate(table)
    b = t.encode("utf-8", "surrogatepass")
    latin_like = len(b) - len(b.translate(None, _ASCII_TOKEN_BYTES))
    ascii_letters = len(b) - len(b.translate(None, _ASCII_LETTERS))
    other_letters = len(_LETTER.findall(t)) - ascii_letters
    latin_dominant = latin_like >= other_letters
    if not latin_dominant and not mixed_re.search(s):
        return s

    def fold(m: re.Match[str]) -> str:
        w = m.group(0)
        if not any(c in conditional for c in w):
            return w
        has_latin = any((c.isascii() and c.isalpha()) or unicodedata.name(c, "").startswith("LATIN") for c in w)
        letters = [c for c in w if c.isalpha()]
        if has_latin or (latin_dominant and all(c in conditional for c in letters)):
            return "".join(conditional.get(c, c) for c in w)
        return w

    return word_re.sub(fold, s)


_ASCII_TOKEN_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@$"
_LETTER = re.compile(r"[^\W\d_]")
_ASCII_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --------------------------------------------------------------------- hidden payloads
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_VS_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{4,}")


def hidden_payloads(text: str) -> list[str]:
    """Text hidden in invisible characters: Unicode tag characters and variation-selector bytes.

    Tag characters U+E0020–E007E mirror printable ASCII ("ASCII smuggling"); each run becomes one
    payload. Runs of ≥ 4 variation selectors (U+FE00–FE0F = bytes 0–15, U+E0100–E01EF = bytes
    16–255) are read as UTF-8 bytes; kept when they decode to printable text.
    """
    if text.isascii():
        return []
    out: list[str] = []
    for m in _TAG_RUN.finditer(text):
        if m.group(0).endswith("\U000e007f") and text[max(0, m.start() - 1):m.start()] == "\U0001f3f4":
            continue  # an emoji subdivision flag (🏴 + region tags + cancel tag), not a message
        hidden = "".join(chr(ord(c) - 0xE0000) for c in m.group(0) if 0xE0020 <= ord(c) <= 0xE007E)
        if hidden.strip():
            out.append(hidden)
    for m in _VS_RUN.finditer(text):
        raw = bytes(ord(c) - 0xFE00 if ord(c) <= 0xFE0F else ord(c) - 0xE0100 + 16 for c in m.group(0))
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if decoded.strip() and all(c.isprintable() or c in "\n\r\t" for c in decoded):
            out.append(decoded)
    return out
