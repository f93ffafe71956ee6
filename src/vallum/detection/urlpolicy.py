"""The URL policy (kind ``url``): scheme, CRLF, traversal, confusion tricks, SSRF on IP literals and
internal names, allow/block lists, credentials and entropy in every part of a URL. Pure: no DNS.

`check_url` is what the egress proxy and the ``http_request`` kind call on each request URL;
`check_resolved_address` is the proxy's resolve-once-and-pin step; `scan_url_input` is the kind
``url`` handler (registered in ``pipeline.KIND_PLUGINS``). See docs/url-policy.md for the rules.

Parsing is deliberately stricter than browsers: whatever two common parsers (WHATWG and RFC 3986 /
urllib) would read differently is blocked as confusion instead of being guessed at.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import threading
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import idna
from confusable_homoglyphs import categories

from vallum.detection.model import Action, Finding, Mode, dedupe, redact
from vallum.detection.netaddr import (
    IPAddress,
    allowed_private,
    embedded_wildcard_ip,
    ends_in_number,
    is_metadata_host,
    normalize_hostname,
    parse_ip_literal,
    registrable_domain,
    special_purpose,
)

__all__ = [
    "ALLOWED_SCHEMES",
    "INTERNAL_SUFFIXES",
    "SplitURL",
    "URLSyntaxError",
    "check_resolved_address",
    "check_url",
    "domain_matches",
    "exfil_patterns",
    "internal_hostname_reason",
    "scan_url_input",
    "split_url",
]

ALLOWED_SCHEMES = frozenset({"http", "https", "ws", "wss"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: longest URL inspected; longer ones are blocked (browsers cap around 2 MB, servers at 8-16 KB)
MAX_URL_LENGTH = 65536

#: names (and their subdomains) that never leave the local machine or network
LOCALHOST_NAMES = ("localhost", "localhost6", "ip6-localhost", "ip6-loopback", "loopback",
                   "localhost.localdomain", "broadcasthost")
#: special-use and private-use suffixes (RFC 6761, RFC 8375, ICANN .internal) and common
#: undelegated intranet TLDs; a name under them resolves, if at all, inside the network
INTERNAL_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa", "intranet",
                     "corp", "lan", "home", "private", "svc", "test", "invalid")
#: public names that always resolve to 127.0.0.1 (with every subdomain)
LOOPBACK_DOMAINS = ("localtest.me", "lvh.me", "vcap.me", "fuf.me", "localho.st",
                    "lacolhost.com", "localhost.direct", "127-0-0-1.org.uk")
#: DNS-rebinding services: a name that alternates between a public and a private answer
REBINDING_DOMAINS = ("rbndr.us", "1u.ms", "rebind.it", "rebind.network", "lock.cmpxchg8b.com",
                     "nip.rebind.network")

#: query parameters whose values are random by design and not secrets: tracking ids, OAuth state,
#: pagination cursors, cache busters, content hashes and the signatures of pre-signed URLs
#: (S3, CloudFront, GCS). They skip the entropy check only; credential rules still apply.
BENIGN_RANDOM_PARAMS = frozenset({
    "gclid", "fbclid", "msclkid", "dclid", "yclid", "gbraid", "wbraid", "_ga", "_gl", "mc_cid",
    "mc_eid", "igshid", "si", "ref", "ref_src", "state", "nonce", "code_challenge",
    "code_challenge_method", "cursor", "page_token", "pagetoken", "next_page_token",
    "nextpagetoken", "continuation", "after", "before", "starting_after", "ending_before",
    "etag", "v", "_", "cb", "cachebuster", "hash", "sha", "sha1", "sha256", "checksum",
    "integrity", "commit", "rev", "revision", "id", "uuid", "guid", "request_id", "trace_id",
    "traceparent", "correlation_id", "session_state", "x-amz-signature", "x-amz-date",
    "x-amz-algorithm", "x-amz-signedheaders", "x-amz-expires", "x-amz-content-sha256",
    "x-goog-signature", "x-goog-date", "x-goog-algorithm", "x-goog-signedheaders",
    "x-goog-expires", "signature", "expires", "key-pair-id", "policy",
})
_BENIGN_PREFIXES = ("utm_",)
#: query parameters that carry a credential by name: a real-looking value is a leak
SECRET_PARAMS = frozenset({
    "access_token", "accesstoken", "api_key", "apikey", "api-key", "x-api-key", "auth_token",
    "authtoken", "token", "secret", "client_secret", "password", "passwd", "pwd",
    "private_token", "private_key", "refresh_token", "id_token", "session_token", "sessionid",
    "bearer",
})
_PLACEHOLDER = re.compile(
    r"^(?:x+|\*+|\.+|-+|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%[a-z_]+%|null|none|undefined|true|false|"
    r"changeme|redacted|\[redacted\]|your[_-]?\w*|example\w*|test|dummy|placeholder)$",
    re.IGNORECASE,
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_ASCII = re.compile(r"^[A-Za-z0-9_\-.]+$")
_TCHAR = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z\-]+$")
_HEADER_LINE = re.compile(r"\n[ \t]*[A-Za-z0-9\-]{1,64}[ \t]*:")
_PCT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")
_LINE_SEPARATORS = frozenset("\u0085\u2028\u2029")
#: Cyrillic and Greek lower-case letters drawn like Latin ones (whole-script homographs: "аррӏе")
_LATIN_LOOKALIKES = frozenset("асеорхуіјѕԁһӏԛԝьοναι")
#: script sets that legitimately mix in one label (Japanese, Chinese, Korean with Latin)
_MIXED_OK = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "BOPOMOFO"}),
             frozenset({"LATIN", "HAN", "HANGUL"}))


# --------------------------------------------------------------------------- splitting


class URLSyntaxError(ValueError):
    """A URL that cannot be read unambiguously; `rule` is the URL-policy rule that reports it."""

    def __init__(self, rule: str, message: str, evidence: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class SplitURL:
    """The parts of an absolute URL, as written (nothing decoded)."""

    scheme: str  # lower-case
    rest: str  # everything after "scheme:"
    userinfo: str | None = None
    host: str = ""  # as written, IPv6 brackets kept
    port: int | None = None  # explicit port, None when absent
    path: str = ""
    query: str | None = None
    fragment: str | None = None

    @property
    def effective_port(self) -> int | None:
        """The explicit port, else the scheme's default."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)


def split_url(url: str, *, connect: bool = False) -> SplitURL:
    """Split an absolute URL into its parts, refusing anything parsers read differently.

    For http(s)/ws(s) the scheme must be followed by exactly ``//``; the authority must not hold a
    backslash; one ``@`` at most; a numeric port; ``[...]`` only around an IPv6 address. With
    `connect`, a bare ``host:port`` (a CONNECT target) is read as ``https://host:port/``.
    Other schemes are returned with only `scheme` and `rest` set. Raises `URLSyntaxError`.
    """
    m = _SCHEME.match(url)
    if connect and (m is None or url[m.end():].isdigit()):
        url = "https://" + url
        m = _SCHEME.match(url)
    if m is None:
        raise URLSyntaxError("url.invalid", "not an absolute URL (no scheme)", _short(url))
    scheme = m.group(1).lower()
    rest = url[m.end():]
    if scheme not in ALLOWED_SCHEMES:
        return SplitURL(scheme=scheme, rest=rest)
    lead = re.match(r"^[/\\]*", rest)
    slashes = lead.group(0) if lead else ""
    if slashes != "//":
        # WHATWG accepts any mix of / and \ here (even none); RFC 3986 parsers do not
        raise URLSyntaxError("url.malformed_authority",
                             f"{scheme}: must be followed by exactly '//' (found {slashes!r})",
                             f"{scheme}:{slashes}")
    after = rest[2:]
    end = len(after)
    for i, ch in enumerate(after):
        if ch in "/?#":
            end = i
            break
    authority, remainder = after[:end], after[end:]
    if "\\" in authority:
        # WHATWG ends the host at "\", RFC 3986 parsers do not: http://evil.com\@good.com
        raise URLSyntaxError("url.userinfo_confusion",
                             "backslash in the authority: browsers and servers disagree on the host",
                             _short(authority.split("@")[-1]))
    userinfo: str | None = None
    hostport = authority
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise URLSyntaxError("url.invalid", "unterminated IPv6 literal", _short(hostport))
        host, port_part = hostport[: close + 1], hostport[close + 1:]
        if port_part and not port_part.startswith(":"):
            raise URLSyntaxError("url.invalid", "text after an IPv6 literal", _short(hostport))
        port_text = port_part[1:] if port_part else None
    else:
        if hostport.count(":") > 1:
            raise URLSyntaxError("url.invalid", "several ':' in the host (unbracketed IPv6?)", _short(hostport))
        host, sep, port_text_s = hostport.partition(":")
        port_text = port_text_s if sep else None
    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535 or int(port_text) == 0:
            raise URLSyntaxError("url.invalid", f"invalid port {port_text[:12]!r}", _short(port_text))
        port = int(port_text)
    if not host:
        raise URLSyntaxError("url.invalid", "no host", _short(url))
    path, query, fragment = remainder, None, None
    if "#" in path:
        path, _, fragment = path.partition("#")
    if "?" in path:
        path, _, query = path.partition("?")
    return SplitURL(scheme=scheme, rest=rest, userinfo=userinfo, host=host, port=port, path=path,
                    query=query, fragment=fragment)


def _short(text: str, n: int = 60) -> str:
    """An excerpt for evidence and messages: short text whole, longer text cut to a prefix of at
    most a quarter of it (a host, path or user name may itself be a secret)."""
    limit = min(n, 24)
    if len(text) <= limit:
        return text
    return text[: max(8, min(limit - 4, len(text) // 4))] + "…"


# --------------------------------------------------------------------------- decoding


def _lenient_utf8(data: bytes) -> str:
    """UTF-8 that also reads overlong forms (``c0 ae`` → ".") the way lax servers do; other
    invalid bytes become the Latin-1 character of the same value."""
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            out.append(chr(b))
            i += 1
            continue
        length = 2 if 0xC0 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF8 else 0
        cont = data[i + 1: i + length] if length else b""
        if length and len(cont) == length - 1 and all(0x80 <= c < 0xC0 for c in cont):
            value = b & (0x7F >> length)
            for c in cont:
                value = (value << 6) | (c & 0x3F)
            if value <= 0x10FFFF:
                out.append(chr(value))
                i += length
                continue
        out.append(chr(b))
        i += 1
    return "".join(out)


def _decode_levels(text: str, plus: bool = False, rounds: int = 4) -> list[str]:
    """`text` and each successive percent-decoding of it (``%25`` double encoding, ``%uXXXX``,
    overlong UTF-8), until it stops changing."""
    levels = [text]
    cur = text
    for i in range(rounds):
        if "%" not in cur and not (plus and i == 0 and "+" in cur):
            break
        step = cur.replace("+", " ") if plus and i == 0 else cur
        step = _PCT_U.sub(lambda m: chr(int(m.group(1), 16)), step)
        nxt = _lenient_utf8(unquote_to_bytes(step))
        if nxt == cur:
            break
        levels.append(nxt)
        cur = nxt
    return levels


def _traversal(levels: list[str]) -> tuple[int, str] | None:
    """(decoding depth, segment) of the first ``..`` segment in any decoding level."""
    for depth, text in enumerate(levels):
        t = unicodedata.normalize("NFKC", text) if not text.isascii() else text
        for seg in re.split(r"[/\\]", t):
            if seg == ".." or seg.startswith("..;"):
                return depth, seg
    return None


_QUERY_TRAVERSAL = re.compile(r"(?:^|[/\\])\.\.(?:[/\\;]|$)")


# --------------------------------------------------------------------------- lists


@lru_cache(maxsize=1)
def exfil_patterns() -> tuple[str, ...]:
    """The built-in blocklist of paste, file-drop, request-capture, tunnel and OAST services
    (``vallum/detection/data/exfil_domains.txt``)."""
    text = resources.files("vallum.detection").joinpath("data/exfil_domains.txt").read_text("utf-8")
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line.lower())
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _PatternSet:
    """A list of host patterns compiled for lookups by label suffix."""

    everything: bool
    names: frozenset[str]  # the name and its subdomains
    exact: frozenset[str]  # "=name"
    any_suffix: frozenset[str]  # "name.*"
    ips: frozenset[IPAddress]
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@lru_cache(maxsize=128)
def _compile_patterns(patterns: tuple[str, ...]) -> _PatternSet:
    everything = False
    names: set[str] = set()
    exact: set[str] = set()
    any_suffix: set[str] = set()
    ips: set[IPAddress] = set()
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in patterns:
        p = raw.strip()
        if not p:
            continue
        if p == "*":
            everything = True
        elif "/" in p:
            try:
                nets.append(ipaddress.ip_network(p, strict=False))
            except ValueError:
                continue  # not a network: matches nothing (config validation reports it)
        elif (ip := parse_ip_literal(p)) is not None:
            ips.add(ip)
        elif p.startswith("="):
            exact.add(normalize_hostname(p[1:]))
        else:
            name = normalize_hostname(p[2:] if p.startswith("*.") else p)
            if name.endswith(".*"):
                any_suffix.add(name[:-2])
            elif name:
                names.add(name)
    return _PatternSet(everything, frozenset(names), frozenset(exact), frozenset(any_suffix),
                       frozenset(ips), tuple(nets))


def domain_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` matches one of `patterns` (allow/block lists).

    - ``example.com`` matches the domain and every subdomain (``api.example.com``), never
      ``notexample.com``; ``*.example.com`` matches the same (subdomains *and* the apex);
    - ``=api.example.com`` matches that exact host only;
    - ``name.*`` matches ``name`` under any public suffix (``oast.pro``, ``x.oast.live``);
    - ``10.0.0.0/8``, ``192.0.2.7`` or ``2001:db8::/32`` match IP-literal hosts (in any notation);
    - ``*`` matches everything.
    Comparison is case-insensitive, on IDNA A-labels, ignoring a trailing dot.
    """
    ps = _compile_patterns(tuple(patterns))
    if ps.everything:
        return True
    ip = parse_ip_literal(host)
    if ip is not None:
        return ip in ps.ips or any(ip.version == net.version and ip in net for net in ps.nets)
    h = normalize_hostname(host)
    if not h:
        return False
    if h in ps.exact:
        return True
    if ps.names:
        labels = h.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in ps.names:
                return True
    if ps.any_suffix:
        reg = registrable_domain(h)
        return "." in reg and reg.split(".", 1)[0] in ps.any_suffix
    return False


def internal_hostname_reason(host: str) -> str | None:
    """Why a host name stays inside the machine or network (``"localhost"``, ``"internal suffix
    .corp"``, ``"single-label name"``, ``"resolves to loopback (lvh.me)"``), or None."""
    h = normalize_hostname(host)
    if not h or parse_ip_literal(h) is not None:
        return None
    if h in LOCALHOST_NAMES or h.endswith(".localhost"):
        return "localhost"
    for suffix in INTERNAL_SUFFIXES:
        if h == suffix or h.endswith("." + suffix):
            return f"internal suffix .{suffix}"
    if "." not in h:
        return "single-label name (resolved through the local search domains)"
    for d in LOOPBACK_DOMAINS:
        if h == d or h.endswith("." + d):
            return f"resolves to loopback ({d})"
    return None


def _is_localhost(host: str) -> bool:
    h = normalize_hostname(host)
    return h in LOCALHOST_NAMES or h.endswith(".localhost")


# --------------------------------------------------------------------------- policy


class _Collector:
    def __init__(self, inspector: Any, location: str) -> None:
        self.inspector = inspector
        self.loc = location
        self.findings: list[Finding] = []

    def add(self, rule: str, category: str, severity: str, message: str, *, part: str = "",
            action: Action = Action.BLOCK, strict_action: Action | None = None, evidence: str = "",
            decoded: tuple[str, ...] = (), extra: dict[str, Any] | None = None) -> None:
        location = f"{self.loc}.{part}" if part else self.loc
        f = self.inspector.finding(rule, category, severity, message, action=action,
                                   strict_action=strict_action, location=location, decoded=decoded,
                                   evidence=evidence, extra=extra)
        if f is not None:
            self.findings.append(f)


# --------------------------------------------------------------------------- caches
#
# `check_url` is a pure function of (inspector configuration, URL, method, location): no DNS, no
# clock, no state. An agent calls the same few hosts (and often the same URLs) over and over, so
# the verdicts are memoised per inspector in two bounded LRU maps:
#   - whole URLs (up to _CACHEABLE_URL_LEN characters): the complete finding list;
#   - hosts: the host checks (syntax, IDNA, homographs, SSRF, allow/block/exfil lists), keyed by
#     (host as written, effective port, location), shared by every URL on that host.
# A cache belongs to one Inspector (weakly referenced) and is dropped when that inspector's config
# or mode object is replaced, so a reload (a new inspector or config) never sees stale verdicts.

_URL_CACHE_SIZE = 4096
_HOST_CACHE_SIZE = 4096
#: longer URLs are checked every time (and never held in memory by the cache)
_CACHEABLE_URL_LEN = 2048


class _PolicyCache:
    __slots__ = ("config", "hosts", "lock", "mode", "urls")

    def __init__(self, inspector: Any) -> None:
        self.config = inspector.config
        self.mode = inspector.mode
        self.urls: OrderedDict[tuple[str, str, str], tuple[Finding, ...]] = OrderedDict()
        self.hosts: OrderedDict[tuple[str, int | None, str], tuple[Any, tuple[Finding, ...], Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, table: OrderedDict, key: Any) -> Any:
        with self.lock:
            value = table.get(key)
            if value is not None:
                table.move_to_end(key)
            return value

    def put(self, table: OrderedDict, key: Any, value: Any, size: int) -> None:
        with self.lock:
            table[key] = value
            table.move_to_end(key)
            while len(table) > size:
                table.popitem(last=False)


_caches: weakref.WeakKeyDictionary[Any, _PolicyCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_for(inspector: Any) -> _PolicyCache | None:
    """The verdict cache of `inspector`, or None when it cannot have one (not weak-referenceable)."""
    try:
        cache = _caches.get(inspector)
        if cache is None or cache.config is not inspector.config or cache.mode is not inspector.mode:
            cache = _PolicyCache(inspector)
            with _caches_lock:
                _caches[inspector] = cache
        return cache
    except TypeError:
        return None


def clear_caches() -> None:
    """Forget every memoised URL and host verdict (tests; after changing module-level lists)."""
    with _caches_lock:
        _caches.clear()


def check_url(inspector: Any, url: str, method: str = "GET", location: str = "url") -> list[Finding]:
    """Every URL-policy finding for one request URL (no DNS lookup).

    Findings are built with ``inspector.finding`` so the mode table and per-rule overrides apply.
    Locations: ``url``, ``url.scheme``, ``url.userinfo``, ``url.host``, ``url.path``,
    ``url.query.<name>``, ``url.fragment`` (with `location` in place of ``url``).
    Verdicts are memoised per inspector (see the caches above); the result is a fresh list.
    """
    cache = _cache_for(inspector) if isinstance(url, str) and isinstance(method, str) \
        and isinstance(location, str) and len(url) <= _CACHEABLE_URL_LEN else None
    if cache is None:
        return _check_url(inspector, url, method, location, None)
    key = (url, method, location)
    hit = cache.get(cache.urls, key)
    if hit is not None:
        return list(hit)
    findings = _check_url(inspector, url, method, location, cache)
    cache.put(cache.urls, key, tuple(findings), _URL_CACHE_SIZE)
    return findings


def _host_checks(c: _Collector, parts: SplitURL, fields: list[tuple[str, str, tuple[str, ...]]],
                 cache: _PolicyCache | None) -> None:
    """Host syntax, SSRF and list checks, memoised per (host, effective port, location)."""
    port = parts.effective_port
    key = (parts.host, port, c.loc)
    hit = cache.get(cache.hosts, key) if cache is not None else None
    if hit is not None:
        _info, host_findings, host_fields = hit
        c.findings.extend(host_findings)
        fields.extend(host_fields)
        return
    hc = _Collector(c.inspector, c.loc)
    hfields: list[tuple[str, str, tuple[str, ...]]] = []
    host_info = _check_host(hc, parts, hfields)
    if host_info is not None:
        name, ip = host_info
        _check_ssrf(hc, name, ip, port)
        _check_lists(hc, name, ip)
    c.findings.extend(hc.findings)
    fields.extend(hfields)
    if cache is not None:
        cache.put(cache.hosts, key, (host_info, tuple(hc.findings), tuple(hfields)), _HOST_CACHE_SIZE)


def _check_url(inspector: Any, url: str, method: str, location: str, cache: _PolicyCache | None) -> list[Finding]:
    c = _Collector(inspector, location)
    if not isinstance(url, str):
        c.add("url.invalid", "url", "medium", f"URL is not a string ({type(url).__name__})")
        return c.findings
    if len(url) > MAX_URL_LENGTH:
        c.add("url.too_long", "url", "medium", f"URL of {len(url)} characters exceeds {MAX_URL_LENGTH}")
        c.findings.extend(_dlp(inspector, url[:MAX_URL_LENGTH], location))
        return dedupe(c.findings)
    # leading and trailing whitespace is dropped, as every URL parser does (WHATWG strips it, and
    # a URL read from a file or form ends in a newline); inside the URL it is an attack
    clean = _check_characters(c, url.strip(" \t\r\n"))
    _check_method(c, method)
    connect = isinstance(method, str) and method.upper() == "CONNECT"
    try:
        parts = split_url(clean, connect=connect)
    except URLSyntaxError as exc:
        c.add(exc.rule, "url", "high" if exc.rule != "url.invalid" else "medium", str(exc),
              evidence=exc.evidence)
        c.findings.extend(_dlp(inspector, clean, location))
        return dedupe(c.findings)
    if parts.scheme not in ALLOWED_SCHEMES:
        c.add("url.scheme", "url", "high", f"scheme {parts.scheme!r} is not allowed (only http, https, ws, wss)",
              part="scheme", evidence=f"{parts.scheme}:")
        c.findings.extend(_dlp(inspector, parts.rest, location))
        return dedupe(c.findings)

    fields: list[tuple[str, str, tuple[str, ...]]] = []  # (location part, text, decode chain)
    if parts.userinfo is not None:
        _check_userinfo(c, parts.userinfo, fields)
    _host_checks(c, parts, fields, cache)
    _check_path(c, parts.path, fields)
    # path segments (not the whole path) go to the entropy check like query values do
    entropy_inputs = [(p, t, ch) for p, t, ch in fields if p == "path" and "/" not in t]
    query_values: list[str] = []
    secret_params: list[tuple[str, str, str, tuple[str, ...]]] = []
    if parts.query:
        _check_query(c, parts.query, fields, entropy_inputs, query_values, secret_params)
    if parts.fragment:
        frag = _decode_levels(parts.fragment)[-1]
        frag_chain: tuple[str, ...] = ("percent",) if frag != parts.fragment else ()
        fields.append(("fragment", frag, frag_chain))
        entropy_inputs.extend(_param_entropy_inputs(parts.fragment, "fragment"))

    # One pass over every text first (parts, joins, the whole URL): most URLs hold no secret, and
    # then the per-part passes that attribute a finding to its location are skipped.
    texts = [t for _, t, _ in fields] + [clean, "".join(query_values)]
    texts += [run for part, t, _ in fields if part == "host" for run in _label_runs(t)]
    if any(f.category in ("credential", "pii") for f in _dlp(inspector, "\n".join(texts), location)):
        c.findings.extend(_scan_fields(inspector, location, fields))
        # rules whose pattern spans several parts (a Slack/Discord webhook URL: host + path)
        c.findings.extend(_joined(inspector, location, clean, c.findings, "whole_url", exact=True))
        if len(query_values) > 1:
            c.findings.extend(_joined(inspector, f"{location}.query", "".join(query_values), c.findings,
                                      "joined_params"))
    c.findings.extend(_split_path_findings(inspector, f"{location}.path", fields, c.findings))
    for part, name, value, chain in secret_params:
        loc = f"{location}.{part}"
        if not any(f.location == loc and f.category == "credential" for f in c.findings):
            # the value is not a known credential format, but the parameter says it is one
            c.add("url.secret_param", "credential", "high", f"credential in query parameter {name!r}",
                  part=part, evidence=redact(value), decoded=chain)
    min_len = inspector.config.detection.entropy.min_length
    for part, text, chain in entropy_inputs:
        if len(text) < min_len:
            continue  # shorter than any token the entropy detector reports
        loc = f"{location}.{part}"
        already = [f for f in c.findings if f.location == loc]
        c.findings.extend(inspector.entropy_findings(text, loc, chain, already))
    return dedupe(c.findings)


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_characters(c: _Collector, url: str) -> str:
    """Raw control characters: report them, and return the URL without them (and trimmed)."""
    if url.isascii() and _ASCII_CONTROL.search(url) is None:
        return url.strip(" ")  # fast path: printable ASCII holds none of the characters below
    bad: list[str] = []
    crlf = nul = other = False
    for ch in url:
        o = ord(ch)
        if ch in "\r\n":
            crlf = True
        elif o == 0:
            nul = True
        elif o < 0x20 or 0x7F <= o <= 0x9F or ch in _BIDI or ch in _LINE_SEPARATORS:
            other = True
        elif o > 0xFF and (o & 0xFF) in (0x0A, 0x0D):
            # clients that truncate to Latin-1 turn "\u010d\u010a" into CRLF (request splitting)
            crlf = True
        else:
            continue
        bad.append(ch)
    if crlf:
        c.add("url.crlf", "url", "high", "CR/LF in the URL (header injection / request splitting)",
              evidence=_codepoints(bad))
    if nul:
        c.add("url.nul_byte", "url", "high", "NUL byte in the URL", evidence="U+0000")
    if other:
        c.add("url.control_characters", "url", "high", "control or bidirectional characters in the URL",
              evidence=_codepoints(bad))
    if not bad:
        return url.strip(" ")
    return "".join(ch for ch in url if ch not in bad).strip(" ")


def _codepoints(chars: list[str]) -> str:
    uniq = list(dict.fromkeys(chars))[:4]
    return " ".join(f"U+{ord(ch):04X}" for ch in uniq)


def _check_method(c: _Collector, method: str) -> None:
    if not isinstance(method, str) or not _TCHAR.match(method):
        text = method if isinstance(method, str) else repr(method)
        rule = "url.crlf" if isinstance(method, str) and ("\r" in method or "\n" in method) else "url.invalid"
        c.add(rule, "url", "high", "invalid HTTP method", evidence=_short(repr(text), 30))


def _check_userinfo(c: _Collector, userinfo: str, fields: list[tuple[str, str, tuple[str, ...]]]) -> None:
    user_raw, sep, password_raw = userinfo.partition(":")
    user = unquote(user_raw)
    password = unquote(password_raw)
    chain = ("percent",) if "%" in userinfo else ()
    if "@" in userinfo or "@" in user:
        c.add("url.userinfo_confusion", "url", "high",
              "several '@' in the authority: the host is not what it seems", part="userinfo",
              evidence=_short(user_raw.split("@")[0]) + "@…")
    elif _looks_like_host(user):
        c.add("url.userinfo_confusion", "url", "high",
              f"the user name looks like a host ({_short(user)}@…): the real host is after the '@'",
              part="userinfo", evidence=_short(user) + "@")
    if sep and password:
        c.add("url.credentials_in_userinfo", "credential", "critical", "password in the URL's userinfo",
              part="userinfo", evidence=redact(password), decoded=chain)
    if user:
        fields.append(("userinfo", user, chain))
    if password:
        fields.append(("userinfo", password, chain))


def _looks_like_host(text: str) -> bool:
    # what a reader takes for the host: the user name up to a path-like character
    t = re.split(r"[/?#\\]", text.strip(), maxsplit=1)[0].rstrip(".")
    if not t:
        return False
    if parse_ip_literal(t) is not None and ("." in t or ":" in t):
        return True
    h = normalize_hostname(t)
    if "." not in h or not _HOST_ASCII.match(h):
        return False
    labels = h.split(".")
    return all(labels) and labels[-1].isalpha() and len(labels[-1]) >= 2


def _check_host(c: _Collector, parts: SplitURL,
                fields: list[tuple[str, str, tuple[str, ...]]]) -> tuple[str, IPAddress | None] | None:
    """Validate and normalise the host; returns (normalised name, IP or None) or None if invalid."""
    raw = parts.host
    if raw.startswith("["):
        ip = parse_ip_literal(raw)
        if not isinstance(ip, ipaddress.IPv6Address):
            c.add("url.invalid", "url", "medium", "invalid IPv6 literal", part="host", evidence=_short(raw))
            return None
        return str(ip), ip
    host = raw
    chain: tuple[str, ...] = ()
    if "%" in host:
        levels = _decode_levels(host)
        host = levels[-1]
        chain = ("percent",) * (len(levels) - 1)
        c.add("url.encoded_host", "url", "medium", "percent-encoded host name (evasion)", part="host",
              action=Action.WARN, evidence=_short(raw, 40))
        if any(ch in host for ch in "\r\n"):
            c.add("url.crlf", "url", "high", "encoded CR/LF in the host", part="host", evidence="%0d/%0a")
        if "\x00" in host:
            c.add("url.nul_byte", "url", "high", "encoded NUL in the host", part="host", evidence="%00")
    fields.append(("host", host, chain))
    if host.isascii():
        ascii_host = host
    else:
        try:
            mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
            ascii_host = ".".join(
                lab if lab.isascii() else idna.alabel(lab).decode("ascii") for lab in mapped.split(".")
            )
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            c.add("url.invalid", "url", "medium", f"host is not a valid internationalised name ({exc})",
                  part="host", evidence=_short(raw, 40))
            return None
    name = ascii_host.lower()
    stripped = name[:-1] if name.endswith(".") else name
    if not _HOST_ASCII.match(name) or not stripped or "" in stripped.split(".") or len(stripped) > 253 \
            or any(len(lab) > 63 for lab in stripped.split(".")):
        c.add("url.invalid", "url", "medium", "invalid host name", part="host", evidence=_short(raw, 40))
        return None
    if ends_in_number(stripped):
        ip = parse_ip_literal(stripped)
        if ip is None:
            c.add("url.invalid", "url", "medium", "host ends in a number but is not a valid IPv4 address",
                  part="host", evidence=_short(raw, 40))
            return None
        if stripped != str(ip):
            c.add("url.ip_notation", "url", "low",
                  f"IP address in an unusual notation ({_short(stripped, 30)} = {ip})", part="host",
                  action=Action.WARN, evidence=_short(stripped, 30), extra={"ip": str(ip)})
        return str(ip), ip
    _check_idn(c, stripped)
    return stripped, None


def _check_idn(c: _Collector, name: str) -> None:
    if "xn--" not in name:
        return
    try:
        labels = [idna.decode(lab) if lab.startswith("xn--") else lab for lab in name.split(".")]
    except (idna.IDNAError, UnicodeError, ValueError):
        c.add("url.invalid", "url", "medium", "invalid punycode label in the host", part="host",
              evidence=_short(name, 40))
        return
    reg = registrable_domain(name)
    n_reg = reg.count(".") + 1
    tld = labels[-1]
    # the labels of the registrable domain that are not the public suffix itself
    suffix_len = max(n_reg - 1, 1)
    own = labels[-n_reg: len(labels) - suffix_len] if n_reg > 1 else labels[-1:]
    for lab in own:
        scripts = set(categories.unique_aliases(lab)) - {"COMMON", "INHERITED"}
        mixed = len(scripts) > 1 and not any(scripts <= ok for ok in _MIXED_OK)
        letters = [ch for ch in lab if ch.isalpha()]
        whole = (tld.isascii() and scripts and "LATIN" not in scripts and letters
                 and all(ch in _LATIN_LOOKALIKES for ch in letters))
        if mixed or whole:
            kind = "mixed-script" if mixed else "whole-script look-alike"
            c.add("url.homograph", "url", "medium",
                  f"{kind} domain {'.'.join(labels[-n_reg:])!r} ({', '.join(sorted(scripts))})",
                  part="host", action=Action.WARN, evidence=_short(reg, 60))
            return


def _check_ssrf(c: _Collector, name: str, ip: IPAddress | None, port: int | None) -> None:
    allow = list(c.inspector.config.egress.allow_private)
    if ip is not None:
        block = special_purpose(ip)
        if block is not None and not allowed_private(ip, port, name, allow):
            _ssrf_finding(c, block, ip, name)
        return
    if is_metadata_host(name):
        if not allowed_private(None, port, name, allow):
            c.add("ssrf.metadata", "ssrf", "critical", f"cloud metadata service {name!r}", part="host",
                  evidence=_short(name, 60))
        return
    reason = internal_hostname_reason(name)
    if reason is not None:
        exempt = allowed_private(None, port, name, allow) or (
            _is_localhost(name) and any(allowed_private(a, port, None, allow) for a in ("127.0.0.1", "::1"))
        )
        if not exempt:
            c.add("ssrf.internal_hostname", "ssrf", "high", f"internal host name ({reason})", part="host",
                  evidence=_short(name, 60))
        return
    embedded = embedded_wildcard_ip(name)
    if embedded is not None:
        block = special_purpose(embedded)
        if block is not None and not allowed_private(embedded, port, name, allow):
            _ssrf_finding(c, block, embedded, name, via="wildcard DNS name")
        return
    for d in REBINDING_DOMAINS:
        if name == d or name.endswith("." + d):
            c.add("ssrf.dns_rebinding", "ssrf", "high", f"DNS-rebinding service ({d})", part="host",
                  evidence=d)
            return


def _ssrf_finding(c: _Collector, block: str, ip: IPAddress, host: str, via: str = "") -> None:
    how = f" via {via} {_short(host, 40)!r}" if via else ""
    if block == "metadata":
        c.add("ssrf.metadata", "ssrf", "critical", f"cloud metadata address {ip}{how}", part="host",
              evidence=str(ip), extra={"ip": str(ip), "block": block})
    else:
        c.add("ssrf.special_purpose_address", "ssrf", "high", f"{block} address {ip}{how}", part="host",
              evidence=str(ip), extra={"ip": str(ip), "block": block})


def _check_lists(c: _Collector, name: str, ip: IPAddress | None) -> None:
    egress = c.inspector.config.egress
    host = str(ip) if ip is not None else name
    allowlisted = bool(egress.allowlist) and domain_matches(host, egress.allowlist)
    if egress.blocklist and domain_matches(host, egress.blocklist):
        c.add("url.blocklisted", "url", "high", "destination is on egress.blocklist", part="host",
              evidence=_list_evidence(host, ip))
    elif not allowlisted and ip is None and domain_matches(host, exfil_patterns()):
        c.add("url.exfil_service", "url", "high",
              "paste / file-drop / request-capture / tunnel / out-of-band service", part="host",
              evidence=_matched_name(host, exfil_patterns()))
    mode = c.inspector.mode
    if not allowlisted and (mode is Mode.STRICT or (mode is Mode.AUDIT and egress.allowlist)):
        c.add("url.not_allowlisted", "url", "medium", "destination is not on egress.allowlist", part="host",
              evidence=_list_evidence(host, ip))


def _matched_name(host: str, patterns: tuple[str, ...]) -> str:
    """The listed domain a host matched (``oast.fun`` for ``c2VjcmV0.abc.oast.fun``): evidence
    that leaves out the subdomain labels, which may carry the exfiltrated data."""
    ps = _compile_patterns(patterns)
    labels = host.split(".")
    for i in range(len(labels) - 1, -1, -1):
        suffix = ".".join(labels[i:])
        if suffix in ps.names:
            return suffix
    return _short(registrable_domain(host), 60)


def _list_evidence(host: str, ip: IPAddress | None) -> str:
    # the registrable domain, not the whole host: subdomain labels may carry data
    return str(ip) if ip is not None else _short(registrable_domain(host), 60)


def _check_path(c: _Collector, path: str, fields: list[tuple[str, str, tuple[str, ...]]]) -> None:
    if not path:
        return
    levels = _decode_levels(path)
    hit = _traversal(levels)
    if hit is not None:
        depth, seg = hit
        c.add("url.path_traversal", "url", "high", "path traversal ('..' segment"
              + (f" after {depth} decoding{'s' if depth > 1 else ''})" if depth else ")"),
              part="path", evidence=_short(_raw_evidence(path, seg, depth), 40), decoded=("percent",) * depth)
    elif "\\" in path:
        c.add("url.backslash", "url", "low", "backslash in the path (read as '/' by browsers, not by servers)",
              part="path", action=Action.WARN, evidence="\\")
    for depth, text in enumerate(levels[1:], start=1):
        if "\r" in text or "\n" in text:
            c.add("url.crlf", "url", "high", "encoded CR/LF in the path (header injection)", part="path",
                  evidence="%0d/%0a", decoded=("percent",) * depth)
            break
    for depth, text in enumerate(levels[1:], start=1):
        if "\x00" in text:
            c.add("url.nul_byte", "url", "high", "encoded NUL byte in the path", part="path", evidence="%00",
                  decoded=("percent",) * depth)
            break
    decoded = levels[-1]
    chain = ("percent",) * (len(levels) - 1)
    for seg in decoded.split("/"):
        if seg:
            fields.append(("path", seg, chain))
    if decoded.count("/") > 1:
        fields.append(("path", decoded, chain))


def _raw_evidence(path: str, seg: str, depth: int) -> str:
    if depth == 0:
        return seg
    m = re.search(r"(?:%25)*%(?:2e|c0|c1|e0|u002e)[^/\\]*", path, re.IGNORECASE)
    return m.group(0) if m else seg


def _param_name(raw: str) -> str:
    name = unquote(raw.replace("+", " "))
    name = "".join(ch if ch.isprintable() else "?" for ch in name)
    return name[:64] or "_"


def _check_query(c: _Collector, query: str, fields: list[tuple[str, str, tuple[str, ...]]],
                 entropy_inputs: list[tuple[str, str, tuple[str, ...]]], values: list[str],
                 secret_params: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, has_value, raw_value = pair.partition("=")
        if not has_value:
            raw_name, raw_value = "", raw_name
        name = _param_name(raw_name) if raw_name else ""
        part = f"query.{name}" if name else "query"
        levels = _decode_levels(raw_value, plus=True)
        value = levels[-1]
        chain = ("percent",) * (len(levels) - 1)
        _check_query_value(c, part, levels)
        lname = name.lower()
        if value:
            fields.append((part, f"{name}={value}" if name else value, chain))
            values.append(value)
            if lname in SECRET_PARAMS and len(value) >= 8 and not _PLACEHOLDER.match(value.strip()):
                secret_params.append((part, name, value, chain))
            if lname not in BENIGN_RANDOM_PARAMS and not lname.startswith(_BENIGN_PREFIXES):
                entropy_inputs.append((part, value, chain))


def _check_query_value(c: _Collector, part: str, levels: list[str]) -> None:
    for depth, text in enumerate(levels[1:], start=1):
        if "\r" in text or ("\n" in text and (depth > 1 or _HEADER_LINE.search(text))):
            # a lone single-encoded LF is multi-line text; CR, a double-encoded LF or an LF
            # starting a "Name:" line is header injection
            c.add("url.crlf", "url", "high", "encoded CR/LF in a query value (header injection)", part=part,
                  evidence="%0d/%0a", decoded=("percent",) * depth)
            break
    for depth, text in enumerate(levels[1:], start=1):
        if "\x00" in text:
            c.add("url.nul_byte", "url", "high", "encoded NUL byte in a query value", part=part,
                  evidence="%00", decoded=("percent",) * depth)
            break
    for depth, text in enumerate(levels):
        if _QUERY_TRAVERSAL.search(text):
            c.add("url.traversal_in_query", "url", "medium", "path traversal sequence in a query value",
                  part=part, action=Action.WARN, evidence="../", decoded=("percent",) * depth)
            break


def _param_entropy_inputs(raw: str, part: str) -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for pair in raw.split("&"):
        name, has_value, value = pair.partition("=")
        if not has_value:
            name, value = "", name
        lname = _param_name(name).lower() if name else ""
        if lname in BENIGN_RANDOM_PARAMS or lname.startswith(_BENIGN_PREFIXES):
            continue
        levels = _decode_levels(value, plus=True)
        if levels[-1]:
            out.append((part, levels[-1], ("percent",) * (len(levels) - 1)))
    return out


# --------------------------------------------------------------------------- credentials


def _dlp(inspector: Any, text: str, location: str) -> list[Finding]:
    return [f for f in inspector.inspect_text(text, direction="outbound", location=location)
            if f.category != "entropy"]


def _scan_fields(inspector: Any, location: str, fields: list[tuple[str, str, tuple[str, ...]]]) -> list[Finding]:
    out: list[Finding] = []
    for part, text, chain in fields:
        loc = f"{location}.{part}"
        for f in _dlp(inspector, text, loc):
            out.append(dataclasses.replace(f, decoded=chain + f.decoded) if chain else f)
        if part == "host":
            out.extend(_split_label_findings(inspector, loc, text, out))
    return out


#: subdomain labels considered for split secrets (DNS exfiltration puts data in the leftmost ones)
_MAX_SPLIT_LABELS = 8


def _label_runs(host: str) -> list[str]:
    """Every run of two or more consecutive subdomain labels joined, and all labels joined; only
    runs long enough to hold a secret (16+ characters)."""
    labels = [lab for lab in host.rstrip(".").split(".") if lab]
    if len(labels) < 3:
        return []
    n_reg = registrable_domain(host).count(".") + 1
    sub = labels[: max(len(labels) - n_reg, 0)][:_MAX_SPLIT_LABELS]
    runs = ["".join(labels)]
    for i in range(len(sub)):
        for j in range(i + 2, len(sub) + 1):
            runs.append("".join(sub[i:j]))
    return [r for r in dict.fromkeys(runs) if len(r) >= 16]


#: path segments considered for split secrets, and the longest run of adjacent ones joined
_MAX_SPLIT_SEGMENTS = 16
_MAX_SEGMENT_RUN = 3


def _segment_runs(segments: list[str]) -> list[str]:
    """Path segments joined, to find a secret split across them: every run of 2 to
    _MAX_SEGMENT_RUN adjacent segments, every run reaching the first or the last segment, and all of
    them; only runs long enough to hold a secret (16+ characters). At most _MAX_SPLIT_SEGMENTS
    segments (the last ones when the path is longer: a secret appended by an agent sits at the end)."""
    segs = [s for s in segments if s][-_MAX_SPLIT_SEGMENTS:]
    n = len(segs)
    if n < 2:
        return []
    runs = ["".join(segs)]
    for i in range(n):
        for j in range(i + 2, n + 1):
            if j - i <= _MAX_SEGMENT_RUN or i == 0 or j == n:
                runs.append("".join(segs[i:j]))
    return [r for r in dict.fromkeys(runs) if len(r) >= 16]


def _split_path_findings(inspector: Any, loc: str, fields: list[tuple[str, str, tuple[str, ...]]],
                         already: list[Finding]) -> list[Finding]:
    """A credential split across path segments (`/ghp_R8x2kLm9Qw/ErTy7uIoP3aSdFgHjK1zXcVbN4`).

    The runs of `_segment_runs` go through the credential pattern rules only: no PII (the digits
    of adjacent date or id segments must not add up to a card number), no decoders and no entropy
    pass (single segments already had those), which keeps an ordinary URL's cost to one
    pattern-matcher pass over the runs."""
    runs = _segment_runs([t for part, t, _ in fields if part == "path" and "/" not in t])
    if not runs:
        return []
    from vallum.detection.pipeline import runs_in  # the pipeline imports this module

    chain = next((ch for part, _, ch in fields if part == "path"), ())
    seen = {f.rule for f in already if f.location == loc and f.category == "credential"}
    out: list[Finding] = []
    for m in inspector.raw.finditer("\n".join(runs)):
        if m.rule.category != "credential" or m.rule.id in seen or not runs_in(m.rule, "outbound"):
            continue
        f = inspector._rule_finding(m, loc, (*chain, "path_segments"))
        if f is not None:
            out.append(f)
            seen.add(f.rule)
    return out


def _split_label_findings(inspector: Any, loc: str, host: str, already: list[Finding]) -> list[Finding]:
    """A secret split across DNS labels (a label after the secret would otherwise glue onto its
    end, so every run of labels is tried)."""
    out: list[Finding] = []
    for joined in _label_runs(host):
        out.extend(_joined(inspector, loc, joined, already + out, "dns_labels"))
    return out


def _joined(inspector: Any, loc: str, text: str, already: list[Finding], step: str,
            exact: bool = False) -> list[Finding]:
    """Credential findings in `text` (parts joined) that no single part produced."""
    seen = {f.rule for f in already if f.location.startswith(loc)}
    if exact:
        # the whole URL: anything a part already reported, under any rule, is not repeated
        seen |= {f.rule for f in already if f.category in ("credential", "pii")}
        if any(f.category == "credential" for f in already):
            seen.add("dlp.url_password")
    out = []
    for f in _dlp(inspector, text, loc):
        if f.rule not in seen and f.category in ("credential", "pii"):
            out.append(dataclasses.replace(f, decoded=(step, *f.decoded)) if not exact else f)
            seen.add(f.rule)
    return out


# --------------------------------------------------------------------------- other entry points


def check_resolved_address(inspector: Any, host: str, ip: str | IPAddress, port: int | None) -> Finding | None:
    """The SSRF verdict on one address a host name resolved to (the egress proxy's pin step).

    Blocks (category ``ssrf``) a special-purpose or metadata address unless ``egress.allow_private``
    exempts it; an unparseable address is blocked too (fail closed). None = dial it.
    """
    c = _Collector(inspector, "url")
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr: IPAddress | None = ip
    else:
        addr = parse_ip_literal(ip) if isinstance(ip, str) else None
    if addr is None:
        c.add("ssrf.invalid_address", "ssrf", "high", f"resolver returned an invalid address for {host!r}",
              part="host", evidence=_short(str(ip), 40))
        return c.findings[0] if c.findings else None
    block = special_purpose(addr)
    if block is None:
        return None
    if allowed_private(addr, port, host, list(inspector.config.egress.allow_private)):
        return None
    _ssrf_finding(c, block, addr, host, via="resolved name")
    return c.findings[0] if c.findings else None


def scan_url_input(inspector: Any, content: Any) -> list[Finding]:
    """Kind ``url``: a URL string, or ``{"url": "…", "method": "GET"}``."""
    from vallum.detection.pipeline import ScanInputError

    if isinstance(content, str):
        return check_url(inspector, content)
    if isinstance(content, dict):
        unknown = sorted(set(content) - {"url", "method"})
        if unknown:
            raise ScanInputError(f"kind url: unknown key(s) {', '.join(map(repr, unknown))}; "
                                 "expected 'url' and optionally 'method' (use kind http_request for headers/body)")
        url = content.get("url")
        if not isinstance(url, str):
            raise ScanInputError("kind url: 'url' must be a string")
        method = content.get("method", "GET")
        if not isinstance(method, str):
            raise ScanInputError("kind url: 'method' must be a string")
        return check_url(inspector, url, method=method)
    raise ScanInputError(f"kind url needs a string or {{\"url\": …, \"method\": …}}, not {type(content).__name__}")
