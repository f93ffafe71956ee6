"""Recursive decoding of encoded payloads (owned by the engine; see issue 2 §2).

`decode_layers(text, max_depth, max_bytes)` returns every decoded variant found inside `text`
(not including `text` itself), each with the chain of decoders that produced it, e.g.
("base64", "gzip"). Bounded in depth and in total output size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    chain: tuple[str, ...]


def decode_layers(text: str, max_depth: int = 4, max_bytes: int = 4 * 1024 * 1024) -> list[Decoded]:
    return []
