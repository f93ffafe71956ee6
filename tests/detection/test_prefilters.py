"""What lets a rule skip a buffer: Hyperscan prefilters (supersets of the rule) and gates
(necessary conditions of a finding). Both may only ever skip work, never a finding."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mnemonic import Mnemonic

from vallum.detection import normalize
from vallum.detection.gates import GATES, bip39_run
from vallum.detection.matcher import (
    RuleMatcher,
    _PrefilterBank,
    hyperscan_available,
    prefilter_pattern,
    strip_lookarounds,
)
from vallum.detection.pipeline import Inspector
from vallum.detection.rules import RuleFileError, builtin_rules, rule_from_dict

BIP = Mnemonic("english")
WORDS = BIP.wordlist
PROSE = (
    "The release went out on Tuesday after the team fixed the flaky build. We moved the cache "
    "behind the load balancer, rotated the keys as planned and wrote up what happened in the "
    "incident review so that the next on-call engineer knows where to look. Please do not tell "
    "anyone the surprise party is on Friday; the user guide explains how to reset a password. "
    "When the search tool returns nothing, try a broader query and check the spelling. "
)


def _text_of(rule, sample: str) -> str:
    return normalize.normalize_for_matching(sample) if rule.target == "normalized" else sample


# ----------------------------------------------------------------------- strip_lookarounds
_ATOMS = st.sampled_from(["a", "b", "c", "[ab]", ".", r"\s", "a?", "b*", "c+", "(?:ab)?"])


def _regex() -> st.SearchStrategy[str]:
    return st.recursive(
        _ATOMS,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            st.lists(inner, min_size=2, max_size=3).map("|".join),
            inner.map(lambda x: f"(?={x})"),
            inner.map(lambda x: f"(?!{x})"),
            st.sampled_from(["(?<=a)", "(?<!b)", "(?<=[ab] )"]),
            inner.map(lambda x: f"(?:{x})+"),
            inner.map(lambda x: f"(?:{x})?"),
        ),
        max_leaves=8,
    )


@settings(max_examples=400)
@given(_regex(), st.text(alphabet="abc x", max_size=12))
def test_strip_lookarounds_is_a_superset_fuzzed(pattern, text):
    if re.search(pattern, text):
        assert re.search(strip_lookarounds(pattern), text), (pattern, text)


def test_every_rule_prefilter_matches_its_positive_samples():
    # the prefilter Hyperscan compiles, read by `re`: must fire on everything the rule finds
    for rule in builtin_rules():
        if not rule.keywords:
            continue
        pre = re.compile(prefilter_pattern(strip_lookarounds(rule.pattern)), rule.re_flags)
        for sample in rule.positive:
            text = _text_of(rule, sample)
            if rule.compiled.search(text):
                assert pre.search(text), (rule.id, sample)


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_prefilters_keep_injection_rules_off_plain_prose():
    # with the banks built, no normalised (injection) rule needs its `re` pass on ordinary prose:
    # the anchors' lookaheads are part of the prefilter, not dropped
    insp = Inspector(engine="hyperscan")
    _PrefilterBank.ensure_all_built()
    text = normalize.normalize_for_matching(PROSE * 8)
    assert [r.id for r in insp.normalized_inbound.candidate_rules(text)] == []
    assert [r.id for r in insp.raw.candidate_rules(PROSE * 8)] == []


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_banks_serve_configs_that_disable_rules_and_engines_agree():
    from vallum.config import Config

    cfg = Config.model_validate({"detection": {"disable": ["inj.covert_action", "dlp.github_*"]}})
    hs, rx = Inspector(cfg, engine="hyperscan"), Inspector(cfg, engine="re")
    _PrefilterBank.ensure_all_built()
    sel = hs.normalized_inbound._selector
    assert sel is not None and sel.banks  # the built-in bank, not per-rule databases
    samples = [s for r in builtin_rules() for s in r.positive + r.negative] + [PROSE]
    for s in samples:
        assert [f.to_dict() for f in hs.inspect_text(s)] == [f.to_dict() for f in rx.inspect_text(s)], s
        assert not any(f.rule == "inj.covert_action" for f in hs.inspect_text(s))


# ----------------------------------------------------------------------- gates
def test_unknown_gate_is_a_rule_file_error():
    with pytest.raises(RuleFileError, match="unknown gate"):
        rule_from_dict({"id": "x.y", "description": "d", "category": "pii", "severity": "low",
                        "action": "warn", "pattern": "x", "gate": "nope"})
    assert "bip39_run" in GATES


def _seed(rng: random.Random, words: int = 12) -> str:
    return BIP.to_mnemonic(rng.randbytes({12: 16, 15: 20, 18: 24, 21: 28, 24: 32}[words]))


SEPARATORS = [" ", ", ", "\t", '", "', "\n", "\n1. ", "\r\n  2) ", " ,", "'  '"]


@st.composite
def _seed_texts(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))
    phrase = _seed(rng, draw(st.sampled_from([12, 15, 18, 21, 24]))).split()
    sep = draw(st.sampled_from(SEPARATORS))
    body = ""
    for i, w in enumerate(phrase):
        body += w if i == 0 else draw(st.sampled_from([sep, sep, " "])) + w
    if draw(st.booleans()):
        body = body.upper()
    before = draw(st.sampled_from(["", "seed: ", "My words are ", "(", "«", "Ünïcode ", "x1 "]))
    after = draw(st.sampled_from(["", ".", " thanks", ")", "\n", "9", "ß"]))
    noise = " ".join(draw(st.lists(st.sampled_from([*WORDS[:300], "the", "of", "Zebra", "42"]),
                                   max_size=30)))
    return draw(st.sampled_from([noise + " ", ""])) + before + body + after


@settings(max_examples=300)
@given(_seed_texts())
def test_seed_phrase_gate_never_hides_a_finding(text):
    rule = next(r for r in builtin_rules() if r.id == "pii.crypto_seed_phrase")
    ungated = RuleMatcher([rule.__class__(**{**_fields(rule), "gate": None})], engine="re")
    from vallum.detection.validators import VALIDATORS

    found = any(VALIDATORS["bip39_seed_phrase"](m.value) for m in ungated.finditer(text))
    if found:
        assert bip39_run(text, "re") and bip39_run(text, "hyperscan"), text


@settings(max_examples=300)
@given(st.text(max_size=300), st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,\n\"'1.ABC", max_size=300))
def test_seed_phrase_gate_engines_agree_and_never_crash(a, b):
    for text in (a, b, a + b):
        assert bip39_run(text, "re") == bip39_run(text, "hyperscan") or not hyperscan_available()


def _fields(rule):
    return {f: getattr(rule, f) for f in rule.__dataclass_fields__}


def test_seed_phrase_gate_on_prose_and_phrases():
    rng = random.Random(5)
    assert not bip39_run(PROSE * 10, "hyperscan") and not bip39_run(PROSE * 10, "re")
    # twelve BIP-39 words is what it takes, wherever they sit and however they are written
    for text in [PROSE + "backup: " + _seed(rng) + ". " + PROSE,
                 "1. " + "\n2. ".join(_seed(rng).split()),
                 _seed(rng, 24).upper(),
                 '{"mnemonic": ["' + '", "'.join(_seed(rng).split()) + '"]}']:
        assert bip39_run(text, "hyperscan") and bip39_run(text, "re"), text
        assert any(f.rule == "pii.crypto_seed_phrase" for f in Inspector().inspect_text(text)), text
    # eleven are not enough; a twelfth word off the list breaks the run
    eleven = " ".join(_seed(rng).split()[:11])
    assert not bip39_run(eleven, "hyperscan") and not bip39_run(eleven + " zebraq", "re")
    assert not bip39_run(eleven + " Zoo", "hyperscan")  # mixed case is not a seed-phrase word run


@settings(max_examples=500)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=10),
       st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=9), max_size=8))
def test_complement_words_is_exactly_the_complement(word, excluded):
    from vallum.detection.gates import complement_words

    excluded = [w for w in excluded if len(w) <= 8]
    rx = re.compile(complement_words(excluded))
    assert bool(rx.fullmatch(word)) == (3 <= len(word) <= 8 and word not in excluded), (word, excluded)


def test_run_breaking_words_are_not_bip39_words():
    from vallum.detection.gates import not_bip_common_words

    words = not_bip_common_words()
    assert "the" in words and "with" in words and len(words) >= 40
    assert not set(words) & set(WORDS)


@settings(max_examples=400)
@given(_regex(), st.text(alphabet="abc x|()[]", max_size=12))
def test_top_level_alternatives_are_the_same_union(pattern, text):
    from vallum.detection.matcher import top_level_alternatives

    parts = top_level_alternatives(pattern)
    assert bool(re.search(pattern, text)) == any(re.search(p, text) for p in parts)
    assert top_level_alternatives(r"a|(?:b|c)|[|]|\||d") == ["a", "(?:b|c)", "[|]", r"\|", "d"]
    assert top_level_alternatives("(?i)a|b") == ["(?i)a|b"]


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_every_builtin_keyword_rule_is_in_a_bank():
    # long multilingual alternations are banked as one expression per alternative
    Inspector(engine="hyperscan")
    _PrefilterBank.ensure_all_built()
    missing = []
    for group, bank in _PrefilterBank._banks.items():
        assert bank.ready is not None, group
        missing += [key[0][:40] for key, pid in bank.ids.items() if pid not in bank.ready[1]]
    assert missing == []


def test_builtin_rules_compile_lazily_and_every_pattern_is_valid():
    from importlib import resources
    from pathlib import Path

    from vallum.detection.rules import load_rule_file

    root = Path(str(resources.files("vallum.detection") / "rules"))
    eager = [r for p in sorted(root.rglob("*.yaml")) for r in load_rule_file(p)]  # raises on a bad one
    assert len(eager) == len(builtin_rules()) and all(r.regex is not None for r in eager)
    lazy = next(r for r in builtin_rules() if r.id == "pii.crypto_seed_phrase")
    assert lazy.compiled.search(BIP.to_mnemonic(bytes(16))) is not None
