"""The built-in rule pack: every rule's attack examples fire, its benign examples do not, and a benign
population (hundreds of users over two weeks: offices, travellers, heavy users, SDK keys, service
keys, agents) triggers no rule at all. Attacks mixed into that crowd are still caught."""

from __future__ import annotations

from collections import Counter

import pytest
from population import START, generate

from vallum.behaviour.engine import RiskEngine
from vallum.behaviour.events import validate_event
from vallum.behaviour.rules import load_ruleset
from vallum.behaviour.testing import expand_events, run_examples

PACK = load_ruleset()


@pytest.fixture(scope="module")
def benign():
    events = generate()
    engine = RiskEngine(ruleset=PACK)
    result = engine.ingest(events)
    return events, engine, result


@pytest.mark.parametrize("outcome", run_examples(PACK), ids=lambda o: f"{o.rule}:{o.example}")
def test_embedded_examples(outcome):
    assert outcome.error is None, outcome.error
    assert outcome.fired == outcome.expected, f"fired on {outcome.entities}"


def test_every_rule_has_an_attack_example_or_is_documented_as_needing_data():
    needs_data = {"auth.stuffing_asn", "farm.linked_to_flagged", "tools.first_seen_destination",
                  "jailbreak.many_refusals", "guard.injection_exposure", "guard.critical_block"}
    for rule in PACK.rules:
        if rule.id in needs_data:
            continue
        assert any(ex.expect for ex in rule.examples), f"{rule.id} has no attack example"


def test_population_is_varied(benign):
    events, engine, _ = benign
    users = {e.user for e in events if e.user}
    assert len(users) >= 200
    assert events[-1].ts - events[0].ts >= 13 * 86400
    office = engine.get_entity("ip", "81.2.70.5")
    assert office is not None and len(office.links["user"]) >= 30  # a shared office IP
    travellers = [u for u in users if len(engine.get_entity("user", u).seen.get("country", ())) >= 2]
    assert len(travellers) >= 10
    types = Counter(e.type for e in events)
    assert {"auth.register", "auth.login", "auth.login_failed", "llm.request", "llm.response", "tool.call",
            "retrieval.hit", "guard.verdict"} <= set(types)


def test_benign_population_triggers_no_rule(benign):
    _events, engine, result = benign
    fired = Counter(h.rule for h in result.hits)
    assert fired == Counter(), f"false positives: {fired.most_common(10)}"
    assert engine.rule_errors == {}
    assert all(engine.current_action("user", u) == "allow"
               for (kind, u) in list(engine.entities)[:2000] if kind == "user")


def _attack(templates, start):
    return expand_events(templates, start=start)


def test_attacks_inside_the_benign_crowd_are_caught(benign):
    events, _engine, _ = benign
    t = START + 12 * 86400 + 3600 * 14
    attacks = (
        _attack([{"type": "auth.login_failed", "every": "3s", "repeat": 60, "user": "victim{i}",
                  "ip": "45.33.32.156", "user_agent": "python-requests/2.31"}], t)
        + _attack([{"type": "auth.login", "at": "200s", "user": "user0007@mail.example", "ip": "45.33.32.156",
                    "user_agent": "python-requests/2.31"}], t)
        + _attack([{"type": "llm.request", "every": "40s", "repeat": 6, "user": "user0011@post.example",
                    "session": "sx", "conversation": "cx", "attrs": {"guard_score": "{i*0.12+0.1}"}}], t)
        + _attack([{"type": "llm.request", "at": "0s", "user": "user0015@mail.example", "api_key": "stolen",
                    "ip": ip} for ip in ("81.2.69.142", "8.8.8.8", "133.11.0.1", "200.160.2.3", "193.99.144.80")],
                  t)
    )
    for i, a in enumerate(attacks):
        a.id = f"atk-{i}"
    for j, e in enumerate(attacks[-5:]):
        e.ts += j * 300
    crowd = [e for e in events if e.ts < t + 7200]
    engine = RiskEngine(ruleset=PACK)
    res = engine.ingest(sorted(crowd + attacks, key=lambda e: e.ts))
    fired = {(h.rule, h.entity_id) for h in res.hits}
    assert ("auth.stuffing_ip", "45.33.32.156") in fired
    assert ("auth.compromised_after_stuffing", "user0007@mail.example") in fired
    assert ("jailbreak.rising_guard_score", "user0011@post.example") in fired
    assert ("keys.geo_fanout", "stolen") in fired
    assert engine.current_action("ip", "45.33.32.156") == "block"
    assert engine.current_action("user", "user0007@mail.example") in ("challenge", "block")
    benign_hits = {h.rule for h in res.hits if not h.event_id.startswith("atk-")}
    assert benign_hits == set(), benign_hits


def test_guard_verdicts_from_the_proxies_raise_a_principal_to_block():
    engine = RiskEngine(ruleset=PACK)
    evs = [validate_event({"type": "guard.verdict", "ts": int((START + i * 60) * 1000), "user": "agent-owner",
                           "agent": "agent:x", "attrs": {"action": "block", "category": "injection",
                                                         "severity": "critical"}}) for i in range(4)]
    engine.ingest(evs)
    d = engine.decide("user", "agent-owner")
    assert d.action in ("challenge", "block") and d.score >= 60
    assert {r["rule"] for r in d.reasons} >= {"guard.repeated_blocks", "guard.critical_block"}
    assert engine.current_action("agent", "agent:x") in ("review", "challenge", "block")
