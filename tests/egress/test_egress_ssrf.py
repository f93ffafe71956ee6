"""SSRF and DNS rebinding: resolve once, check every address, dial the approved one. The injected
connector refuses (and records) anything but 127.0.0.1, so no test leaves loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from egress_support import FakeResolver, RefusingConnector, block_json, raw_request


def get(p, url: str, **kw) -> httpx.Response:
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, timeout=10) as c:
        return c.get(url, **kw)


NOTATIONS = [
    "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.0.0.1", "017700000001",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "169.254.169.254",
    "[fd00::1]", "10.0.0.1", "192.168.1.1", "0.0.0.0", "127.0.0.1.nip.io", "localhost", "metadata.google.internal",
]


@pytest.mark.parametrize("host", NOTATIONS)
def test_every_ip_notation_blocked_without_dns_or_dial(harness, host):
    resolver, connector = FakeResolver({}), RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": []}}, resolver=resolver, connector=connector)
    # a raw request: client libraries refuse some of these notations themselves
    raw = raw_request(p.port, f"GET http://{host}/latest/meta-data/ HTTP/1.1\r\nHost: {host}\r\n"
                              "Connection: close\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403"), (host, raw)
    assert b"x-vallum-action: block" in head.lower()
    assert json.loads(body)["category"] in ("ssrf", "url")
    assert resolver.calls == [] and connector.calls == []


def test_dns_rebinding_resolve_once_and_pin(harness):
    # first answer public, second private: each request resolves exactly once and dials what it checked
    resolver = FakeResolver({"rebind.example.com": [["93.184.216.34"], ["127.0.0.1"]]})
    connector = RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": []}}, resolver=resolver, connector=connector)
    r1 = get(p, "http://rebind.example.com/")
    assert r1.status_code == 502  # approved public address dialled (the test connector refuses it)
    assert connector.calls == [("93.184.216.34", 80)]
    r2 = get(p, "http://rebind.example.com/")
    assert r2.status_code == 403 and block_json(r2)["category"] == "ssrf"
    assert connector.calls == [("93.184.216.34", 80)]  # the private answer was never dialled
    assert resolver.calls == ["rebind.example.com", "rebind.example.com"]


def test_any_private_answer_blocks(harness):
    resolver = FakeResolver({"mixed.example.com": ["93.184.216.34", "10.0.0.7"]})
    connector = RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": []}}, resolver=resolver, connector=connector)
    r = get(p, "http://mixed.example.com/")
    assert r.status_code == 403 and block_json(r)["category"] == "ssrf"
    assert connector.calls == []
    assert p.sink.records[-1].extra["resolved"] == ["93.184.216.34", "10.0.0.7"]


def test_pinned_address_is_the_dialled_one(harness):
    up = harness.upstream()
    resolver = FakeResolver({"svc.example.com": ["127.0.0.1"]})
    connector = RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": [f"127.0.0.1:{up.port}"]}}, resolver=resolver, connector=connector)
    r = get(p, f"http://svc.example.com:{up.port}/hello")
    assert r.status_code == 200
    assert connector.calls == [("127.0.0.1", up.port)]
    assert up.requests[-1].headers["host"] == f"svc.example.com:{up.port}"
    assert p.sink.records[-1].extra["ip"] == "127.0.0.1"


def test_allow_private_is_port_specific(harness):
    up = harness.upstream()
    other = harness.upstream()
    p = harness.proxy({"egress": {"allow_private": [f"127.0.0.1:{up.port}"]}})
    assert get(p, f"http://127.0.0.1:{up.port}/").status_code == 200
    r = get(p, f"http://127.0.0.1:{other.port}/")
    assert r.status_code == 403 and block_json(r)["category"] == "ssrf"
    assert other.requests == []


def test_resolver_failure_and_timeout_fail_closed(harness):
    async def slow(host):
        await asyncio.sleep(5)
        return ["93.184.216.34"]

    connector = RefusingConnector()
    p = harness.proxy(resolver=FakeResolver({}), connector=connector)
    r = get(p, "http://nxdomain.example.com/")
    assert r.status_code == 502 and block_json(r)["rule"] == "egress.dns_failure"
    p2 = harness.proxy({"egress": {"dns_timeout": 0.2}}, resolver=slow, connector=connector)
    r2 = get(p2, "http://slow.example.com/")
    assert r2.status_code == 502 and block_json(r2)["rule"] == "egress.dns_failure"
    assert connector.calls == []
    assert p.sink.records[-1].action == "block" and "DNS" in (p.sink.records[-1].reason or "")


def test_redirect_to_private_is_not_followed_by_the_proxy(harness):
    # the forward proxy relays a redirect to the client; the client's next request is checked anew
    async def to_meta(seen):
        return 302, [("location", "http://169.254.169.254/latest/meta-data/")], ""

    up = harness.upstream({"/r": to_meta})
    connector = RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": [f"127.0.0.1:{up.port}"]}}, connector=connector)
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, follow_redirects=True) as c:
        r = c.get(f"http://127.0.0.1:{up.port}/r")
    assert r.status_code == 403 and block_json(r)["category"] == "ssrf"
    assert all(ip == "127.0.0.1" for ip, _ in connector.calls)
