"""Property-based tests of the URL policy: it never crashes, fails closed, and reads every notation
of a special-purpose address the same way."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vallum.config import Config
from vallum.detection.model import Action, Finding
from vallum.detection.pipeline import Inspector
from vallum.detection.urlpolicy import (
    URLSyntaxError,
    check_url,
    domain_matches,
    exfil_patterns,
    split_url,
)

_INSPECTOR: list[Inspector] = []
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def insp() -> Inspector:
    if not _INSPECTOR:
        _INSPECTOR.append(Inspector(Config(), engine="re"))
    return _INSPECTOR[0]


def blocked(findings: list[Finding]) -> bool:
    return any(f.action is Action.BLOCK for f in findings)


label = st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True)
host = st.builds(lambda a, b, tld: f"{a}.{b}.{tld}" if b else f"{a}.{tld}", label,
                 st.one_of(st.just(""), label), st.sampled_from(["com", "org", "net", "io", "co.uk", "de"]))
segment = st.from_regex(r"[A-Za-z0-9_~-]{1,12}", fullmatch=True)
path = st.lists(segment, max_size=4).map(lambda segs: "/" + "/".join(segs))
query = st.lists(st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True)),
                 max_size=3).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
benign_url = st.builds(lambda s, h, p, q: f"{s}://{h}{p}" + (f"?{q}" if q else ""),
                       st.sampled_from(["http", "https", "ws", "wss"]), host, path, query)


@SETTINGS
@given(st.text(max_size=200))
def test_check_url_never_crashes_and_fails_closed(text: str) -> None:
    findings = check_url(insp(), text)
    assert all(isinstance(f, Finding) for f in findings)
    try:
        parts = split_url(text.strip(" \t\r\n").strip(" "))
    except URLSyntaxError:
        assert blocked(findings), text
        return
    if parts.scheme not in ("http", "https", "ws", "wss"):
        assert blocked(findings), text


@SETTINGS
@given(st.sampled_from(["http://", "https://", "http://a@", "http://[", "wss://x.com:"]), st.text(max_size=80))
def test_url_shaped_noise_never_crashes(prefix: str, text: str) -> None:
    findings = check_url(insp(), prefix + text)
    assert all(isinstance(f, Finding) for f in findings)


@SETTINGS
@given(benign_url)
def test_ordinary_urls_are_allowed(url: str) -> None:
    h = split_url(url).host
    assume(not domain_matches(h, exfil_patterns()))
    findings = check_url(insp(), url)
    assert not [f for f in findings if f.category in ("url", "ssrf", "credential")], url


@SETTINGS
@given(benign_url, st.sampled_from(["%0d%0a", "%0D%0A", "%250d%250a", "%0d", "%u000d%u000a", "%c0%8d%c0%8a"]))
def test_encoded_crlf_in_the_path_always_blocks(url: str, crlf: str) -> None:
    parts = split_url(url)
    bad = f"{parts.scheme}://{parts.host}{parts.path}{crlf}Set-Cookie:%20x=1"
    assert "url.crlf" in {f.rule for f in check_url(insp(), bad)}


@SETTINGS
@given(benign_url, st.sampled_from(["../", "..%2f", "%2e%2e/", "%2e%2e%2f", ".%2e/", "%252e%252e%252f",
                                    "%c0%ae%c0%ae/", "..\\", "..%5c", "..;/"]))
def test_traversal_in_the_path_always_blocks(url: str, dots: str) -> None:
    parts = split_url(url)
    bad = f"{parts.scheme}://{parts.host}/{dots}etc/passwd"
    findings = check_url(insp(), bad)
    assert "url.path_traversal" in {f.rule for f in findings}
    assert blocked(findings)


def notations(ip: ipaddress.IPv4Address) -> list[str]:
    n = int(ip)
    b = ip.packed
    return [str(ip), str(n), "0" + format(n, "o"), hex(n), ".".join("0" + format(x, "o") for x in b),
            ".".join(hex(x) for x in b), f"{b[0]}.{n & 0xFFFFFF}", f"{b[0]}.{b[1]}.{n & 0xFFFF}",
            f"[::ffff:{ip}]", f"[::ffff:{(n >> 16):x}:{(n & 0xFFFF):x}]", f"[64:ff9b::{ip}]",
            quote(str(ip), safe="").replace(".", "%2e")]


SPECIAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4")]


@SETTINGS
@given(st.sampled_from(SPECIAL).flatmap(lambda net: st.integers(int(net.network_address), int(net.broadcast_address))),
       st.sampled_from(["http", "https"]), st.integers(1, 65535))
def test_special_addresses_block_in_every_notation(value: int, scheme: str, port: int) -> None:
    ip = ipaddress.IPv4Address(value)
    for h in notations(ip):
        findings = check_url(insp(), f"{scheme}://{h}:{port}/x")
        ssrf = [f for f in findings if f.category == "ssrf"]
        assert ssrf, h
        assert blocked(findings), h


@SETTINGS
@given(st.ip_addresses(v=4))
def test_public_addresses_never_hit_ssrf(ip: ipaddress.IPv4Address) -> None:
    assume(all(ip not in net for net in SPECIAL))
    assume(not ip.is_private and not ip.is_reserved and not ip.is_multicast)
    assume(str(ip) not in ("168.63.129.16",) and ip not in ipaddress.ip_network("192.88.99.0/24"))
    findings = check_url(insp(), f"https://{ip}/")
    assert not [f for f in findings if f.category == "ssrf"], ip


@SETTINGS
@given(host, label)
def test_domain_patterns_match_apex_and_subdomains_only(h: str, sub: str) -> None:
    for pattern in (h, f"*.{h}", h.upper() + "."):
        assert domain_matches(h, [pattern])
        assert domain_matches(f"{sub}.{h}", [pattern])
        assert not domain_matches(f"{sub}{h}", [pattern])
        assert not domain_matches(f"{h}.{sub}.example", [pattern])
    assert domain_matches(h, [f"={h}"])
    assert not domain_matches(f"{sub}.{h}", [f"={h}"])


@SETTINGS
@given(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=4))
def test_domain_matches_never_crashes(text: str, patterns: list[str]) -> None:
    assert isinstance(domain_matches(text, patterns), bool)
