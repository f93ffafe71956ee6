"""CONNECT tunnels: host policy before the 200, SNI must match the CONNECT host, optional TLS
interception with the local CA (then requests and responses are inspected as plain HTTP)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess

import httpx
import pytest
from egress_support import (
    INJECTION,
    SECRET,
    FakeResolver,
    RefusingConnector,
    block_json,
    ca_file,
    route,
)

from vallum.egress.tlsca import init_ca

HOST = "upstream.example.com"


def trusting(*cafiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for f in cafiles:
        ctx.load_verify_locations(str(f))
    return ctx


def connect_raw(port: int, target: str) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


@pytest.fixture
def tls_upstream(harness, upstream_tls):
    return harness.upstream({"/inject": route(200, "text/html", f"<p>{INJECTION}</p>")}, tls=upstream_tls)


def test_connect_passthrough_tunnel(harness, tls_upstream, test_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy(resolver=resolver, connector=RefusingConnector())
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", verify=trusting(ca_file(test_ca)), trust_env=False) as c:
        r = c.get(f"https://{HOST}:{tls_upstream.port}/hello")
        r2 = c.get(f"https://{HOST}:{tls_upstream.port}/inject")
    assert r.status_code == 200 and r.text == "hello from upstream"
    assert r2.status_code == 200  # not intercepted: only the host is inspected
    recs = [x for x in p.sink.records if x.transport == "egress.connect"]
    assert recs and recs[0].action == "allow" and recs[0].destination == f"{HOST}:{tls_upstream.port}"
    assert recs[0].extra["sni"] == HOST and recs[0].extra["ip"] == "127.0.0.1"
    assert resolver.calls == [HOST]  # one lookup, pinned


def test_blocked_connect_gets_403_instead_of_200(harness):
    resolver, connector = FakeResolver({}), RefusingConnector()
    p = harness.proxy({"egress": {"blocklist": ["bad.example.org"]}}, resolver=resolver, connector=connector)
    for target in ("pastebin.com:443", "x.bad.example.org:443", "169.254.169.254:443"):
        s, head = connect_raw(p.port, target)
        s.close()
        assert head.startswith(b"HTTP/1.1 403"), head
        assert b"x-vallum-action: block" in head.lower()
    assert resolver.calls == [] and connector.calls == []


def test_connect_to_name_resolving_private_is_blocked(harness):
    resolver, connector = FakeResolver({"intranet.example.com": ["10.0.0.5"]}), RefusingConnector()
    p = harness.proxy({"egress": {"allow_private": []}}, resolver=resolver, connector=connector)
    s, head = connect_raw(p.port, "intranet.example.com:443")
    body = s.recv(65536)
    s.close()
    assert head.startswith(b"HTTP/1.1 403")
    payload = json.loads((head.split(b"\r\n\r\n", 1)[1] + body).decode())
    assert payload["category"] == "ssrf"
    assert connector.calls == []


def _tunnel_then_tls(harness, tls_upstream, test_ca):
    """A proxy, an accepted CONNECT to HOST, and a TLS context that trusts the test CA."""
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy(resolver=resolver, connector=RefusingConnector())
    s, head = connect_raw(p.port, f"{HOST}:{tls_upstream.port}")
    assert head.startswith(b"HTTP/1.1 200")
    ctx = trusting(ca_file(test_ca))
    ctx.check_hostname = False
    return p, s, ctx


def test_sni_mismatch_domain_fronting_blocked(harness, tls_upstream, test_ca):
    p, s, ctx = _tunnel_then_tls(harness, tls_upstream, test_ca)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls = ctx.wrap_socket(s, server_hostname="front.other-example.com")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(100):
            raise ConnectionError("closed")
    s.close()
    assert tls_upstream.connections == 0
    blocks = [r for r in p.sink.records if r.action == "block"]
    assert blocks and "egress.sni_mismatch" in blocks[-1].rules


def test_tunnel_that_is_not_tls_is_closed(harness):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    up = harness.upstream()
    p = harness.proxy(resolver=resolver, connector=RefusingConnector())
    s, head = connect_raw(p.port, f"{HOST}:{up.port}")
    assert head.startswith(b"HTTP/1.1 200")
    s.sendall(b"GET / HTTP/1.1\r\nHost: upstream.example.com\r\n\r\n")
    assert s.recv(100) == b""
    s.close()
    assert up.requests == []
    assert "egress.tunnel_not_tls" in p.sink.records[-1].rules


@pytest.fixture
def proxy_ca(tmp_path):
    d = tmp_path / "proxy-ca"
    init_ca(d)
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    return d


def test_tls_interception_inspects_requests_and_responses(harness, tls_upstream, test_ca, proxy_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"egress": {"tls": {"intercept": True, "ca_dir": str(proxy_ca),
                                          "upstream_ca_file": str(ca_file(test_ca))}}},
                      resolver=resolver, connector=RefusingConnector())
    base = f"https://{HOST}:{tls_upstream.port}"
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", verify=trusting(proxy_ca / "ca.pem"),
                      trust_env=False) as c:
        ok = c.get(f"{base}/hello")
        ok2 = c.post(f"{base}/echo", content=b"payload bytes")
        secret = c.get(f"{base}/x", params={"token": SECRET})
        inj = c.get(f"{base}/inject")
        fronted = c.get(f"{base}/hello", headers={"Host": "other.example.net"})
    assert ok.status_code == 200 and ok.text == "hello from upstream"
    assert ok2.content == b"payload bytes"
    assert secret.status_code == 403 and block_json(secret)["category"] == "credential"
    assert inj.status_code == 403 and block_json(inj)["category"] == "injection"
    assert fronted.status_code == 403 and block_json(fronted)["rule"] == "egress.host_mismatch"
    assert [s.target for s in tls_upstream.requests] == ["/hello", "/echo", "/inject"]
    assert resolver.calls == [HOST]  # requests inside the tunnel reuse the pinned address
    inner = [r for r in p.sink.records if r.extra.get("intercepted")]
    assert inner and all(r.transport == "egress.connect" for r in inner)
    assert p.state.ca is not None and p.state.ca.minted == 1


def test_interception_presents_proxy_ca_and_passthrough_is_spliced(harness, tls_upstream, test_ca, proxy_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    cfg = {"egress": {"tls": {"intercept": True, "ca_dir": str(proxy_ca), "upstream_ca_file": str(ca_file(test_ca))}}}
    p = harness.proxy(cfg, resolver=resolver, connector=RefusingConnector())
    # a client that trusts only the upstream's CA sees the proxy's certificate: refused
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", verify=trusting(ca_file(test_ca)), trust_env=False) as c, \
            pytest.raises(httpx.ConnectError):
        c.get(f"https://{HOST}:{tls_upstream.port}/hello")
    cfg["egress"]["tls"]["passthrough"] = ["*.example.com"]
    p2 = harness.proxy(cfg, resolver=resolver, connector=RefusingConnector())
    with httpx.Client(proxy=f"http://127.0.0.1:{p2.port}", verify=trusting(ca_file(test_ca)), trust_env=False) as c:
        r = c.get(f"https://{HOST}:{tls_upstream.port}/hello")
    assert r.status_code == 200


def test_curl_connect_with_interception(harness, tls_upstream, test_ca, proxy_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"egress": {"tls": {"intercept": True, "ca_dir": str(proxy_ca),
                                          "upstream_ca_file": str(ca_file(test_ca))}}},
                      resolver=resolver, connector=RefusingConnector())
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    base = f"https://{HOST}:{tls_upstream.port}"
    out = subprocess.run(["curl", "-sS", "--cacert", str(proxy_ca / "ca.pem"), "-x", f"http://127.0.0.1:{p.port}",
                          f"{base}/hello", "-w", "\n%{http_code}\n", f"{base}/x?k={SECRET}"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert "hello from upstream" in out.stdout, out.stderr
    assert "\n403\n" in out.stdout and '"category": "credential"' in out.stdout


def test_tls_init_cli(tmp_path):
    import yaml

    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    r = subprocess.run([".venv/bin/vallum", "tls", "init", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "data" / "tls" / "ca.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "tls" / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    again = subprocess.run([".venv/bin/vallum", "tls", "init", "--config", str(cfg)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_intercepted_upstream_with_untrusted_certificate_fails_closed(harness, tls_upstream, proxy_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"egress": {"tls": {"intercept": True, "ca_dir": str(proxy_ca)}}},  # test CA not trusted
                      resolver=resolver, connector=RefusingConnector())
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", verify=trusting(proxy_ca / "ca.pem"), trust_env=False) as c:
        r = c.get(f"https://{HOST}:{tls_upstream.port}/hello")
    assert r.status_code == 502 and block_json(r)["rule"] == "egress.upstream_error"
    assert tls_upstream.requests == []


def test_audit_mode_records_sni_mismatch_but_keeps_the_tunnel(harness, tls_upstream, test_ca):
    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"mode": "audit"}, resolver=resolver, connector=RefusingConnector())
    s, head = connect_raw(p.port, f"{HOST}:{tls_upstream.port}")
    assert head.startswith(b"HTTP/1.1 200")
    ctx = trusting(ca_file(test_ca))
    ctx.check_hostname = False
    tls = ctx.wrap_socket(s, server_hostname="front.other-example.com")
    tls.sendall(f"GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    tls.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello from upstream")
    rec = [r for r in p.sink.records if r.transport == "egress.connect"][-1]
    assert rec.action == "warn" and "egress.sni_mismatch" in rec.rules


def test_absolute_form_https_request_is_fetched_over_verified_tls(harness, tls_upstream, test_ca):
    from egress_support import raw_request

    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"egress": {"tls": {"upstream_ca_file": str(ca_file(test_ca))}}}, resolver=resolver,
                      connector=RefusingConnector())
    out = raw_request(p.port, f"GET https://{HOST}:{tls_upstream.port}/hello HTTP/1.1\r\nHost: {HOST}\r\n"
                              "Connection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello from upstream")
    assert p.sink.records[-1].destination == f"https://{HOST}:{tls_upstream.port}/hello"


def test_secret_in_mismatched_sni_is_reported_not_recorded(harness, tls_upstream, test_ca):
    p, s, ctx = _tunnel_then_tls(harness, tls_upstream, test_ca)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls = ctx.wrap_socket(s, server_hostname=f"{SECRET.lower()}.leak.example.org")
        if not tls.recv(100):
            raise ConnectionError("closed")
    s.close()
    rec = p.sink.records[-1]
    assert rec.action == "block" and "egress.sni_mismatch" in rec.rules
    dumped = json.dumps(rec.to_dict())
    assert SECRET.lower() not in dumped and "example.org (mismatch)" in dumped
    assert tls_upstream.connections == 0


def test_requests_inside_an_intercepted_tunnel_inherit_the_connect_principal(harness, tls_upstream, test_ca,
                                                                             proxy_ca):
    from vallum.decisions import Principal

    def who(client_ip, headers):
        auth = dict((k.lower(), v) for k, v in headers).get(b"proxy-authorization")
        return Principal(user="alice" if auth else None, ip=client_ip, source="proxy_auth" if auth else "missing")

    def gate(principal):
        return None if principal.user else ("block", "proxy authentication required", 407)

    resolver = FakeResolver({HOST: ["127.0.0.1"]})
    p = harness.proxy({"egress": {"tls": {"intercept": True, "ca_dir": str(proxy_ca),
                                          "upstream_ca_file": str(ca_file(test_ca))}}},
                      resolver=resolver, connector=RefusingConnector(), principal_resolver=who, principal_gate=gate)
    with httpx.Client(proxy=f"http://alice:pw@127.0.0.1:{p.port}", verify=trusting(proxy_ca / "ca.pem"),
                      trust_env=False) as c:
        r = c.get(f"https://{HOST}:{tls_upstream.port}/hello")
    assert r.status_code == 200 and r.text == "hello from upstream"
    assert all(rec.principal.user == "alice" for rec in p.sink.records)
    s, head = connect_raw(p.port, f"{HOST}:{tls_upstream.port}")  # no credentials
    s.close()
    assert head.startswith(b"HTTP/1.1 407") and b"proxy-authenticate" in head.lower()
