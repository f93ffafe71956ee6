"""Unit tests of the runtime's pure parts: event mapping, the bounded feed, the gate, posture on MCP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vallum.config import Config
from vallum.decisions import DecisionRecord, Principal
from vallum.detection.model import Action, Finding
from vallum.detection.pipeline import get_inspector
from vallum.mcp.session import McpSession, ServerContext
from vallum.runtime.enforcement import DecisionCache, PrincipalGate, SessionThreat
from vallum.runtime.feed import BehaviourFeed, events_for
from vallum.runtime.shared import SharedState


def _finding(rule: str, action: Action, category: str = "credential", severity: str = "critical") -> Finding:
    return Finding(rule=rule, category=category, severity=severity, action=action, message="m")


def test_guard_verdict_event_for_an_egress_block() -> None:
    rec = DecisionRecord(ts=1764000000.5, transport="egress.http", action="block", request_id="r1",
                         destination="https://api.example.com:8443/v1", extra={"status": 403},
                         principal=Principal(user="alice", agent="agent:a", ip="10.0.0.1"),
                         findings=[_finding("dlp.github_token", Action.BLOCK)])
    (ev,) = events_for(rec)
    assert ev["type"] == "guard.verdict" and ev["user"] == "alice" and ev["agent"] == "agent:a"
    assert ev["ts"] == 1764000000500 and ev["id"] == "gv-r1-request"
    a = ev["attrs"]
    assert (a["action"], a["rule"], a["category"], a["severity"]) == ("block", "dlp.github_token", "credential",
                                                                      "critical")
    assert a["dest_domain"] == "api.example.com" and a["guard_score"] == 1.0 and a["transport"] == "egress.http"


def test_mcp_tool_call_and_posture_denials() -> None:
    rec = DecisionRecord(ts=1.0, transport="mcp.http", action="allow", direction="tool_call", request_id="r2",
                         principal=Principal(session="s1", agent="agent:x"), extra={"tool": "search", "server": "d"})
    evs = events_for(rec)
    assert [e["type"] for e in evs] == ["guard.verdict", "tool.call"]
    assert evs[1]["attrs"]["gen_ai.tool.name"] == "search" and evs[1]["user"] == "agent:x"
    denied = DecisionRecord(ts=1.0, transport="egress.http", action="block", principal=Principal(user="u"),
                            findings=[_finding("behaviour.principal_blocked", Action.BLOCK, "behaviour")])
    assert events_for(denied)[0]["attrs"]["action"] == "denied"
    withheld = DecisionRecord(ts=1.0, transport="mcp.stdio", action="block", direction="tools_list",
                              principal=Principal(session="s"), findings=[_finding("poison.x", Action.BLOCK)])
    assert events_for(withheld)[0]["attrs"]["action"] == "withheld"
    assert events_for(DecisionRecord(ts=1.0, transport="behaviour", action="block")) == []


def test_feed_is_bounded_and_never_refuses() -> None:
    class Svc:
        def __init__(self) -> None:
            self.got: list[Any] = []

        async def submit(self, evs: list[Any], *, key_id: str | None, wait: bool) -> None:
            self.got.extend(evs)

    svc = Svc()
    feed = BehaviourFeed(svc, max_queue=3)
    rec = DecisionRecord(ts=1764000000.0, transport="egress.http", action="allow", principal=Principal(ip="1.2.3.4"))
    assert all(feed.emit(rec) for _ in range(5))
    assert feed.accepted == 3 and feed.dropped == 2
    assert asyncio.run(feed.flush()) == 3 and len(svc.got) == 3 and svc.got[0].user == "ip:1.2.3.4"


def test_gate_fails_closed_and_reports_auth() -> None:
    def broken(kind: str, eid: str) -> tuple[str, str]:
        raise RuntimeError("engine down")

    gate = PrincipalGate(DecisionCache(broken), SessionThreat())
    action, reason, status = gate(Principal(user="u")) or ("", "", 0)
    assert action == "block" and status == 403 and "fail closed" in reason
    ok = PrincipalGate(DecisionCache(lambda k, i: ("allow", "")), SessionThreat())
    assert ok(Principal(user="u")) is None
    assert ok(Principal(ip="1.1.1.1", source="proxy_auth_missing"))[2] == 407  # type: ignore[index]


def test_cache_takes_the_stronger_remote_decision_and_forgets_it_on_allow() -> None:
    cache = DecisionCache(lambda k, i: ("allow", ""))
    cache.set("user", "m", "block", "loop.inline_attack", remote=True)
    assert cache.get("user", "m") == ("block", "loop.inline_attack")
    cache.set("user", "m", "allow", remote=True)
    assert cache.get("user", "m")[0] == "allow"


def _session(gate: Any, approver: Any = None) -> McpSession:
    ctx = ServerContext("srv", get_inspector(Config()), gate=gate, approver=approver)
    return McpSession(ctx, Principal(user="u", session="s"))


def _call(session: McpSession, tool: str, args: dict[str, Any]) -> tuple[str, str]:
    msg = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    out = session.client_message(msg.encode(), 1.0)
    if out.to_client:
        res = json.loads(out.to_client[0])["result"]
        return "block", res["content"][0]["text"]
    return "allow", ""


def test_mcp_posture_block_challenge_review() -> None:
    blocked = _session(lambda p: ("block", "risk posture of user u is block", 403))
    got, text = _call(blocked, "search", {"q": "hello"})
    assert got == "block" and "risk posture of user u is block" in text
    challenged = _session(lambda p: ("challenge", "risk posture of user u is challenge", 403))
    assert _call(challenged, "search", {"q": "hello"})[0] == "allow"  # not risky: passes
    got, text = _call(challenged, "http_post", {"url": "https://example.org/x", "body": "hi"})
    assert got == "block" and "held for approval" in text and "no interactive approver" in text
    approved = _session(lambda p: ("challenge", "r", 403), approver=lambda *a: True)
    assert _call(approved, "http_post", {"url": "https://example.org/x", "body": "hi"})[0] == "allow"
    assert _call(_session(lambda p: None), "http_post", {"url": "https://example.org/x", "body": "hi"})[0] == "allow"


def test_redis_limiter_fails_closed_when_redis_is_down() -> None:
    shared = SharedState("redis://127.0.0.1:1/0")
    res = shared.limiter().check("example.com", 1000.0, 10, 60, 0)
    assert res.allowed is False and res.exceeded == "rate_limit"
    assert shared.limiter().check("example.com", 1000.0, 10, 0, 0).allowed  # limits off: no Redis needed
