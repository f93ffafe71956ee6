"""Shape of the injection rule set: metadata, language coverage, and Hyperscan-friendliness."""

from __future__ import annotations

import re

from vallum.detection.rules import builtin_rules

INJ = [r for r in builtin_rules() if r.id.startswith("inj.")]
POISON = [r for r in builtin_rules() if r.id.startswith("poison.")]


def test_at_least_30_injection_rules_with_consistent_metadata():
    assert len(INJ) >= 30
    for r in INJ:
        assert r.category == "injection", r.id
        assert r.target == "normalized", r.id
        assert r.directions == ("inbound",), r.id
        assert r.action == "block", r.id
        assert r.keywords, f"{r.id} has no keywords (the cheap gate)"
        assert all(k == k.lower() for k in r.keywords), r.id


def test_override_extraction_and_covert_families_in_each_language():
    ids = {r.id for r in INJ}
    for lang in ("zh", "ja", "ko", "ru", "es", "fr", "de", "pt"):
        for family in ("override", "prompt_extraction", "covert_action"):
            assert f"inj.{lang}_{family}" in ids


def test_keywords_occur_in_every_positive_sample_after_normalisation():
    from vallum.detection.normalize import normalize_for_matching

    for r in INJ + POISON:
        for s in r.positive:
            norm = normalize_for_matching(s)
            assert any(k in norm for k in r.keywords), f"{r.id}: no keyword in {s!r}"


_LOOKAROUND = re.compile(r"\(\?<?[=!]")


def _outside_lookarounds(pattern: str) -> str:
    """The pattern with every lookaround group removed (what Hyperscan's prefilter compiles)."""
    out, i, depth_stack = [], 0, []
    while i < len(pattern):
        if pattern[i] == "\\":
            if not depth_stack or not depth_stack[-1]:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if pattern[i] == "(":
            look = bool(_LOOKAROUND.match(pattern, i))
            depth_stack.append(look or (bool(depth_stack) and depth_stack[-1]))
        if not depth_stack or not depth_stack[-1]:
            out.append(pattern[i])
        if pattern[i] == ")" and depth_stack:
            depth_stack.pop()
        i += 1
    return "".join(out)


def test_patterns_stay_cheap_for_hyperscan():
    # \w under UTF-8 + UCP and large bounded repeats made single rules take minutes to compile;
    # such constructs may only appear inside lookarounds, which the prefilter drops.
    for r in INJ + POISON:
        consumed = _outside_lookarounds(r.pattern)
        assert "\\w" not in consumed, r.id
        for m in re.finditer(r"\{(\d+),(\d+)\}", consumed):
            assert int(m.group(2)) <= 8, f"{r.id}: bounded repeat {m.group(0)} outside a lookaround"
