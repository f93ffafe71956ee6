"""The risk engine: scoring, decay on event time, overrides, replay, rule errors, backtest, links."""

from __future__ import annotations

from vallum.behaviour.engine import RiskEngine
from vallum.behaviour.events import validate_event
from vallum.behaviour.rules import load_rule_source, load_ruleset
from vallum.behaviour.scoring import Hit, Thresholds, combine, score_hits
from vallum.behaviour.testing import backtest, expand_events
from vallum.config.sections.behaviour import BehaviourConfig

T0 = 1_790_000_000.0

RULES = """
features:
  - {name: fails_10m, entity: ip, on: auth.login_failed, agg: count, window: 10m}
  - {name: users_10m, entity: ip, on: auth.login_failed, agg: distinct, field: event.user, window: 10m}
rules:
  - id: t.stuffing
    description: many failures
    scope: ip
    on: auth.login_failed
    when: ip.fails_10m >= 5.0 && ip.users_10m >= 5.0
    weight: 50
    evidence: [ip.fails_10m]
  - id: t.big_spender
    description: costly request
    scope: user
    on: llm.request
    when: event.attrs.cost_usd > 10.0
    weight: 90
    action: block
    ttl: 1h
"""


def engine(rules: str = RULES, **cfg) -> RiskEngine:
    return RiskEngine(BehaviourConfig(**cfg), load_rule_source(rules, "t"))


def ev(t: float, **kw):
    kw.setdefault("user", "u1")
    return validate_event({"ts": int((T0 + t) * 1000), **kw})


def fails(n: int, ip: str = "203.0.113.7", start: float = 0.0):
    return [ev(start + i * 10, type="auth.login_failed", user=f"v{int(start) + i}", ip=ip) for i in range(n)]


def test_combine_is_a_probabilistic_or():
    assert combine([]) == 0.0
    assert combine([50.0]) == 50.0
    assert combine([50.0, 50.0]) == 75.0
    assert combine([100.0, 10.0]) == 100.0


def test_rule_fires_only_past_the_threshold():
    e = engine()
    r = e.ingest(fails(4))
    assert r.hits == []
    r = e.ingest(fails(1, start=50))
    assert [(h.rule, h.entity_type, h.entity_id) for h in r.hits] == [("t.stuffing", "ip", "203.0.113.7")]
    d = e.decide("ip", "203.0.113.7")
    assert d.score == 50.0 and d.action == "review"
    assert d.reasons[0]["rule"] == "t.stuffing" and "ip.fails_10m=5" in d.reasons[0]["detail"]


def test_window_expires_on_event_time_not_wall_time():
    e = engine()
    e.ingest(fails(4))
    # the fifth failure arrives 20 minutes later: the first four are out of the 10-minute window
    r = e.ingest(fails(1, start=1200))
    assert r.hits == []


def test_score_decays_with_event_time_and_steps_down():
    e = engine(score_half_life_s=3600)
    e.ingest(fails(5))
    assert e.decide("ip", "203.0.113.7").score == 50.0
    res = e.ingest([ev(3600 + 40, type="page.view", user="other")])  # the clock moves one half-life
    d = e.decide("ip", "203.0.113.7")
    assert 24.0 <= d.score <= 25.5 and d.action == "allow"
    changes = res.changes + e.sweep().changes  # the decay sweep reports the step-down once
    assert [(c.decision.entity_id, c.previous, c.decision.action) for c in changes if c.action_changed] == [
        ("203.0.113.7", "review", "allow")]


def test_rule_action_override_holds_for_its_ttl():
    e = engine()
    e.ingest([ev(0, type="llm.request", attrs={"cost_usd": 50.0})])
    assert e.current_action("user", "u1") == "block"
    e.ingest([ev(2 * 3600, type="page.view", user="x")])
    assert e.current_action("user", "u1") != "block"  # ttl 1h passed, score decayed below block


def test_thresholds_map_scores_to_actions():
    t = Thresholds(40, 60, 80)
    assert [t.action_for(s) for s in (0, 39.9, 40, 60, 80, 100)] == [
        "allow", "allow", "review", "challenge", "block", "block"]


def test_spent_hits_are_dropped():
    hits = {"r": Hit(rule="r", weight=10.0, ts=0.0, detail="")}
    score, action, _ = score_hits(hits, now=10 * 3600, half_life=3600, thresholds=Thresholds())
    assert score == 0.0 and action == "allow" and hits == {}


def test_overrides_and_propagation_to_owned_identifiers():
    e = engine()
    e.ingest([ev(0, type="llm.request", user="u1", session="s1", api_key="k1", ip="81.2.69.142",
                 attrs={"cost_usd": 0.1}),
              ev(1, type="llm.request", user="u2", ip="81.2.69.142", attrs={"cost_usd": 0.1})])
    e.set_override("user", "u1", "block", reason="fraud")
    assert e.decide("user", "u1").action == "block"
    assert e.decide("user", "u1").override["reason"] == "fraud"
    assert e.current_action("session", "s1") == "block"
    assert e.current_action("api_key", "k1") == "block"
    assert e.current_action("ip", "81.2.69.142") == "allow"  # shared with u2: not inherited
    assert e.current_action("user", "u2") == "allow"
    e.remove_override("user", "u1")
    assert e.current_action("session", "s1") == "allow"
    e.ingest([ev(5, type="llm.request", user="u3", attrs={"cost_usd": 99.0})])
    assert e.current_action("user", "u3") == "block"
    e.set_override("user", "u3", "allow")
    assert e.current_action("user", "u3") == "allow"


def test_replaying_history_gives_the_same_decisions():
    events = fails(12) + [ev(30 + i, type="llm.request", user=f"p{i}", attrs={"cost_usd": 20.0 * (i % 2)})
                          for i in range(6)] + fails(6, ip="192.0.2.9", start=4000)
    live = engine()
    for e in events:
        live.ingest([e])
    replay = engine()
    replay.ingest(sorted(events, key=lambda e: e.ts))
    keys = [("ip", "203.0.113.7"), ("ip", "192.0.2.9")] + [("user", f"p{i}") for i in range(6)]
    assert [live.decide(*k).to_dict() for k in keys] == [replay.decide(*k).to_dict() for k in keys]


def test_rule_runtime_errors_are_reported_not_raised():
    e = engine(RULES + """
  - id: t.broken
    description: divides by zero
    scope: user
    on: page.view
    when: 1 / 0 == 1
""")
    e.ingest([ev(0, type="page.view")])
    assert "t.broken" in e.rule_errors and "divide by zero" in e.rule_errors["t.broken"]
    assert e.events_processed == 1


def test_syntax_errors_carry_positions_and_skip_only_that_rule():
    rs = load_rule_source(RULES + """
  - id: t.bad
    description: x
    when: "ip.fails_10m >= "
""", "f.yaml")
    [p] = rs.problems
    assert p.item == "rule 't.bad'" and p.line == 1 and p.column == 17  # just past the end of 'ip.fails_10m >= '
    assert "Syntax error" in p.message
    assert [r.id for r in rs.rules] == ["t.stuffing", "t.big_spender"]


def test_rule_file_shape_errors():
    rs = load_rule_source("rules:\n  - {id: X Y, when: 'true', weight: 500, scope: planet, colour: red}\n", "f")
    msgs = " ".join(p.message for p in rs.problems)
    for fragment in ("unknown key 'colour'", "id must be", "weight must be", "scope must be"):
        assert fragment in msgs
    assert rs.rules == []


def test_hot_swap_of_rules_keeps_features():
    e = engine()
    e.ingest(fails(4))
    e.set_ruleset(load_rule_source(RULES.replace("ip.fails_10m >= 5.0", "ip.fails_10m >= 3.0"), "t"))
    r = e.ingest(fails(1, start=45))
    assert [h.rule for h in r.hits] == ["t.stuffing"]


def test_sessions_expire_after_idle_timeout():
    e = engine("""
rules:
  - {id: t.reuse, description: r, scope: user, on: page.view, when: signals.session_expired_reuse}
""", sessions={"idle_s": 600, "absolute_s": 3600})
    r = e.ingest([ev(0, type="page.view", session="s"), ev(300, type="page.view", session="s")])
    assert r.hits == []
    r = e.ingest([ev(300 + 601, type="page.view", session="s")])
    assert [h.rule for h in r.hits] == ["t.reuse"]
    assert e.get_entity("session", "s").events == 1  # a fresh session


def test_links_clusters_and_forgetting_a_user():
    e = engine()
    e.ingest([ev(0, type="auth.login", user="a", attrs={"device_id": "dev-1"}),
              ev(1, type="auth.login", user="b", attrs={"device_id": "dev-1"}),
              ev(2, type="auth.login", user="c", api_key="k9"),
              ev(3, type="auth.login", user="b", api_key="k9"),
              ev(4, type="auth.login", user="d", ip="81.2.69.142")])
    assert e.cluster("a") == ["a", "b", "c"]
    assert e.cluster("d") == ["d"]
    view = e.entity_view("user", "b")
    assert view["links"]["device"] == ["app:dev-1"] and set(view["linked_users"]) == {"a", "c"}
    e.forget_user("b")
    assert e.get_entity("user", "b") is None
    assert e.cluster("a") == ["a"]


def test_first_seen_flags_and_enrichment():
    e = engine("""
rules:
  - {id: t.new_country, description: r, scope: user, on: auth.login, when: first.country && ip.country == "US"}
""")
    r = e.ingest([ev(0, type="auth.login", ip="81.2.69.142"), ev(60, type="auth.login", ip="81.2.69.143")])
    assert r.hits == []
    r = e.ingest([ev(120, type="auth.login", ip="8.8.8.8")])
    assert [h.rule for h in r.hits] == ["t.new_country"]


def test_sdk_clients_are_classified():
    from vallum.behaviour.enrich import classify_user_agent

    assert classify_user_agent("OpenAI/Python 1.40.0").client == "openai-python"
    assert classify_user_agent("openai-python/1.2").kind == "sdk"
    assert classify_user_agent("curl/8.4.0").kind == "cli"
    chrome = classify_user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                 "Chrome/120.0.0.0 Safari/537.36", "en-GB")
    assert (chrome.client, chrome.kind, chrome.os) == ("Chrome", "browser", "Windows")
    assert classify_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1)").kind == "bot"


def test_backtest_reports_entities():
    rs = load_rule_source(RULES, "t")
    res = backtest(rs.rule("t.stuffing"), rs, fails(8) + fails(3, ip="192.0.2.1"))
    assert res.events == 11
    assert [r["entity"]["id"] for r in res.entities] == ["203.0.113.7"] and res.entities[0]["hits"] == 4


def test_example_templates_expand():
    events = expand_events([{"type": "llm.request", "at": "1m", "every": "30s", "repeat": 3, "user": "u{i%2}",
                             "attrs": {"guard_score": "{i*0.25+0.1}"}}])
    assert [e.user for e in events] == ["u0", "u1", "u0"]
    assert [e.attrs["guard_score"] for e in events] == [0.1, 0.35, 0.6]
    assert events[1].ts - events[0].ts == 30


def test_builtin_pack_loads_without_problems():
    rs = load_ruleset()
    assert rs.problems == []
    assert len(rs.rules) >= 30
    families = {r.id.split(".")[0] for r in rs.rules}
    assert families >= {"auth", "farm", "jailbreak", "wallet", "tools", "keys", "guard"}
