"""Address classification for SSRF defence: pure functions, no DNS, no sockets.

- `parse_ip_literal` reads a host the way HTTP clients and the C library do (``inet_aton`` and the
  WHATWG URL standard): dotted decimal, one 32-bit integer, octal and hex parts, shortened forms
  (``127.1``), IPv6 in brackets with zone ids, IPv4-mapped IPv6, a trailing dot, full-width digits.
- `special_purpose` names the IANA special-purpose block (RFC 6890 and successors) an address falls
  in, looking through the IPv4 address embedded in IPv4-mapped, IPv4-compatible, NAT64, 6to4 and
  Teredo IPv6 addresses; cloud metadata endpoints are reported as ``"metadata"``.
- `allowed_private` applies the ``egress.allow_private`` exceptions.
- `registrable_domain` is the public-suffix-aware grouping key (rate limits, data budgets).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_HOSTNAMES",
    "IPAddress",
    "allowed_private",
    "embedded_wildcard_ip",
    "ends_in_number",
    "is_metadata_host",
    "normalize_hostname",
    "parse_ip_literal",
    "registrable_domain",
    "special_purpose",
]

# --------------------------------------------------------------------------- parsing

_DEC = re.compile(r"[0-9]+")
_OCT = re.compile(r"[0-7]*")
_HEX = re.compile(r"[0-9a-fA-F]*")
#: dots that IDNA (UTS #46) maps to "." — a URL host written with them is the same host
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _ipv4_part(part: str) -> int | None:
    """One part of an inet_aton-style IPv4 address: decimal, 0-prefixed octal or 0x-prefixed hex."""
    if not part:
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not _HEX.fullmatch(digits):
            return None
        return int(digits, 16) if digits else 0  # "0x" alone is 0 (WHATWG and glibc agree)
    if len(part) > 1 and part[0] == "0":
        digits = part[1:]
        return int(digits, 8) if _OCT.fullmatch(digits) else None
    # explicit ASCII check: int() would also accept "+1", "1_0" and non-ASCII digits
    return int(part) if _DEC.fullmatch(part) else None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    nums = [_ipv4_part(p) for p in parts]
    if any(n is None for n in nums):
        return None
    values = [n for n in nums if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def ends_in_number(host: str) -> bool:
    """Whether a host's last label is numeric (WHATWG "ends in a number"): it must then be IPv4.

    A URL whose host ends in a number but is not a valid IPv4 address is invalid for browsers,
    while other clients may resolve it; the URL policy treats it as unparseable.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1] if labels else ""
    if last and _DEC.fullmatch(last):
        return True
    return last[:2] in ("0x", "0X") and bool(_HEX.fullmatch(last[2:]))


def parse_ip_literal(host: str) -> IPAddress | None:
    """The IP address a host denotes when it is an IP literal in any notation; None for a name.

    Accepts what HTTP clients and ``inet_aton`` accept: ``127.0.0.1``, ``2130706433``,
    ``0177.0.0.1``, ``017700000001``, ``0x7f.0.0.1``, ``0x7f000001``, mixed (``0x7f.0.1``),
    shortened (``127.1``, ``10.1.1``), a trailing dot, full-width digits and ideographic dots;
    IPv6 with or without brackets, with a zone id (``fe80::1%25eth0``, ``fe80::1%eth0``), and with
    an embedded dotted IPv4 (``::ffff:127.0.0.1``). IPv4-mapped addresses are returned as IPv6;
    `special_purpose` looks through them. Anything else (including an invalid number such as
    ``256.1.1.1``) is None.
    """
    if not isinstance(host, str):
        return None
    if len(host) <= 256:
        return _parse_ip_literal_cached(host)  # results are immutable; hosts repeat
    return _parse_ip_literal(host)


@lru_cache(maxsize=4096)
def _parse_ip_literal_cached(host: str) -> IPAddress | None:
    return _parse_ip_literal(host)


def _parse_ip_literal(host: str) -> IPAddress | None:
    h = host.strip()
    if not h.isascii():
        h = unicodedata.normalize("NFKC", h).translate(_DOTS)
        if not h.isascii():
            return None
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if not h:
        return None
    if ":" in h:
        addr, _, zone = h.partition("%")
        if "%" in h and not zone:
            return None
        try:
            return ipaddress.IPv6Address(addr)
        except ValueError:
            return None
    return _parse_ipv4(h)


def normalize_hostname(host: str) -> str:
    """A host as compared against lists: lower-case, IDNA A-labels, no brackets, no trailing dot."""
    h = host.strip().strip("[]").rstrip(".")
    if not h.isascii():
        try:
            import idna

            h = idna.encode(h, uts46=True, std3_rules=False, transitional=False).decode("ascii")
        except (UnicodeError, ValueError):
            h = unicodedata.normalize("NFKC", h).translate(_DOTS)
    return h.lower()


# --------------------------------------------------------------------------- classification

#: cloud instance-metadata endpoints (reported as "metadata", whatever block they sit in)
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner, Linode …
        "169.254.170.2",  # AWS ECS task metadata / credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "169.254.0.23",  # Tencent Cloud
        "169.254.42.42",  # Scaleway
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "168.63.129.16",  # Azure WireServer (a public address, reachable only from Azure hosts)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity over IPv6
        "fd20:ce::254",  # Google Cloud metadata over IPv6
        "fd00:42::42",  # Scaleway over IPv6
    )
)

#: metadata service host names (compared after `normalize_hostname`)
METADATA_HOSTNAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "metadata.packet.net",
        "metadata.azure.internal",
    }
)

# (network, block name); None = globally reachable carve-out inside a broader special block.
# Written from the IANA IPv4/IPv6 Special-Purpose Address Registries. The most specific match wins.
_V4_TABLE: list[tuple[str, str | None]] = [
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private-use"),
    ("100.64.0.0/10", "shared-address-space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private-use"),
    # the whole /24 is blocked, including the globally reachable PCP/TURN anycast /32s (.9, .10):
    # an agent has no business there
    ("192.0.0.0/24", "ietf-protocol-assignments"),
    ("192.0.0.0/29", "ipv4-service-continuity"),
    ("192.0.0.8/32", "ipv4-dummy"),
    ("192.0.0.170/31", "nat64-dns64-discovery"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4-relay-anycast"),
    ("192.168.0.0/16", "private-use"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited-broadcast"),
]

_V6_TABLE: list[tuple[str, str | None]] = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy-prefix"),
    ("2001::/23", "ietf-protocol-assignments"),
    ("2001:1::1/128", None),  # PCP anycast
    ("2001:1::2/128", None),  # TURN anycast
    ("2001:1::3/128", None),  # DNS-SD service registration protocol anycast
    ("2001:2::/48", "benchmarking"),
    ("2001:3::/32", None),  # AMT
    ("2001:4:112::/48", None),  # AS112-v6
    ("2001:10::/28", "orchid"),
    ("2001:20::/28", None),  # ORCHIDv2
    ("2001:30::/28", None),  # drone remote ID
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "srv6-sids"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
]


def _compile(table: list[tuple[str, str | None]]) -> list[tuple[IPNetwork, str | None]]:
    nets = [(ipaddress.ip_network(n), name) for n, name in table]
    nets.sort(key=lambda t: t[0].prefixlen, reverse=True)
    return nets


_V4 = _compile(_V4_TABLE)
_V6 = _compile(_V6_TABLE)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT "IPv4-translated" (RFC 2765)
_COMPAT = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def _v4(n: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(n & 0xFFFFFFFF)


def _lookup(ip: IPAddress, table: list[tuple[IPNetwork, str | None]]) -> str | None:
    for net, name in table:
        if ip in net:
            return name
    return None


def _special_v4(ip: ipaddress.IPv4Address) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "metadata"
    return _lookup(ip, _V4)


def special_purpose(ip: IPAddress | str) -> str | None:
    """The special-purpose block `ip` falls in (``"loopback"``, ``"private-use"``, ``"metadata"`` …),
    or None when it is globally routable.

    IPv6 addresses that carry an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible
    ``::/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32`` with its XOR-ed
    client address) are classified by that IPv4 address, so ``::ffff:127.0.0.1`` is ``"loopback"``.
    The local-use NAT64 prefix ``64:ff9b:1::/48`` and the deprecated IPv4-compatible form are never
    global. IPv6 outside ``2000::/3`` that no registry entry names is ``"reserved"``.
    A string is parsed with `parse_ip_literal` (ValueError if it is not an IP literal).
    """
    if isinstance(ip, str):
        parsed = parse_ip_literal(ip)
        if parsed is None:
            raise ValueError(f"not an IP address: {ip!r}")
        ip = parsed
    return _special_purpose(ip)


@lru_cache(maxsize=4096)
def _special_purpose(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return _special_v4(ip)
    if ip.scope_id:
        ip = ipaddress.IPv6Address(ip.packed)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    n = int(ip)
    if ip in _MAPPED or ip in _TRANSLATED or ip in _NAT64:
        return _special_v4(_v4(n))
    if ip in _COMPAT and n > 1:
        return _special_v4(_v4(n)) or "ipv4-compatible"
    if ip in _NAT64_LOCAL:
        # RFC 6052 places the IPv4 address in bits 48-63 + 72-87 for a /48 prefix; a /96 taken
        # out of the prefix carries it in the last 32 bits. Check both.
        rfc6052 = ((n >> 64) & 0xFFFF) << 16 | ((n >> 40) & 0xFFFF)
        names = [_special_v4(_v4(rfc6052)), _special_v4(_v4(n))]
        if "metadata" in names:
            return "metadata"
        # the zero bits of the other reading always look like 0.0.0.0/8: not informative
        named = [x for x in names if x is not None and x != "this-network"]
        return named[0] if named else "nat64-local-use"
    if ip in _6TO4:
        return _special_v4(_v4(n >> 80))
    if ip in _TEREDO:
        client = _v4(~n)
        server = _v4(n >> 64)
        return _special_v4(client) or _special_v4(server)
    name = _lookup(ip, _V6)
    if name is None and ip not in _GLOBAL_UNICAST and not any(ip in net for net, _ in _V6):
        return "reserved"
    return name


# --------------------------------------------------------------------------- names

#: wildcard DNS services that answer with the IP address written in the name
_WILDCARD_DNS = ("nip.io", "sslip.io", "xip.io", "nip.direct", "traefik.me", "backname.io")
_DASHED_V4 = re.compile(r"(?:^|[-.])(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$")
_HEX_V4 = re.compile(r"(?:^|[-.])([0-9a-f]{8})$")


def _wildcard_suffix(host: str) -> str | None:
    for suffix in _WILDCARD_DNS:
        if host.endswith("." + suffix):
            return suffix
    return None


def embedded_wildcard_ip(host: str) -> IPAddress | None:
    """The address a wildcard-DNS name (``10.0.0.1.nip.io``, ``app-7f000001.nip.io``,
    ``--1.sslip.io``) resolves to, read from the name itself; None for other names."""
    h = normalize_hostname(host)
    suffix = _wildcard_suffix(h)
    if suffix is None:
        return None
    rest = h[: -len(suffix) - 1]
    labels = rest.split(".")
    if len(labels) >= 4:
        ip = _parse_ipv4(".".join(labels[-4:]))
        if ip is not None and all(_DEC.fullmatch(x) for x in labels[-4:]):
            return ip
    last = labels[-1]
    m = _DASHED_V4.search(last)
    if m:
        ip = _parse_ipv4(".".join(m.groups()))
        if ip is not None:
            return ip
    m = _HEX_V4.search(last)
    if m:
        return ipaddress.IPv4Address(int(m.group(1), 16))
    if "--" in last or last.count("-") >= 2:  # sslip.io IPv6: dashes for colons
        for start in range(len(last)):
            if start == 0 or last[start - 1] == "-":
                try:
                    return ipaddress.IPv6Address(last[start:].replace("-", ":"))
                except ValueError:
                    continue
    return None


def is_metadata_host(host: str) -> bool:
    """Whether `host` names a cloud metadata service: a known metadata host name (in any case,
    with or without a trailing dot), a metadata address in any IP notation (including
    IPv4-mapped IPv6 and NAT64), or a wildcard-DNS name carrying one (``169.254.169.254.nip.io``)."""
    if not isinstance(host, str) or not host.strip():
        return False
    h = normalize_hostname(host)
    if h in METADATA_HOSTNAMES:
        return True
    ip = parse_ip_literal(host)
    if ip is None:
        ip = embedded_wildcard_ip(h)
    return ip is not None and special_purpose(ip) == "metadata"


# --------------------------------------------------------------------------- allow_private

_PORTED = re.compile(r"^(?P<host>.+?):(?P<port>[0-9]{1,5})$")


@lru_cache(maxsize=1024)
def _split_entry(entry: str) -> tuple[str, int | None]:
    """``"[::1]:8080"`` → ("::1", 8080); ``"10.0.0.0/8"`` → ("10.0.0.0/8", None); ``"h:5432"`` → ("h", 5432)."""
    e = entry.strip()
    if e.startswith("["):
        inner, _, rest = e[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return inner, int(rest[1:])
        return inner, None
    if e.count(":") == 1:
        m = _PORTED.match(e)
        if m:
            return m.group("host"), int(m.group("port"))
    return e, None


@lru_cache(maxsize=1024)
def _entry_network(spec: str) -> IPNetwork | None:
    if "/" in spec:
        try:
            return ipaddress.ip_network(spec, strict=False)
        except ValueError:
            return None
    ip = parse_ip_literal(spec)
    return ipaddress.ip_network(ip) if ip is not None else None


def allowed_private(ip: IPAddress | str | None, port: int | None, host: str | None,
                    allow_private: list[str]) -> bool:
    """Whether an ``egress.allow_private`` entry exempts this destination from SSRF blocking.

    Entries: a CIDR or an address (``10.0.0.0/8``, ``127.0.0.1``, ``fd00::/8``) exempts it on
    every port; ``ip:port``, ``[v6]:port`` and ``CIDR:port`` only on that port; ``host:port`` or
    ``host`` exempts a host name (``*.corp.example`` also matches the apex). An entry with a port
    never matches when `port` is None. A host-name entry never exempts a metadata address: only
    an IP/CIDR entry that covers it does (a trusted name that resolves to a metadata endpoint is
    still blocked). Addresses are compared in every notation, IPv4-mapped IPv6 as its IPv4.
    """
    if isinstance(ip, str):
        ip = parse_ip_literal(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.packed)
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    metadata = ip is not None and special_purpose(ip) == "metadata"
    name = normalize_hostname(host) if host else None
    for entry in allow_private:
        spec, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        net = _entry_network(spec)
        if net is not None:
            if ip is not None and ip.version == net.version and ip in net:
                return True
            continue
        if name and not metadata and _name_matches(name, normalize_hostname(spec)):
            return True
    return False


def _name_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        base = pattern[2:]
        return name == base or name.endswith("." + base)
    return name == pattern


# --------------------------------------------------------------------------- registrable domain


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The registrable domain ("eTLD+1") of `host`, public-suffix aware (PSL including its
    private section, so ``a.github.io`` and ``b.github.io`` are different): lower-case IDNA
    A-labels, no trailing dot. An IP literal is returned as its canonical address (``2130706433``
    → ``127.0.0.1``, ``[::1]`` → ``::1``); a public suffix or single label is returned whole.
    """
    ip = parse_ip_literal(host)
    if ip is not None:
        return str(ip)
    h = normalize_hostname(host)
    if not h:
        return h
    return _psl().privatesuffix(h) or h
