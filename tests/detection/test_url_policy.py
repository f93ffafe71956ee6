"""The URL policy (kind `url`): vallum.detection.urlpolicy, driven through `Inspector.scan`.

Rules are compiled once with the pure-`re` engine; each test's configuration is applied to a copy
of that inspector (the URL policy reads `config.egress`, `config.detection` and the mode at call
time), which keeps the module fast.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import pytest

from vallum.config import Config
from vallum.detection.model import Action, Finding, Mode, Verdict
from vallum.detection.pipeline import Inspector, ScanInputError
from vallum.detection.urlpolicy import (
    SplitURL,
    URLSyntaxError,
    check_resolved_address,
    check_url,
    domain_matches,
    exfil_patterns,
    internal_hostname_reason,
    split_url,
)

GHP = "ghp_R8x2kLm9QwErTy7uIoP3aSdFgHjK1zXcVbN4"

_BASE: Inspector | None = None


def inspector(**cfg: Any) -> Inspector:
    global _BASE
    if _BASE is None:
        _BASE = Inspector(Config(), engine="re")
    insp = copy.copy(_BASE)
    insp.config = Config.model_validate(cfg)
    insp.mode = Mode(insp.config.mode)
    return insp


def scan(url: Any, **cfg: Any) -> Verdict:
    return inspector(**cfg).scan(url, "url")


def rules(url: Any, **cfg: Any) -> set[str]:
    return {f.rule for f in scan(url, **cfg).findings}


def only(verdict: Verdict, rule: str) -> Finding:
    hits = [f for f in verdict.findings if f.rule == rule]
    assert hits, f"{rule} not in {[f.rule for f in verdict.findings]}"
    return hits[0]


# --------------------------------------------------------------------------- harmless URLs

HARMLESS = [
    "https://example.com/",
    "https://example.com",
    "HTTPS://EXAMPLE.COM/Path",
    "http://example.com:8080/a/b?c=d#e",
    "wss://stream.example.com/socket?room=42",
    "ws://example.com/",
    "https://www.google.com/search?q=how+to+bake+bread&utm_source=newsletter&utm_medium=email&utm_campaign=2026_winter",
    "https://github.com/python/cpython/commit/0c3fd8e3cd16e7a3d6b0e1c9d8f7a6b5c4d3e2f1",
    "https://api.example.com/v1/items/550e8400-e29b-41d4-a716-446655440000?include=owner&limit=50",
    "https://example.com/app?state=eyJwYWdlIjoyLCJzb3J0IjoibmFtZSJ9",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
    "https://example.com/search?q=50%25+off&page=2",
    "https://en.wikipedia.org/wiki/Caf%C3%A9",
    "https://example.com/login?redirect=https%3A%2F%2Fexample.org%2Fpath",
    "https://user@example.com/",
    "https://git@github.com/org/repo.git",
    "https://localbitcoins.com/buy",
    "https://www.localbitcoins.com/",
    "https://internal-tools.example.com/",
    "https://corp.example.com/local/internal",
    "https://metadata.example.com/",
    "https://localhost.example.com/",
    "https://example.com/docs/file..txt",
    "https://example.com/a/.../b",
    "https://example.com/v1.2..3/x",
    "https://example.com/..foo/bar",
    "https://8.8.8.8/dns-query",
    "http://1.1.1.1/",
    "https://[2606:4700:4700::1111]/dns-query",
    "https://[2001:4860:4860::8888]:443/",
    "https://bücher.de/",
    "https://例え.jp/",
    "https://яндекс.рф/",
    "https://notpastebin.com/",
    "https://pastebin.com.example.org/",
    "https://boast.pro/",
    "https://8.8.8.8.nip.io/",
    "https://example.com/?text=line%20one%0Aline%20two",  # a lone encoded LF: multi-line text
    "https://example.com/?q=",
    "https://example.com/?&&a=1&&",
    "https://example.com/?api_key=${API_KEY}&token=xxxxxxxx&password=",
    "https://example.com/#section-2",
    # a signed CDN URL: the signature is a MAC over this one URL, allowed by the URL policy
    "https://d111111abcdef8.cloudfront.net/image.jpg?Expires=1767225600&Signature=nitfHRCrtziwO2HwPfWw~yYDhUF5EwRunQA-j19DzZrvDh6hQ73lDx~-ar3UocvvRQVw6EkC~GdpGQyyOSKQim-TxAnW7d8F5Kkai9HVx0FIu-5jcQb0UEmatEXAMPLE3ReXySpLSMj0yCd3ZAB4UcBCAqEijkytL6f3fVYNGQI6&Key-Pair-Id=K2JCJMDEHXQW5F",
]


@pytest.mark.parametrize("url", HARMLESS)
def test_harmless_urls_pass(url: str) -> None:
    v = scan(url)
    assert v.action is Action.ALLOW, [f.to_dict() for f in v.findings]
    assert [f for f in v.findings if f.category in ("url", "ssrf", "credential")] == []


# --------------------------------------------------------------------------- parse / scheme

@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "FILE://localhost/etc/passwd", "gopher://127.0.0.1:6379/_SET", "dict://127.0.0.1:11211/stat",
     "ftp://example.com/x", "data:text/html,<script>alert(1)</script>", "javascript:alert(1)",
     "jar:http://example.com/a.jar!/b", "ldap://example.com/dc=x", "ldaps://example.com/", "sftp://example.com/",
     "tftp://example.com/x", "netdoc:///etc/passwd", "php://filter/resource=index.php", "smb://host/share",
     "expect://id", "mailto:a@example.com", "chrome://settings"],
)
def test_non_http_schemes_are_blocked(url: str) -> None:
    v = scan(url)
    f = only(v, "url.scheme")
    assert v.action is Action.BLOCK
    assert f.category == "url"
    assert f.location == "url.scheme"


@pytest.mark.parametrize(
    "url",
    ["not a url", "", "example.com/path", "//example.com/x", "http:example.com", "http:/example.com",
     "http:///example.com", "https:\\\\example.com/", "http:/\\example.com/", "http://", "http://:80/",
     "http://example.com:99999/", "http://example.com:0/", "http://example.com:8o/", "http://[::1/",
     "http://a:b:c/", "http://exa mple.com/", "http://example..com/", "http://.example.com/",
     "http://[127.0.0.1]/", "http://[example.com]/", "http://1.2.3.4.5/", "http://example.0x10/",
     "http://256.256.256.256/", "http://exa<mple.com/", "http://" + "a" * 64 + ".com/",
     "http://xn--zz.com/", "http://[::1]x/"],
)
def test_unparseable_urls_fail_closed(url: str) -> None:
    v = scan(url)
    assert v.action is Action.BLOCK, url
    assert any(f.category == "url" for f in v.findings)


def test_overlong_url_is_blocked_and_still_scanned() -> None:
    v = scan("https://example.com/?q=" + "a" * 70000 + GHP)
    assert "url.too_long" in {f.rule for f in v.findings}
    assert v.action is Action.BLOCK


# --------------------------------------------------------------------------- control chars / CRLF / NUL

@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://example.com/\r\nX-Injected: 1", "url.crlf"),
        ("http://example.com/a\nb", "url.crlf"),
        ("http://example.com/a\x00", "url.nul_byte"),
        ("http://exa\tmple.com/", "url.control_characters"),
        ("http://example.com/\x7f", "url.control_characters"),
        ("http://example.com/\x85", "url.control_characters"),
        ("http://example.com/\u202egnp.exe", "url.control_characters"),
        ("http://example.com/\u2028", "url.control_characters"),
        ("http://example.com/\u010d\u010aSet-Cookie:a=b", "url.crlf"),  # Latin-1 truncation
        ("http://example.com/x%0d%0aSet-Cookie:%20a=b", "url.crlf"),
        ("http://example.com/x%0D%0ASet-Cookie:%20a=b", "url.crlf"),
        ("http://example.com/x%0aLocation:%20http://evil", "url.crlf"),
        ("http://example.com/x%250d%250aSet-Cookie:a", "url.crlf"),  # double-encoded
        ("http://example.com/x%25250d%25250a", "url.crlf"),  # triple-encoded
        ("http://example.com/x%u000d%u000aSet-Cookie:a", "url.crlf"),  # IIS %u
        ("http://example.com/x%c0%8d%c0%8aSet-Cookie:a", "url.crlf"),  # overlong UTF-8
        ("http://example.com/?q=a%0d%0aHost:%20evil", "url.crlf"),
        ("http://example.com/?q=a%0dX", "url.crlf"),  # a CR anywhere
        ("http://example.com/?q=a%0AHost:%20evil", "url.crlf"),  # LF starting a header line
        ("http://example.com/?q=a%250Ab", "url.crlf"),  # double-encoded LF is not text
        ("http://exam%0d%0aple.com/", "url.crlf"),
        ("http://example.com/a%00.png", "url.nul_byte"),
        ("http://example.com/?f=a%00", "url.nul_byte"),
        ("http://example.com/a%2500", "url.nul_byte"),
    ],
)
def test_crlf_nul_and_control_characters(url: str, rule: str) -> None:
    v = scan(url)
    assert rule in {f.rule for f in v.findings}, [f.rule for f in v.findings]
    assert v.action is Action.BLOCK


def test_surrounding_whitespace_is_ignored_but_not_inside() -> None:
    assert scan("  https://example.com/\n").action is Action.ALLOW
    assert scan("\thttps://example.com/ \r\n").action is Action.ALLOW
    assert "url.crlf" in rules("https://example.com/\r\nX: y\n")


def test_crlf_in_method_is_blocked() -> None:
    v = scan({"method": "GET\r\nX-Injected: 1", "url": "https://example.com/"})
    assert "url.crlf" in {f.rule for f in v.findings}
    assert v.action is Action.BLOCK


# --------------------------------------------------------------------------- traversal

@pytest.mark.parametrize(
    "path",
    ["/../etc/passwd", "/a/../../etc/passwd", "/..", "/a/..\\..\\windows\\win.ini", "/%2e%2e/etc/passwd",
     "/%2E%2E%2Fetc%2Fpasswd", "/..%2fetc%2fpasswd", "/%2e%2e%2fetc", "/.%2e/etc", "/%2e./etc",
     "/%252e%252e%252fetc", "/%25252e%25252e/etc", "/%c0%ae%c0%ae/etc", "/%c0%ae%c0%ae%c0%afetc",
     "/%e0%80%ae%e0%80%ae/etc", "/..%c0%afetc", "/..%5cetc", "/%2e%2e%5cetc", "/..;/admin",
     "/static/..;/WEB-INF/web.xml", "/%u002e%u002e/etc", "/\uff0e\uff0e/etc"],
)
def test_path_traversal_variants(path: str) -> None:
    v = scan("https://example.com" + path)
    f = only(v, "url.path_traversal")
    assert f.location == "url.path"
    assert v.action is Action.BLOCK


def test_encoded_traversal_reports_the_decode_chain() -> None:
    f = only(scan("https://example.com/%252e%252e/etc"), "url.path_traversal")
    assert f.decoded == ("percent", "percent")
    assert only(scan("https://example.com/../etc"), "url.path_traversal").decoded == ()


def test_traversal_in_a_query_value_warns() -> None:
    v = scan("https://example.com/download?file=..%2f..%2fetc%2fpasswd")
    f = only(v, "url.traversal_in_query")
    assert f.location == "url.query.file"
    assert v.action is Action.WARN


def test_backslash_in_path_warns() -> None:
    v = scan("https://example.com/a\\b")
    assert only(v, "url.backslash").action is Action.WARN
    assert v.action is Action.WARN


# --------------------------------------------------------------------------- userinfo / authority

@pytest.mark.parametrize(
    "url",
    ["http://good.com@evil.com/", "https://www.paypal.com@evil.example/login",
     "http://127.0.0.1@evil.com/", "http://google.com:443@evil.com/", "http://a@b@evil.com/",
     "http://evil.com\\@good.com/", "http://evil.com\\\\@good.com/", "https://good.com%40evil.com@evil.com/",
     "https://good.com%2flogin@evil.com/", "https://good.com/@evil.com/".replace("/@", "%2f@")],
)
def test_userinfo_confusion_is_blocked(url: str) -> None:
    v = scan(url)
    assert v.action is Action.BLOCK
    assert {"url.userinfo_confusion", "url.malformed_authority"} & {f.rule for f in v.findings}


def test_userinfo_password_is_a_credential() -> None:
    v = scan("https://deploy:pVIObrgXkZ4jOHzPHUaF@git.example.com/acme/app.git")
    f = only(v, "url.credentials_in_userinfo")
    assert (f.category, f.location, v.action) == ("credential", "url.userinfo", Action.BLOCK)
    assert "pVIObrgXkZ4jOHzPHUaF" not in json.dumps(v.to_dict())


@pytest.mark.parametrize("url", ["https://user@example.com/", "https://user:@example.com/", "https://git@github.com/x"])
def test_plain_user_names_pass(url: str) -> None:
    assert scan(url).action is Action.ALLOW


# --------------------------------------------------------------------------- SSRF

SSRF_URLS = [
    ("http://127.0.0.1/", "ssrf.special_purpose_address"),
    ("http://127.0.0.1.:8080/", "ssrf.special_purpose_address"),
    ("http://2130706433/", "ssrf.special_purpose_address"),
    ("http://0177.0.0.1/", "ssrf.special_purpose_address"),
    ("http://017700000001/", "ssrf.special_purpose_address"),
    ("http://0x7f.0.0.1/", "ssrf.special_purpose_address"),
    ("http://0x7f000001/", "ssrf.special_purpose_address"),
    ("http://0x7f.1/", "ssrf.special_purpose_address"),
    ("http://127.1/", "ssrf.special_purpose_address"),
    ("http://10.1.1/", "ssrf.special_purpose_address"),
    ("http://0/", "ssrf.special_purpose_address"),
    ("http://0.0.0.0:8000/", "ssrf.special_purpose_address"),
    ("http://%31%32%37.0.0.1/", "ssrf.special_purpose_address"),  # percent-encoded host
    ("http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11/", "ssrf.special_purpose_address"),
    ("http://[::1]/", "ssrf.special_purpose_address"),
    ("http://[0:0:0:0:0:0:0:1]/", "ssrf.special_purpose_address"),
    ("http://[::]/", "ssrf.special_purpose_address"),
    ("http://[::ffff:127.0.0.1]/", "ssrf.special_purpose_address"),
    ("http://[::ffff:7f00:1]/", "ssrf.special_purpose_address"),
    ("http://[::ffff:10.0.0.1]/", "ssrf.special_purpose_address"),
    ("http://[64:ff9b::7f00:1]/", "ssrf.special_purpose_address"),  # NAT64
    ("http://[64:ff9b::10.0.0.1]/", "ssrf.special_purpose_address"),
    ("http://[2002:7f00:1::]/", "ssrf.special_purpose_address"),  # 6to4
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fefe]/", "ssrf.special_purpose_address"),  # Teredo → 127.0.1.1
    ("http://[fe80::1%25eth0]/", "ssrf.special_purpose_address"),  # zone id
    ("http://[fd12:3456::1]:8080/", "ssrf.special_purpose_address"),
    ("http://10.0.0.5/", "ssrf.special_purpose_address"),
    ("http://172.16.5.4/", "ssrf.special_purpose_address"),
    ("http://192.168.1.1/", "ssrf.special_purpose_address"),
    ("http://100.64.0.1/", "ssrf.special_purpose_address"),
    ("http://198.18.0.1/", "ssrf.special_purpose_address"),
    ("http://192.0.0.1/", "ssrf.special_purpose_address"),
    ("http://192.0.2.1/", "ssrf.special_purpose_address"),
    ("http://224.0.0.1/", "ssrf.special_purpose_address"),
    ("http://240.0.0.1/", "ssrf.special_purpose_address"),
    ("http://255.255.255.255/", "ssrf.special_purpose_address"),
    ("http://169.254.169.254/latest/meta-data/", "ssrf.metadata"),
    ("http://169.254.43518/", "ssrf.metadata"),
    ("http://2852039166/", "ssrf.metadata"),
    ("http://0xa9fea9fe/", "ssrf.metadata"),
    ("http://0251.0376.0251.0376/", "ssrf.metadata"),
    ("http://[::ffff:169.254.169.254]/", "ssrf.metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "ssrf.metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "ssrf.metadata"),
    ("http://100.100.100.200/latest/meta-data/", "ssrf.metadata"),
    ("http://169.254.170.2/v2/credentials", "ssrf.metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "ssrf.metadata"),
    ("http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/", "ssrf.metadata"),
    ("http://metadata.goog/", "ssrf.metadata"),
    ("http://metadata/", "ssrf.metadata"),
    ("http://instance-data/latest/", "ssrf.metadata"),
    ("http://169.254.169.254.nip.io/", "ssrf.metadata"),
    ("http://localhost/", "ssrf.internal_hostname"),
    ("http://LOCALHOST.:8080/", "ssrf.internal_hostname"),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "ssrf.internal_hostname"),  # full-width
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "ssrf.internal_hostname"),
    ("http://app.localhost/", "ssrf.internal_hostname"),
    ("http://ip6-localhost/", "ssrf.internal_hostname"),
    ("http://vault.internal/", "ssrf.internal_hostname"),
    ("http://printer.local/", "ssrf.internal_hostname"),
    ("http://db.cluster.local:5432/", "ssrf.internal_hostname"),
    ("http://host.localdomain/", "ssrf.internal_hostname"),
    ("http://router.home.arpa/", "ssrf.internal_hostname"),
    ("http://wiki.corp/", "ssrf.internal_hostname"),
    ("http://nas.lan/", "ssrf.internal_hostname"),
    ("http://kubernetes.default.svc/", "ssrf.internal_hostname"),
    ("http://db/", "ssrf.internal_hostname"),  # single label: search-domain expansion
    ("http://localtest.me/", "ssrf.internal_hostname"),
    ("http://app.lvh.me:3000/", "ssrf.internal_hostname"),
    ("http://10.0.0.1.nip.io/", "ssrf.special_purpose_address"),
    ("http://app-192-168-0-1.sslip.io/", "ssrf.special_purpose_address"),
    ("http://7f000001.c0a80001.rbndr.us/", "ssrf.dns_rebinding"),
    ("http://make-1.2.3.4-rebind-127.0.0.1-rr.1u.ms/", "ssrf.dns_rebinding"),
]


@pytest.mark.parametrize(("url", "rule"), SSRF_URLS)
def test_ssrf_is_blocked(url: str, rule: str) -> None:
    v = scan(url)
    f = only(v, rule)
    assert f.category == "ssrf"
    assert f.location == "url.host"
    assert v.action is Action.BLOCK


def test_metadata_is_critical_and_names_the_address() -> None:
    f = only(scan("http://0xa9fea9fe/"), "ssrf.metadata")
    assert f.severity == "critical"
    assert f.evidence == "169.254.169.254"


def test_unusual_notation_of_a_public_ip_warns() -> None:
    v = scan("http://0x08080808/")  # 8.8.8.8
    f = only(v, "url.ip_notation")
    assert f.action is Action.WARN
    assert v.action is Action.WARN
    assert not [f for f in v.findings if f.category == "ssrf"]


@pytest.mark.parametrize(
    ("url", "allow", "blocked"),
    [
        ("http://127.0.0.1:9000/", ["127.0.0.1:9000"], False),
        ("http://127.0.0.1:9001/", ["127.0.0.1:9000"], True),  # another port stays blocked
        ("http://127.0.0.1/", ["127.0.0.1:9000"], True),  # default port 80
        ("http://2130706433:9000/", ["127.0.0.1:9000"], False),
        ("http://localhost:9000/", ["127.0.0.1:9000"], False),
        ("http://localhost:9001/", ["127.0.0.1:9000"], True),
        ("http://[::1]:8080/", ["[::1]:8080"], False),
        ("http://[::1]:8081/", ["[::1]:8080"], True),
        ("http://10.2.3.4/", ["10.0.0.0/8"], False),
        ("http://10.2.3.4:6379/", ["10.0.0.0/8"], False),
        ("http://192.168.1.1/", ["10.0.0.0/8"], True),
        ("http://169.254.169.254/", ["10.0.0.0/8"], True),
        ("http://vault.internal:8200/", ["vault.internal:8200"], False),
        ("http://vault.internal:8201/", ["vault.internal:8200"], True),
        ("http://wiki.corp/", ["*.corp"], False),
    ],
)
def test_allow_private_exceptions(url: str, allow: list[str], blocked: bool) -> None:
    v = scan(url, egress={"allow_private": allow})
    ssrf = [f for f in v.findings if f.category == "ssrf"]
    assert bool(ssrf) is blocked
    assert (v.action is Action.BLOCK) is blocked


# --------------------------------------------------------------------------- lists and modes

@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("example.com", ["example.com"], True),
        ("api.example.com", ["example.com"], True),
        ("a.b.example.com", ["example.com"], True),
        ("notexample.com", ["example.com"], False),
        ("example.com.evil.net", ["example.com"], False),
        ("example.com", ["*.example.com"], True),  # the apex too (INTERFACES §3)
        ("api.example.com", ["*.example.com"], True),
        ("example.org", ["*.example.com"], False),
        ("example.com", ["=example.com"], True),
        ("api.example.com", ["=example.com"], False),
        ("EXAMPLE.COM.", ["Example.com"], True),
        ("bücher.de", ["xn--bcher-kva.de"], True),
        ("xn--bcher-kva.de", ["bücher.de"], True),
        ("x.oast.pro", ["oast.*"], True),
        ("oast.live", ["oast.*"], True),
        ("boast.pro", ["oast.*"], False),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("0x0a010203", ["10.0.0.0/8"], True),
        ("11.1.2.3", ["10.0.0.0/8"], False),
        ("192.0.2.7", ["192.0.2.7"], True),
        ("example.com", ["10.0.0.0/8"], False),
        ("anything.example", ["*"], True),
        ("example.com", [], False),
    ],
)
def test_domain_matches(host: str, patterns: list[str], expected: bool) -> None:
    assert domain_matches(host, patterns) is expected


@pytest.mark.parametrize(
    ("mode", "expected"), [("strict", Action.BLOCK), ("balanced", Action.BLOCK), ("audit", Action.WARN)]
)
def test_blocklist_in_each_mode(mode: str, expected: Action) -> None:
    cfg = {"mode": mode, "egress": {"blocklist": ["evil.example"], "allowlist": ["*"]}}
    for url in ("https://evil.example/", "https://api.evil.example/x"):
        v = scan(url, **cfg)
        assert only(v, "url.blocklisted").category == "url"
        assert v.action is expected
    assert scan("https://notevil.example/", **cfg).action is Action.ALLOW


@pytest.mark.parametrize(
    ("mode", "on_list", "off_list"),
    [("strict", Action.ALLOW, Action.BLOCK), ("balanced", Action.ALLOW, Action.ALLOW),
     ("audit", Action.ALLOW, Action.WARN)],
)
def test_allowlist_in_each_mode(mode: str, on_list: Action, off_list: Action) -> None:
    cfg = {"mode": mode, "egress": {"allowlist": ["*.example.com", "=api.partner.example"]}}
    assert scan("https://example.com/", **cfg).action is on_list
    assert scan("https://docs.example.com/", **cfg).action is on_list
    assert scan("https://api.partner.example/", **cfg).action is on_list
    v = scan("https://example.org/", **cfg)
    assert v.action is off_list
    assert ("url.not_allowlisted" in {f.rule for f in v.findings}) is (off_list is not Action.ALLOW)
    assert scan("https://www.partner.example/", **cfg).action is off_list  # "=" is exact


def test_strict_mode_with_empty_allowlist_reaches_nothing() -> None:
    assert scan("https://example.com/", mode="strict").action is Action.BLOCK
    assert scan("https://example.com/", mode="balanced").action is Action.ALLOW
    assert scan("https://example.com/", mode="audit").action is Action.ALLOW


def test_allowlist_does_not_lift_ssrf_or_the_blocklist() -> None:
    cfg = {"mode": "strict", "egress": {"allowlist": ["*"], "blocklist": ["evil.example"]}}
    assert "ssrf.internal_hostname" in rules("http://localhost/", **cfg)
    assert scan("http://localhost/", **cfg).action is Action.BLOCK
    assert scan("https://evil.example/", **cfg).action is Action.BLOCK


@pytest.mark.parametrize(
    ("mode", "expected"), [("strict", Action.BLOCK), ("balanced", Action.BLOCK), ("audit", Action.WARN)]
)
def test_policy_blocks_become_warnings_in_audit(mode: str, expected: Action) -> None:
    cfg = {"mode": mode, "egress": {"allowlist": ["example.com", "169.254.169.254"]}}
    for url in ("http://169.254.169.254/", "file:///etc/passwd", "https://example.com/%2e%2e/x",
                "https://example.com/x%0d%0aA:b", "https://pastebin.com/raw/x"):
        v = scan(url, **cfg)
        assert v.action is expected, url
        assert v.findings


EXFIL = ["pastebin.com", "www.pastebin.com", "paste.ee", "hastebin.com", "ghostbin.com", "transfer.sh",
         "file.io", "0x0.st", "webhook.site", "x.requestbin.com", "eo1a2b3c.m.pipedream.net",
         "abc123.ngrok-free.app", "abc.ngrok.io", "quiet-sun-1234.trycloudflare.com", "c59e3crp.interact.sh",
         "c59e3crp.oast.fun", "x.oast.pro", "x.oast.live", "abc.burpcollaborator.net", "canarytokens.com",
         "abc.dnslog.cn", "termbin.com", "requestrepo.com"]


@pytest.mark.parametrize("host", EXFIL)
def test_builtin_exfil_services_are_blocked(host: str) -> None:
    v = scan(f"https://{host}/abc")
    f = only(v, "url.exfil_service")
    assert (f.category, f.location, v.action) == ("url", "url.host", Action.BLOCK)


def test_exfil_list_is_data_with_the_documented_entries() -> None:
    pats = exfil_patterns()
    for entry in ("pastebin.com", "transfer.sh", "webhook.site", "ngrok-free.app", "trycloudflare.com",
                  "interact.sh", "oast.*", "burpcollaborator.net", "dnslog.cn", "pipedream.net"):
        assert entry in pats
    assert all(p == p.strip().lower() and " " not in p for p in pats)


def test_exfil_evidence_is_the_registrable_domain_not_the_labels() -> None:
    f = only(scan("https://c2VjcmV0LWRhdGE.abc.oast.fun/"), "url.exfil_service")
    assert f.evidence == "oast.fun"


def test_allowlist_overrides_the_builtin_exfil_list_and_config_can_tune_it() -> None:
    assert scan("https://webhook.site/x", egress={"allowlist": ["webhook.site"]}).action is Action.ALLOW
    v = scan("https://webhook.site/x", detection={"rules": {"url.exfil_service": {"action": "warn"}}})
    assert v.action is Action.WARN
    assert scan("https://webhook.site/x", detection={"disable": ["url.exfil_service"]}).action is Action.ALLOW
    assert scan("https://webhook.site/x", detection={"disable": ["url.*"]}).action is Action.ALLOW


# --------------------------------------------------------------------------- credentials in URL parts

def _cred(v: Verdict, location: str) -> list[Finding]:
    return [f for f in v.findings if f.category == "credential" and f.location == location]


@pytest.mark.parametrize(
    ("url", "location"),
    [
        (f"https://example.com/?q={GHP}", "url.query.q"),
        (f"https://example.com/?q={GHP.replace('_', '%5F')}", "url.query.q"),  # percent-encoded
        (f"https://example.com/?q={GHP.replace('_', '%255F')}", "url.query.q"),  # double-encoded
        (f"https://example.com/repos/{GHP}/x", "url.path"),
        (f"https://example.com/page#{GHP}", "url.fragment"),
        (f"https://example.com/cb#access_token={GHP}&type=bearer", "url.fragment"),
        (f"https://{GHP}@github.com/org/repo.git", "url.userinfo"),
        (f"https://x-access-token:{GHP}@github.com/org/repo.git", "url.userinfo"),
        (f"https://{GHP}.evil.example/", "url.host"),
        (f"https://{GHP[:20]}.{GHP[20:]}.evil.example/", "url.host"),  # split over two labels
        (f"https://{GHP[:12]}.{GHP[12:26]}.{GHP[26:]}.x.evil.example/", "url.host"),  # three labels
    ],
)
def test_secret_in_each_url_part(url: str, location: str) -> None:
    v = scan(url)
    assert _cred(v, location), [f.to_dict() for f in v.findings]
    assert v.action is Action.BLOCK
    assert GHP not in json.dumps(v.to_dict())
    assert GHP.lower() not in json.dumps(v.to_dict()).lower()


def test_secret_split_across_query_parameters() -> None:
    v = scan(f"https://example.com/?a={GHP[:18]}&b={GHP[18:]}")
    hits = [f for f in v.findings if f.category == "credential"]
    assert hits and hits[0].location == "url.query"
    assert "joined_params" in hits[0].decoded
    assert v.action is Action.BLOCK


def test_split_dns_labels_are_reported_as_joined() -> None:
    v = scan(f"https://{GHP[:20]}.{GHP[20:]}.evil.example/")
    assert any("dns_labels" in f.decoded for f in _cred(v, "url.host"))


@pytest.mark.parametrize(
    "path",
    [
        f"/{GHP[:14]}/{GHP[14:]}",  # the reported case: two segments
        f"/api/upload/{GHP[:14]}/{GHP[14:]}/done",  # segments around it
        f"/{GHP[:8]}/{GHP[8:16]}/{GHP[16:30]}/{GHP[30:]}",  # four pieces
        f"/{GHP[:14]}/{GHP[14:].replace('E', '%45')}",  # percent-encoded piece
        "/" + "/".join(["a"] * 30) + f"/{GHP[:20]}/{GHP[20:]}",  # past the segment bound: the last ones count
        "/AKIAIOSF/ODNN7EXAMPLE/x",  # an AWS key id in two segments
    ],
)
def test_secret_split_across_path_segments(path: str) -> None:
    v = scan("https://example.com" + path)
    hits = _cred(v, "url.path")
    assert hits and all("path_segments" in f.decoded for f in hits), [f.to_dict() for f in v.findings]
    assert v.action is Action.BLOCK
    assert GHP not in json.dumps(v.to_dict())


def test_split_path_secret_keeps_the_percent_step() -> None:
    v = scan(f"https://example.com/{GHP[:14]}/{GHP[14:].replace('E', '%45')}")
    assert _cred(v, "url.path")[0].decoded[:2] == ("percent", "path_segments")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/550e8400-e29b-41d4-a716-446655440000/orders/6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "/repos/octocat/hello-world/git/commits/7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
        "/objects/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data",
        "/ab/cd/ef0123456789abcdef0123456789abcdef012345/x",
        "/2024/11/22/how-to-build-a-proxy-in-python",
        "/archive/2023/10/15/1234/5678/9012/3456",  # digits of adjacent segments are no card number
        "/npm/react@18.2.0/umd/react.production.min.js",
        "/ajax/libs/jquery/3.7.1/jquery.min.js",
        "/gh/user/repo@v1.2.3/dist/bundle.js",
        "/static/js/main.8f3a2b1c.chunk.js",
        "/dl/ghp/releases/v1.2.3/ghp_tool-linux-amd64.tar.gz",
        "/s3/bucket/AKIAIOSFODNN7EXAMP/le",  # glued, the key id would run into lower case
        "/keys/api/key/secret/token/value",
        "/xoxb/1234/5678",
        "/en-US/docs/Web/JavaScript/Reference/Global_Objects/Array/prototype/map",
        "/v1/projects/my-project-123456/locations/us-central1/keyRings/ring/cryptoKeys/key",
    ],
)
def test_ordinary_paths_are_not_joined_into_secrets(path: str) -> None:
    v = scan("https://cdn.example.com" + path)
    assert not [f for f in v.findings if f.category in ("credential", "pii")], [f.to_dict() for f in v.findings]
    assert v.action is Action.ALLOW


def test_segment_runs_are_bounded() -> None:
    from vallum.detection.urlpolicy import _MAX_SPLIT_SEGMENTS, _segment_runs

    runs = _segment_runs([f"seg{i:05d}x" for i in range(200)])
    assert 0 < len(runs) <= 5 * _MAX_SPLIT_SEGMENTS
    assert _segment_runs(["only-one-segment-here"]) == []
    assert _segment_runs(["a", "b", "c"]) == []  # too short to hold a secret


def test_percent_decoding_is_in_the_chain() -> None:
    v = scan(f"https://example.com/?q={GHP.replace('_', '%5F')}")
    assert _cred(v, "url.query.q")[0].decoded[:1] == ("percent",)


_NO_DLP: list[Inspector] = []


def _no_dlp_inspector() -> Inspector:
    # pattern rules are disabled at compile time, so this one needs its own Inspector
    if not _NO_DLP:
        _NO_DLP.append(Inspector(Config.model_validate({"detection": {"disable": ["dlp.*"]}}), engine="re"))
    return _NO_DLP[0]


@pytest.mark.parametrize(
    "url",
    ["https://example.com/api?access_token=Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Ng",
     "https://example.com/api?api_key=q8Xn2vLp5RtY7wZk",
     "https://example.com/login?user=bob&password=correct-horse-battery",
     "https://example.com/api?client_secret=3f9a7c2e1b8d4f6a"],
)
def test_credential_named_query_parameters(url: str) -> None:
    v = scan(url)
    assert [f for f in v.findings if f.category == "credential" and f.location.startswith("url.query.")]
    assert v.action is Action.BLOCK
    # without any pattern rule (generic api-key rules included) the parameter name still decides
    v = _no_dlp_inspector().scan(url, "url")
    f = only(v, "url.secret_param")
    assert (f.category, v.action) == ("credential", Action.BLOCK)
    assert f.location.startswith("url.query.")


def test_known_credential_format_is_not_reported_twice() -> None:
    v = scan(f"https://example.com/?token={GHP}")
    assert _cred(v, "url.query.token")
    assert "url.secret_param" not in {f.rule for f in v.findings}


@pytest.mark.parametrize(
    ("rule", "secret"),
    [
        ("dlp.aws_access_key_id", "AKIA5243COT2MJCJYJ2V"),
        ("dlp.slack_webhook_url", "https://hooks.slack.com/services/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"),
        ("dlp.openai_api_key", "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"),
    ],
)
def test_other_dlp_rules_apply_to_urls(rule: str, secret: str) -> None:
    insp = inspector()
    if rule not in insp.rules_by_id:
        pytest.skip(f"{rule} is not in this build's rule set")
    url = secret if secret.startswith("https://") else f"https://example.com/x?data={secret}"
    v = insp.scan(url, "url")
    assert rule in {f.rule for f in v.findings}
    assert v.action is Action.BLOCK


# --------------------------------------------------------------------------- entropy

class _EntropySpy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, text: str, location: str, chain: tuple[str, ...], already: list[Finding]) -> list[Finding]:
        self.calls.append((location, text))
        if len(text) >= 20 and location.startswith("url.query"):
            return [Finding(rule="entropy.high", category="entropy", severity="medium", action=Action.WARN,
                            message="high entropy", location=location, decoded=chain)]
        return []


def test_entropy_runs_on_query_values_and_path_segments_only_where_not_benign() -> None:
    insp = inspector()
    spy = _EntropySpy()
    insp.entropy_findings = spy  # type: ignore[method-assign]
    url = ("https://example.com/files/q8Xn2vLp5RtY7wZk3mB9/view?data=Tm90QVNlY3JldEJ1dFJhbmRvbTk4&"
           "utm_source=aZ8qL2mN5pR7tV9xB3cD&gclid=Cj0KCQiA5rGuBhCnARIsAN11vgRk&state=af0ifjsldkj8asd7f6&"
           "X-Amz-Signature=9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b&Signature=Zx9Yw8Vu7Ts6Rq5Po4Nm")
    v = insp.scan(url, "url")
    assert ("url.query.data", "Tm90QVNlY3JldEJ1dFJhbmRvbTk4") in spy.calls
    assert ("url.path", "q8Xn2vLp5RtY7wZk3mB9") in spy.calls
    for loc, value in (("url.query.utm_source", "aZ8qL2mN5pR7tV9xB3cD"), ("url.query.gclid", "Cj0KCQiA5rGuBhCnARIsAN11vgRk"),
                       ("url.query.state", "af0ifjsldkj8asd7f6"),
                       ("url.query.X-Amz-Signature", "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"),
                       ("url.query.Signature", "Zx9Yw8Vu7Ts6Rq5Po4Nm")):
        assert (loc, value) not in spy.calls
    assert [f.location for f in v.findings if f.category == "entropy"] == ["url.query.data"]
    assert v.action is Action.WARN


# --------------------------------------------------------------------------- IDN / homographs

@pytest.mark.parametrize(
    "url",
    ["https://xn--pple-43d.com/",  # "аpple" with a Cyrillic а
     "https://\u0430pple.com/",
     "https://\u0430\u0440\u0440\u04cf\u0435.com/",  # all-Cyrillic "аррӏе"
     "https://www.p\u0430yp\u0430l.com/signin",
     "https://g\u03bf\u03bfgle.com/"],  # Greek omicrons
)
def test_homograph_domains_warn(url: str) -> None:
    v = scan(url)
    f = only(v, "url.homograph")
    assert (f.category, f.action, v.action) == ("url", Action.WARN, Action.WARN)


@pytest.mark.parametrize("url", ["https://bücher.de/", "https://例え.jp/", "https://яндекс.рф/",
                                 "https://москва.com/", "https://日本語テスト.jp/", "https://xn--bcher-kva.de/"])
def test_genuine_idn_domains_pass(url: str) -> None:
    assert "url.homograph" not in rules(url)


# --------------------------------------------------------------------------- resolved addresses

@pytest.mark.parametrize(
    ("ip", "rule"),
    [("10.0.0.1", "ssrf.special_purpose_address"), ("127.0.0.1", "ssrf.special_purpose_address"),
     ("::1", "ssrf.special_purpose_address"), ("::ffff:192.168.0.1", "ssrf.special_purpose_address"),
     ("169.254.169.254", "ssrf.metadata"), ("fd00:ec2::254", "ssrf.metadata"),
     ("not-an-ip", "ssrf.invalid_address"), ("", "ssrf.invalid_address")],
)
def test_check_resolved_address_blocks(ip: str, rule: str) -> None:
    f = check_resolved_address(inspector(), "app.example.com", ip, 443)
    assert f is not None
    assert (f.rule, f.category, f.action) == (rule, "ssrf", Action.BLOCK)


@pytest.mark.parametrize("ip", ["93.184.215.14", "2606:4700::6810:84e5", "::ffff:8.8.8.8"])
def test_check_resolved_address_passes_public(ip: str) -> None:
    assert check_resolved_address(inspector(), "app.example.com", ip, 443) is None


def test_check_resolved_address_takes_address_objects() -> None:
    f = check_resolved_address(inspector(), "x.example.com", ipaddress.ip_address("::ffff:127.0.0.1"), 80)
    assert f is not None and f.rule == "ssrf.special_purpose_address"
    assert check_resolved_address(inspector(), "x.example.com", ipaddress.ip_address("1.1.1.1"), 80) is None


def test_check_resolved_address_honours_allow_private_and_mode() -> None:
    insp = inspector(egress={"allow_private": ["10.0.0.0/8", "db.corp.example:5432"]})
    assert check_resolved_address(insp, "x.example.com", "10.9.9.9", 443) is None
    assert check_resolved_address(insp, "db.corp.example", "192.168.1.5", 5432) is None
    assert check_resolved_address(insp, "db.corp.example", "192.168.1.5", 5433) is not None
    # a trusted name answering with a metadata address is still refused (DNS rebinding)
    assert check_resolved_address(insp, "db.corp.example", "169.254.169.254", 5432) is not None
    audit = check_resolved_address(inspector(mode="audit"), "x.example.com", "10.0.0.1", 80)
    assert audit is not None and audit.action is Action.WARN


# --------------------------------------------------------------------------- input shapes

def test_dict_input_and_connect_targets() -> None:
    assert scan({"method": "POST", "url": "https://example.com/"}).action is Action.ALLOW
    assert scan({"url": "https://example.com/"}).action is Action.ALLOW
    assert scan({"method": "CONNECT", "url": "example.com:443"}).action is Action.ALLOW
    v = scan({"method": "CONNECT", "url": "127.0.0.1:22"})
    assert "ssrf.special_purpose_address" in {f.rule for f in v.findings}


@pytest.mark.parametrize(
    "content",
    [42, None, ["https://example.com/"], {"method": "GET"}, {"url": 5}, {"url": "https://e.com/", "method": 1},
     {"url": "https://e.com/", "headers": {"a": "b"}}],
)
def test_bad_shapes_raise_scan_input_error(content: Any) -> None:
    with pytest.raises(ScanInputError):
        inspector().scan(content, "url")


def test_check_url_with_a_custom_location_prefix() -> None:
    found = check_url(inspector(), f"http://127.0.0.1/?q={GHP}", location="request.url")
    locations = {f.location for f in found}
    assert "request.url.host" in locations
    assert "request.url.query.q" in locations


def test_split_url_parts() -> None:
    p = split_url("HTTPS://u:p@Example.com:8443/a/b?x=1&y=2#frag")
    assert p == SplitURL(scheme="https", rest="//u:p@Example.com:8443/a/b?x=1&y=2#frag", userinfo="u:p",
                         host="Example.com", port=8443, path="/a/b", query="x=1&y=2", fragment="frag")
    assert split_url("http://[::1]/").host == "[::1]"
    assert split_url("http://example.com").effective_port == 80
    assert split_url("wss://example.com/").effective_port == 443
    with pytest.raises(URLSyntaxError):
        split_url("http:/example.com")


@pytest.mark.parametrize(
    ("host", "expected"),
    [("localhost", True), ("a.b.localhost", True), ("x.internal", True), ("printer.local", True),
     ("intranet", True), ("example.com", False), ("localbitcoins.com", False), ("internal.example.com", False),
     ("127.0.0.1", False), ("app.lvh.me", True)],
)
def test_internal_hostname_reason(host: str, expected: bool) -> None:
    assert (internal_hostname_reason(host) is not None) is expected


@pytest.mark.parametrize(
    "url",
    [f"http://{GHP}/", f"http://{GHP}.internal/", f"http://{GHP}!.example.com/", f"http://{GHP}@good.com@evil.com/",
     f"https://{GHP}.trycloudflare.com/", f"http://{GHP}:1:2/", f"http://[{GHP}]/", f"{GHP}://example.com/"],
)
def test_policy_evidence_never_holds_a_host_or_userinfo_secret(url: str) -> None:
    v = scan(url)
    assert v.action is Action.BLOCK
    text = json.dumps(v.to_dict()).lower()
    assert GHP.lower() not in text
    assert GHP[4:24].lower() not in text


# --------------------------------------------------------------------------- memoised verdicts


def _rules_of(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.rule, f.location) for f in findings]


def test_cached_verdict_equals_a_fresh_check_and_is_a_fresh_list() -> None:
    insp = inspector()
    url = f"https://api.example.com/v1/items?token={GHP}"
    first = check_url(insp, url)
    assert any(f.category == "credential" for f in first)
    first.clear()  # a caller mutating its list never changes later verdicts
    again = check_url(insp, url)
    fresh = check_url(inspector(), url)
    assert again and _rules_of(again) == _rules_of(fresh)


def test_cache_belongs_to_one_inspector_and_its_config() -> None:
    url = "http://10.1.2.3:8080/x"
    plain = inspector()
    allowed = inspector(egress={"allow_private": ["10.0.0.0/8"]})
    assert "ssrf.special_purpose_address" in {f.rule for f in check_url(plain, url)}
    assert check_url(allowed, url) == []
    assert "ssrf.special_purpose_address" in {f.rule for f in check_url(plain, url)}
    # a config swapped on the same inspector object drops its memoised verdicts
    plain.config = Config.model_validate({"egress": {"allow_private": ["10.0.0.0/8"]}})
    assert check_url(plain, url) == []
    allowed.config = Config.model_validate({"mode": "strict"})
    allowed.mode = Mode.STRICT
    assert "ssrf.special_purpose_address" in {f.rule for f in check_url(allowed, url)}


def test_host_cache_keeps_per_url_parts_apart() -> None:
    insp = inspector()
    assert check_url(insp, "https://docs.example.com/a/b") == []
    assert "url.path_traversal" in {f.rule for f in check_url(insp, "https://docs.example.com/a/../../etc/passwd")}
    assert check_url(insp, "https://docs.example.com/c") == []
    # host findings repeat for every URL on that host, at the caller's location
    for path in ("/a", "/b"):
        got = check_url(insp, f"http://metadata.google.internal{path}", location="request.url")
        assert ("ssrf.metadata", "request.url.host") in _rules_of(got)
    # the port is part of the host verdict (allow_private entries can name one)
    ported = inspector(egress={"allow_private": ["127.0.0.1:8080"]})
    assert check_url(ported, "http://127.0.0.1:8080/") == []
    assert check_url(ported, "http://127.0.0.1:8081/") != []
    assert check_url(ported, "http://127.0.0.1:8080/") == []


def test_long_urls_are_checked_without_the_cache() -> None:
    insp = inspector()
    url = "https://example.com/" + "a/" * 1500 + f"?token={GHP}"
    assert any(f.category == "credential" for f in check_url(insp, url))
    assert any(f.category == "credential" for f in check_url(insp, url))
