"""Hyperscan and the stdlib `re` fallback must give identical findings for the whole rule set."""

from __future__ import annotations

import pytest

from vallum.detection.matcher import hyperscan_available
from vallum.detection.pipeline import Inspector
from vallum.detection.rules import builtin_rules

pytestmark = pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")


def _corpus() -> list[str]:
    texts: list[str] = []
    for r in builtin_rules():
        texts.extend(r.positive)
        texts.extend(r.negative)
    # everything at once, so matches interleave and overlap
    texts.append("\n".join(texts))
    return texts


def test_hyperscan_and_re_give_identical_findings():
    hs = Inspector(engine="hyperscan")
    rx = Inspector(engine="re")
    assert hs.engine == "hyperscan" and rx.engine == "re"
    for text in _corpus():
        for direction in (None, "outbound", "inbound"):
            a = [f.to_dict() for f in hs.inspect_text(text, direction=direction)]
            b = [f.to_dict() for f in rx.inspect_text(text, direction=direction)]
            assert a == b, f"engines disagree on {text[:80]!r} ({direction})"
