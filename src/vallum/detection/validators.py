"""Validators: checks that a candidate secret is structurally real (checksums, formats).

Each validator takes the matched secret value (the rule's secret group) and returns True when it is
plausibly real. Rules name a validator by its key in `VALIDATORS`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

Validator = Callable[[str], bool]

VALIDATORS: dict[str, Validator] = {}


def validator(name: str) -> Callable[[Validator], Validator]:
    def register(fn: Validator) -> Validator:
        if name in VALIDATORS:
            raise ValueError(f"validator {name} defined twice")
        VALIDATORS[name] = fn
        return fn

    return register


def shannon_entropy(s: str) -> float:
    """Bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


@validator("luhn")
def luhn(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
