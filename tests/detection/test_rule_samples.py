"""Every rule's own positive samples must fire it and its negative samples must not (gitleaks-style)."""

from __future__ import annotations

import pytest

from vallum.detection.pipeline import Inspector
from vallum.detection.rules import builtin_rules

RULES = builtin_rules()
INSPECTOR = Inspector()


def _direction(rule) -> str | None:
    if "tooldef" in rule.directions:
        return "tooldef"
    return None if {"outbound", "inbound"} <= set(rule.directions) else rule.directions[0]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_has_samples(rule):
    assert rule.positive, f"{rule.id} has no positive sample"
    assert rule.negative, f"{rule.id} has no negative sample"


POS = [(r, s) for r in RULES for s in r.positive]
NEG = [(r, s) for r in RULES for s in r.negative]


@pytest.mark.parametrize(("rule", "sample"), POS, ids=[f"{r.id}#{i}" for i, (r, _) in enumerate(POS)])
def test_positive_sample_fires(rule, sample):
    found = {f.rule for f in INSPECTOR.inspect_text(sample, direction=_direction(rule))}
    assert rule.id in found, f"{rule.id} missed its positive sample {sample!r}; found {found}"


@pytest.mark.parametrize(("rule", "sample"), NEG, ids=[f"{r.id}#{i}" for i, (r, _) in enumerate(NEG)])
def test_negative_sample_silent(rule, sample):
    found = {f.rule for f in INSPECTOR.inspect_text(sample, direction=_direction(rule))}
    assert rule.id not in found, f"{rule.id} fired on its negative sample {sample!r}"
