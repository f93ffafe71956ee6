"""Address parsing and classification for SSRF defence (vallum.detection.netaddr).

Expected values below are written from the IANA IPv4/IPv6 Special-Purpose Address Registries and
from how inet_aton / the WHATWG URL standard read IPv4 notations, not from running the code.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.detection.netaddr import (
    allowed_private,
    embedded_wildcard_ip,
    ends_in_number,
    is_metadata_host,
    parse_ip_literal,
    registrable_domain,
    special_purpose,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


# --------------------------------------------------------------------------- notations

@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", V4("127.0.0.1")),
        ("2130706433", V4("127.0.0.1")),  # one 32-bit decimal integer
        ("0177.0.0.1", V4("127.0.0.1")),  # octal first part
        ("0177.0000.0000.0001", V4("127.0.0.1")),
        ("017700000001", V4("127.0.0.1")),  # one octal integer
        ("0x7f.0.0.1", V4("127.0.0.1")),
        ("0X7F.0.0.1", V4("127.0.0.1")),
        ("0x7f000001", V4("127.0.0.1")),
        ("0x7f.0x0.0x0.0x1", V4("127.0.0.1")),
        ("0x7f.1", V4("127.0.0.1")),  # mixed hex + shortened
        ("0177.0x0.1", V4("127.0.0.1")),  # mixed octal, hex, decimal
        ("127.1", V4("127.0.0.1")),  # a.b: b fills 24 bits
        ("127.0.1", V4("127.0.0.1")),  # a.b.c: c fills 16 bits
        ("10.1.1", V4("10.1.0.1")),
        ("10.65536", V4("10.1.0.0")),
        ("169.254.43518", V4("169.254.169.254")),
        ("0xa9fea9fe", V4("169.254.169.254")),
        ("2852039166", V4("169.254.169.254")),
        ("0251.0376.0251.0376", V4("169.254.169.254")),
        ("0", V4("0.0.0.0")),
        ("0x", V4("0.0.0.0")),
        ("127.0.0.1.", V4("127.0.0.1")),  # trailing dot
        ("8.8.8.8", V4("8.8.8.8")),
        ("\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11", V4("127.0.0.1")),  # full-width + ideographic dots
        ("[::1]", V6("::1")),
        ("::1", V6("::1")),
        ("[0:0:0:0:0:0:0:1]", V6("::1")),
        ("[::ffff:127.0.0.1]", V6("::ffff:7f00:1")),
        ("::ffff:7f00:1", V6("::ffff:7f00:1")),
        ("[::127.0.0.1]", V6("::7f00:1")),  # IPv4-compatible
        ("[fe80::1%25eth0]", V6("fe80::1")),  # zone id, percent-encoded as in URLs
        ("fe80::1%eth0", V6("fe80::1")),
        ("[64:ff9b::7f00:1]", V6("64:ff9b::7f00:1")),
    ],
)
def test_parse_ip_literal_notations(host: str, expected: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert parse_ip_literal(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "example.com", "localhost", "1.2.3.4.5", "256.0.0.1", "1.256.0.1", "4294967296",
        "0x1ffffffff", "08.0.0.1", "09", "1.2.3.-4", "+1.2.3.4", "1_0.0.0.1", "1..2", ".1.2.3",
        "0xg.0.0.1", "::ffff:0177.0.0.1", "[::1", "fe80::1%", "1e100.net", "123.com", "",
        "\u0661\u0662\u0667.0.0.1",  # Arabic-Indic digits are not IPv4 digits
        "127.0.0.1 ", "", "[]", "1.2.3.4..",
    ],
)
def test_parse_ip_literal_rejects_names_and_invalid_numbers(host: str) -> None:
    if host == "127.0.0.1 ":
        # surrounding whitespace is tolerated: still the address (the conservative reading)
        assert parse_ip_literal(host) == V4("127.0.0.1")
    else:
        assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("1.2.3.4.5", True), ("example.0x1f", True), ("a.12", True), ("127.0.0.1.", True),
     ("example.com", False), ("1e100.net", False), ("0x.com", False), ("a.0xg", False)],
)
def test_ends_in_number(host: str, expected: bool) -> None:
    assert ends_in_number(host) is expected


# --------------------------------------------------------------------------- registry table

IPV4_SPECIAL = [
    # (address, block) — IANA IPv4 Special-Purpose Address Registry (+ multicast, RFC 5771)
    ("0.0.0.0", "this-network"),
    ("0.255.255.255", "this-network"),
    ("10.0.0.0", "private-use"),
    ("10.255.255.255", "private-use"),
    ("100.64.0.0", "shared-address-space"),
    ("100.127.255.255", "shared-address-space"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link-local"),
    ("169.254.255.255", "link-local"),
    ("172.16.0.1", "private-use"),
    ("172.31.255.255", "private-use"),
    ("192.0.0.1", "ipv4-service-continuity"),
    ("192.0.0.7", "ipv4-service-continuity"),
    ("192.0.0.8", "ipv4-dummy"),
    ("192.0.0.9", "ietf-protocol-assignments"),  # PCP anycast: blocked with the whole /24
    ("192.0.0.170", "nat64-dns64-discovery"),
    ("192.0.0.171", "nat64-dns64-discovery"),
    ("192.0.0.200", "ietf-protocol-assignments"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "6to4-relay-anycast"),
    ("192.168.0.1", "private-use"),
    ("192.168.255.255", "private-use"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "limited-broadcast"),
]

IPV6_SPECIAL = [
    # IANA IPv6 Special-Purpose Address Registry (+ multicast, site-local, unallocated space)
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:10.1.2.3", "private-use"),  # IPv4-mapped: the embedded address decides
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:0:7f00:1", "loopback"),  # SIIT IPv4-translated
    ("::10.0.0.1", "private-use"),  # IPv4-compatible
    ("::8.8.8.8", "ipv4-compatible"),  # deprecated form: never global
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 well-known prefix, embedded 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b:1::a00:1", "private-use"),  # local-use NAT64, /96 embedding
    ("64:ff9b:1:7f00:0:100::", "loopback"),  # local-use NAT64, RFC 6052 /48 embedding of 127.0.0.1
    ("64:ff9b:1::808:808", "nat64-local-use"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy-prefix"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "orchid"),
    ("2001:5::1", "ietf-protocol-assignments"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "srv6-sids"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 carrying 127.0.0.1
    ("2002:c0a8:101::", "private-use"),  # 6to4 carrying 192.168.1.1
    ("2002:a9fe:a9fe::", "metadata"),
    # Teredo: server 65.54.227.120, client = NOT(3fff:fdd2) = 192.0.2.45 (RFC 4380 example)
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),
    ("2001:0:4136:e378:8000:63bf:80ff:fefe", "loopback"),  # client NOT(80ff:fefe) = 127.0.1.1
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("4000::1", "reserved"),  # outside 2000::/3: not allocated for unicast
    ("1::1", "reserved"),
]

GLOBAL = [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255",
    "172.32.0.0", "169.253.255.255", "192.0.1.255", "192.0.3.0", "192.167.255.255", "192.169.0.0",
    "198.17.255.255", "198.20.0.0", "223.255.255.255", "11.0.0.0", "126.255.255.255", "128.0.0.0",
    "192.31.196.1",  # AS112-v4: globally reachable per IANA
    "192.52.193.1",  # AMT: globally reachable
    "192.175.48.1",  # AS112 direct delegation: globally reachable
    "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
    "2001:1::1", "2001:1::2", "2001:3::1", "2001:4:112::1", "2001:20::1",  # global carve-outs
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client NOT(f7f7:f7f7) = 8.8.8.8
]


@pytest.mark.parametrize(("addr", "block"), IPV4_SPECIAL + IPV6_SPECIAL)
def test_special_purpose_blocks(addr: str, block: str) -> None:
    assert special_purpose(ipaddress.ip_address(addr)) == block


@pytest.mark.parametrize("addr", GLOBAL)
def test_globally_routable_addresses(addr: str) -> None:
    assert special_purpose(ipaddress.ip_address(addr)) is None


METADATA = ["169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "192.0.0.192",
            "168.63.129.16", "169.254.0.23", "169.254.42.42", "fd00:ec2::254", "fd20:ce::254",
            "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::6464:64c8"]


@pytest.mark.parametrize("addr", METADATA)
def test_metadata_addresses(addr: str) -> None:
    assert special_purpose(ipaddress.ip_address(addr)) == "metadata"


def test_special_purpose_accepts_strings_in_any_notation() -> None:
    assert special_purpose("0x7f.1") == "loopback"
    assert special_purpose("[::ffff:7f00:1]") == "loopback"
    with pytest.raises(ValueError):
        special_purpose("example.com")


@pytest.mark.parametrize(
    "host",
    ["metadata.google.internal", "METADATA.Google.Internal.", "metadata.goog", "metadata", "instance-data",
     "169.254.169.254", "2852039166", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518",
     "[::ffff:169.254.169.254]", "[fd00:ec2::254]", "100.100.100.200", "169.254.169.254.nip.io",
     "a9fea9fe.nip.io", "metadata.tencentyun.com"],
)
def test_is_metadata_host(host: str) -> None:
    assert is_metadata_host(host)


@pytest.mark.parametrize(
    "host",
    ["example.com", "metadata.example.com", "google.internal", "127.0.0.1", "169.254.169.253", "",
     "metadatagoogle.internal", "instance-data.example.org", "8.8.8.8.nip.io"],
)
def test_is_not_metadata_host(host: str) -> None:
    assert not is_metadata_host(host)


@pytest.mark.parametrize(
    ("host", "expected"),
    [("10.0.0.1.nip.io", "10.0.0.1"), ("app.192.168.1.2.nip.io", "192.168.1.2"),
     ("app-10-0-0-1.nip.io", "10.0.0.1"), ("7f000001.nip.io", "127.0.0.1"), ("--1.sslip.io", "::1"),
     ("fe80--1.sslip.io", "fe80::1"), ("nip.io", None), ("www.nip.io", None), ("10.0.0.1.example.com", None)],
)
def test_embedded_wildcard_ip(host: str, expected: str | None) -> None:
    got = embedded_wildcard_ip(host)
    assert (str(got) if got is not None else None) == expected


# --------------------------------------------------------------------------- allow_private

@pytest.mark.parametrize(
    ("ip", "port", "host", "entries", "expected"),
    [
        ("10.1.2.3", 80, None, ["10.0.0.0/8"], True),
        ("10.1.2.3", None, None, ["10.0.0.0/8"], True),
        ("11.1.2.3", 80, None, ["10.0.0.0/8"], False),
        ("127.0.0.1", 9000, None, ["127.0.0.1:9000"], True),
        ("127.0.0.1", 9001, None, ["127.0.0.1:9000"], False),  # another port stays blocked
        ("127.0.0.1", None, None, ["127.0.0.1:9000"], False),  # unknown port: no port entry applies
        ("127.0.0.2", 9000, None, ["127.0.0.1:9000"], False),
        ("2130706433", 9000, None, ["127.0.0.1:9000"], True),  # any notation
        ("127.0.0.1", 9000, None, ["127.1:9000"], True),
        ("::ffff:127.0.0.1", 9000, None, ["127.0.0.1:9000"], True),  # mapped compares as IPv4
        ("127.0.0.1", 5, None, ["127.0.0.1"], True),  # bare address: every port
        ("::1", 8080, None, ["[::1]:8080"], True),
        ("::1", 8081, None, ["[::1]:8080"], False),
        ("fd00::5", 443, None, ["fd00::/8"], True),
        ("fe80::5", 443, None, ["fd00::/8"], False),
        ("10.0.0.5", 5432, "db.corp.example", ["db.corp.example:5432"], True),
        ("10.0.0.5", 5433, "db.corp.example", ["db.corp.example:5432"], False),
        ("10.0.0.5", 5432, "DB.corp.example.", ["db.corp.example:5432"], True),
        ("10.0.0.5", 80, "x.corp.example", ["*.corp.example"], True),
        ("10.0.0.5", 80, "corp.example", ["*.corp.example"], True),
        ("10.0.0.5", 80, "corp.example.org", ["*.corp.example"], False),
        # a trusted name that resolves to a metadata address is still blocked …
        ("169.254.169.254", 80, "db.corp.example", ["db.corp.example"], False),
        # … unless an IP entry covers the metadata address itself
        ("169.254.169.254", 80, None, ["169.254.169.254:80"], True),
        ("169.254.169.254", 80, None, ["10.0.0.0/8"], False),
        ("10.0.0.1", 80, None, [], False),
        ("10.0.0.1", 80, None, ["not an entry"], False),
    ],
)
def test_allowed_private(ip: str, port: int | None, host: str | None, entries: list[str], expected: bool) -> None:
    assert allowed_private(ip, port, host, entries) is expected


# --------------------------------------------------------------------------- registrable domain

@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.example.com", "example.com"),
        ("WWW.Example.COM.", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("alice.github.io", "alice.github.io"),  # private-section suffix: each user apart
        ("x.y.alice.github.io", "alice.github.io"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("www.BÜCHER.de", "xn--bcher-kva.de"),
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("[::1]", "::1"),
        ("localhost", "localhost"),
        ("co.uk", "co.uk"),
    ],
)
def test_registrable_domain(host: str, expected: str) -> None:
    assert registrable_domain(host) == expected


# --------------------------------------------------------------------------- properties

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_ip_literal_never_crashes(text: str) -> None:
    got = parse_ip_literal(text)
    assert got is None or isinstance(got, ipaddress.IPv4Address | ipaddress.IPv6Address)
    if got is not None:
        special_purpose(got)  # classifies whatever it parses


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_agrees_with_ipaddress_on_canonical_forms(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert parse_ip_literal(str(ip)) == ip
    if ip.version == 6:
        assert parse_ip_literal(f"[{ip}]") == ip
        assert parse_ip_literal(ip.exploded) == ip


def _notations(ip: ipaddress.IPv4Address) -> list[str]:
    n = int(ip)
    b = ip.packed
    return [
        str(n),
        "0" + format(n, "o"),
        hex(n),
        ".".join("0" + format(x, "o") for x in b),
        ".".join(hex(x) for x in b),
        f"{b[0]}.{n & 0xFFFFFF}",
        f"{b[0]}.{b[1]}.{n & 0xFFFF}",
        f"{hex(b[0])}.{oct(b[1]).replace('0o', '0')}.{b[2]}.{hex(b[3])}",
        str(ip) + ".",
        f"::ffff:{ip}",
        f"[::ffff:{ip}]",
    ]


SPECIAL_V4_NETS = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPECIAL_V4_NETS).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address))))
def test_special_v4_classifies_identically_in_every_notation(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    expected = special_purpose(ip)
    assert expected is not None  # every address of these blocks is special
    for notation in _notations(ip):
        parsed = parse_ip_literal(notation)
        assert parsed is not None, notation
        assert special_purpose(parsed) == expected, notation


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4))
def test_every_v4_notation_parses_to_the_same_address(ip: ipaddress.IPv4Address) -> None:
    for notation in _notations(ip)[:9]:
        assert parse_ip_literal(notation) == ip, notation


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4))
def test_v4_embedded_in_v6_classifies_like_v4(ip: ipaddress.IPv4Address) -> None:
    n = int(ip)
    expected = special_purpose(ip)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | n)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | n)
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)
    assert special_purpose(mapped) == expected
    assert special_purpose(nat64) == expected
    assert special_purpose(six_to_four) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.one_of(st.none(), st.integers(0, 65535)),
       st.lists(st.text(max_size=30), max_size=3))
def test_name_functions_never_crash(text: str, port: int | None, entries: list[str]) -> None:
    reg = registrable_domain(text)
    assert isinstance(reg, str)
    assert reg == reg.lower() or not reg.isascii()
    assert isinstance(is_metadata_host(text), bool)
    assert isinstance(allowed_private(text, port, text, entries), bool)
    assert isinstance(embedded_wildcard_ip(text + ".nip.io") is None, bool)
