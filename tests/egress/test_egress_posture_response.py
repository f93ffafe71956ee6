"""Adaptive enforcement on the response side: under a `review` (or `challenge`) posture a warning
found in a response — a response body, an SSE event, a fetched page — is enforced as a block, like a
request-side warning is. Audit mode turns every block into a warning, which gives warn-level
response findings without changing the rule set."""

from __future__ import annotations

import json
import socket

import httpx
from egress_support import CLEAN_HTML, INJECTION, block_json, route, sse_route

from vallum.decisions import Principal

PAGE = f"<html><body><p>Recipe</p><p>{INJECTION}</p></body></html>"
EVENTS = [b"data: hello\n\n", b"data: " + INJECTION.encode() + b"\n\n", b"data: after\n\n"]


def who(client_ip, headers):
    user = dict((k.lower(), v) for k, v in headers).get(b"x-user", b"").decode() or "anon"
    return Principal(user=user, ip=client_ip, source="test")


def gate(postures):
    return lambda pr: postures.get(pr.user)


def client(proxy) -> httpx.Client:
    return httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", trust_env=False, timeout=10)


def sse(port: int, url: str, user: str) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nX-User: {user}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data


REVIEW = {"watched": ("review", "risk posture of user watched is review", 403),
          "held": ("challenge", "risk posture of user held is challenge", 403)}


def test_response_warning_blocks_under_review_and_passes_otherwise(harness):
    up = harness.upstream({"/page": route(200, "text/html", PAGE), "/clean": route(200, "text/html", CLEAN_HTML)})
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=gate(REVIEW))
    url = f"http://127.0.0.1:{up.port}"
    with client(p) as c:
        fine = c.get(f"{url}/page", headers={"X-User": "fine"})
        watched = c.get(f"{url}/page", headers={"X-User": "watched"})
        held = c.get(f"{url}/page", headers={"X-User": "held"})
        watched_clean = c.get(f"{url}/clean", headers={"X-User": "watched"})
    # negative: no posture, the audit-mode warning passes with the header
    assert fine.status_code == 200 and fine.headers["x-vallum-action"] == "warn"
    assert INJECTION in fine.text
    # positive: the same warning is enforced under review and challenge
    for r in (watched, held):
        assert r.status_code == 403 and r.headers["x-vallum-action"] == "block"
        body = block_json(r)
        assert body["category"] == "injection" and "blocked: principal under" in body["message"]
        assert INJECTION not in r.text
    # negative: a clean response under review passes untouched
    assert watched_clean.status_code == 200 and "x-vallum-action" not in watched_clean.headers
    blocked = [r for r in p.sink.records if r.direction == "response" and r.action == "block"]
    assert len(blocked) == 2 and all(r.principal.user in ("watched", "held") for r in blocked)


def test_sse_warning_blocks_under_review(harness):
    up = harness.upstream({"/sse": sse_route(EVENTS)})
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=gate(REVIEW))
    url = f"http://127.0.0.1:{up.port}/sse"
    fine = sse(p.port, url, "fine")
    assert INJECTION.encode() in fine and b"after" in fine and b"vallum.block" not in fine
    watched = sse(p.port, url, "watched")
    assert b"data: hello" in watched  # the clean event before it was forwarded
    assert INJECTION.encode() not in watched and b"after" not in watched
    assert b"event: vallum.block" in watched
    payload = json.loads(watched.split(b"event: vallum.block\ndata: ")[1].split(b"\n")[0])
    assert payload["category"] == "injection"
    assert p.sink.records[-1].action == "block" and p.sink.records[-1].principal.user == "watched"


def test_fetch_warning_blocks_under_review(harness):
    up = harness.upstream({"/page": route(200, "text/html", PAGE)})
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=gate(REVIEW))
    with httpx.Client(trust_env=False, timeout=10) as c:
        fetch = f"http://127.0.0.1:{p.port}/fetch"
        target = f"http://127.0.0.1:{up.port}/page"
        fine = c.get(fetch, params={"url": target}, headers={"X-User": "fine"})
        watched = c.get(fetch, params={"url": target}, headers={"X-User": "watched"})
    assert fine.status_code == 200 and any(f["action"] == "warn" for f in fine.json()["findings"])
    assert watched.status_code == 403 and block_json(watched)["category"] == "injection"


def test_posture_reached_while_the_response_is_in_flight_applies(harness):
    """The principal enters review after the request passed (its earlier warnings were scored
    meanwhile): the response's warning is checked against the posture as it is now."""
    postures: dict = {}

    async def late_review(seen):
        postures["late"] = ("review", "risk posture of user late is review", 403)
        return 200, [("content-type", "text/html")], PAGE

    up = harness.upstream({"/page": late_review})
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=gate(postures))
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/page", headers={"X-User": "late"})
    assert r.status_code == 403 and block_json(r)["category"] == "injection"
    assert len(up.requests) == 1  # the request itself passed


def test_gate_failing_at_response_time_fails_closed(harness):
    calls = {"n": 0}

    def flaky(pr):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("posture store down")
        return None

    up = harness.upstream({"/page": route(200, "text/html", PAGE), "/clean": route(200, "text/html", CLEAN_HTML)})
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=flaky)
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/page", headers={"X-User": "u"})
    assert r.status_code == 403 and block_json(r)["category"] == "injection"
    # a clean response never asks the gate again
    calls["n"] = -10
    with client(p) as c:
        ok = c.get(f"http://127.0.0.1:{up.port}/clean", headers={"X-User": "u"})
    assert ok.status_code == 200 and calls["n"] == -9
