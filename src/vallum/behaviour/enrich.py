"""Enrichment of identifiers: IP → country / network / ASN flags, user agent → device and client family.

Offline only: the country comes from `iptocc` (data inside the wheel); ASN, datacenter and VPN
flags come from user-supplied MMDB files read with `maxminddb` (GeoLite2-ASN, an anonymous-IP or a
hosting database) when configured. Lookups are cached; the functions are deterministic.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: programmatic clients that ua-parser does not know, by the product token at the start of the UA
_SDK_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^(?:OpenAI/Python|openai-python)[ /]v?(\d+)", re.I), "openai-python", "sdk"),
    (re.compile(r"^(?:OpenAI/JS|openai-node|openai-js)[ /]v?(\d+)", re.I), "openai-node", "sdk"),
    (re.compile(r"^anthropic-(?:python|sdk-python)[ /]v?(\d+)", re.I), "anthropic-python", "sdk"),
    (re.compile(r"^anthropic-(?:typescript|node)[ /]v?(\d+)", re.I), "anthropic-node", "sdk"),
    (re.compile(r"^(?:langchain|langchain-[a-z]+)[ /]v?(\d+)", re.I), "langchain", "sdk"),
    (re.compile(r"^llama-?index[ /]v?(\d+)", re.I), "llamaindex", "sdk"),
    (re.compile(r"^vallum-(?:python|client)[ /]v?(\d+)", re.I), "vallum-python", "sdk"),
    (re.compile(r"^python-httpx[ /]v?(\d+)", re.I), "python-httpx", "library"),
    (re.compile(r"^python-requests[ /]v?(\d+)", re.I), "python-requests", "library"),
    (re.compile(r"^aiohttp[ /]v?(\d+)", re.I), "aiohttp", "library"),
    (re.compile(r"^Python-urllib[ /]v?(\d+)", re.I), "python-urllib", "library"),
    (re.compile(r"^(?:node-fetch|undici|axios)[ /]v?(\d+)", re.I), "node-http", "library"),
    (re.compile(r"^Go-http-client[ /]v?(\d+)", re.I), "go-http", "library"),
    (re.compile(r"^(?:okhttp)[ /]v?(\d+)", re.I), "okhttp", "library"),
    (re.compile(r"^curl[ /]v?(\d+)", re.I), "curl", "cli"),
    (re.compile(r"^Wget[ /]v?(\d+)", re.I), "wget", "cli"),
    (re.compile(r"^PostmanRuntime[ /]v?(\d+)", re.I), "postman", "cli"),
    (re.compile(r"^insomnia[ /]v?(\d+)", re.I), "insomnia", "cli"),
)
_BOT = re.compile(r"bot|crawler|spider|headless|phantomjs|selenium|puppeteer|playwright", re.I)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a user agent (plus language) says about the client."""

    #: a stable id for the device fingerprint (full user agent + language)
    id: str
    #: browser / SDK family, e.g. "Chrome", "openai-python", "curl"
    client: str
    #: browser | mobile | sdk | library | cli | bot | unknown
    kind: str
    os: str
    major: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "client": self.client, "kind": self.kind, "os": self.os, "major": self.major}


@lru_cache(maxsize=50_000)
def classify_user_agent(user_agent: str, language: str = "") -> DeviceInfo:
    """Parse a user agent; SDKs and HTTP libraries that ua-parser misses are classified here."""
    ua = user_agent.strip()
    lang = (language or "").split(",")[0].strip().lower()[:16]
    client, kind, os_name, major = "unknown", "unknown", "", ""
    for pattern, family, fkind in _SDK_PATTERNS:
        m = pattern.search(ua)
        if m:
            client, kind, major = family, fkind, m.group(1)
            break
    else:
        if ua:
            from ua_parser import parse

            res = parse(ua)
            if res.os is not None:
                os_name = res.os.family
            if res.user_agent is not None:
                client = res.user_agent.family
                major = res.user_agent.major or ""
            if _BOT.search(ua) or (res.device is not None and res.device.family == "Spider"):
                kind = "bot"
            elif res.user_agent is not None:
                if client in ("Python Requests", "curl", "Wget", "Go-http-client", "okhttp", "Apache-HttpClient"):
                    kind = "library"
                elif os_name in ("iOS", "Android"):
                    kind = "mobile"
                else:
                    kind = "browser"
    # a weak fingerprint: the full user agent and language (apps that know a real device id send
    # attrs.device_id, which the engine prefers)
    basis = f"{ua}|{lang}"
    did = "d_" + hashlib.sha256(basis.encode()).hexdigest()[:16]
    return DeviceInfo(id=did, client=client, kind=kind, os=os_name, major=major)


@dataclass(frozen=True, slots=True)
class IpInfo:
    ip: str
    #: ISO 3166-1 alpha-2 or "" (private, reserved or unknown)
    country: str
    #: the /24 (IPv4) or /48 (IPv6) network, the unit for "per subnet" features
    net: str
    asn: int
    asn_org: str
    datacenter: bool
    vpn: bool
    private: bool

    def to_dict(self) -> dict[str, Any]:
        return {"country": self.country, "net": self.net, "asn": self.asn, "asn_org": self.asn_org,
                "datacenter": self.datacenter, "vpn": self.vpn, "private": self.private}


class IpEnricher:
    """IP lookups: country from iptocc, ASN/flags from optional MMDB files. Cached."""

    def __init__(self, mmdb_paths: list[str] | tuple[str, ...] = (), datacenter_asns: list[int] | tuple[int, ...] = ()
                 ) -> None:
        import maxminddb

        self._readers = [maxminddb.open_database(p) for p in mmdb_paths if p]
        self._dc_asns = frozenset(int(a) for a in datacenter_asns)
        self.lookup = lru_cache(maxsize=200_000)(self._lookup)

    def _mmdb(self, ip: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for r in self._readers:
            try:
                rec = r.get(ip)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                merged.update(rec)
        return merged

    def _lookup(self, ip: str) -> IpInfo:
        import iptocc

        addr = ipaddress.ip_address(ip)
        private = not addr.is_global
        if addr.version == 4:
            net = str(ipaddress.ip_network(f"{ip}/24", strict=False))
        else:
            net = str(ipaddress.ip_network(f"{ip}/48", strict=False))
        country = "" if private else (iptocc.country_code(ip) or "")
        rec = self._mmdb(ip) if self._readers and not private else {}
        asn = int(rec.get("autonomous_system_number") or 0)
        org = str(rec.get("autonomous_system_organization") or "")
        # field names of GeoIP2 Anonymous-IP / Enterprise and of common hosting-flag databases
        raw_traits = rec.get("traits")
        traits: dict[str, Any] = raw_traits if isinstance(raw_traits, dict) else {}
        dc = bool(rec.get("is_hosting_provider") or rec.get("hosting") or rec.get("is_datacenter")
                  or traits.get("is_hosting_provider") or asn in self._dc_asns)
        vpn = bool(rec.get("is_anonymous_vpn") or rec.get("is_anonymous") or rec.get("vpn")
                   or rec.get("is_tor_exit_node") or rec.get("is_public_proxy")
                   or traits.get("is_anonymous_vpn") or traits.get("is_anonymous"))
        if not country:
            c = rec.get("country")
            if isinstance(c, dict):
                country = str(c.get("iso_code") or "")
        return IpInfo(ip=ip, country=country, net=net, asn=asn, asn_org=org, datacenter=dc, vpn=vpn,
                      private=private)

    def close(self) -> None:
        for r in self._readers:
            r.close()


def email_domain(value: Any) -> str | None:
    """The lowercased domain of an e-mail address, or None."""
    if not isinstance(value, str) or "@" not in value:
        return None
    dom = value.rsplit("@", 1)[1].strip().lower().rstrip(".")
    return dom or None
