"""Normalisation for matching (owned by the engine; see issue 2 §1).

`normalize_for_matching(text)` returns the text that `target: normalized` rules match against:
lower-case, NFKC, invisible/format characters removed, homoglyphs folded to Latin, combining
marks stripped, leetspeak folded, spaced-out letters re-joined, whitespace folded.
`hidden_payloads(text)` returns text smuggled in Unicode tag characters (U+E0000–E007F).
"""

from __future__ import annotations

import unicodedata


def normalize_for_matching(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def hidden_payloads(text: str) -> list[str]:
    chars = [chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E]
    return ["".join(chars)] if chars else []
