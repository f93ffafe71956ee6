"""`Flow`: one request crossing the proxy, from the client's bytes to the decision record.

Every stage (URL policy, content scan, rate limit, resolution, upstream exchange, response scan)
reads and annotates the same object, as mitmproxy's flows do; the decision records are built from it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vallum.decisions import DecisionRecord, Principal
from vallum.decisions.record import new_request_id
from vallum.detection.model import Action, Finding, strongest

DEFAULT_PORTS = {"http": 80, "https": 443}
SECRET_CATEGORIES = frozenset({"credential", "pii", "entropy"})


class TargetError(ValueError):
    """A request target the proxy cannot use (bad URL, unsupported scheme)."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # lower-case; IPv6 without brackets
    port: int
    #: origin-form target sent upstream: path and query
    path: str

    @property
    def authority(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if DEFAULT_PORTS.get(self.scheme) == self.port else f"{h}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_absolute_url(url: str) -> Target:
    """Split an absolute http(s) URL into a `Target`; raises TargetError."""
    if len(url) <= _CACHED_URL_CHARS:
        return _parse_cached(url)
    return _parse_absolute_url(url)


#: agents repeat the same few URLs; the parse of a short one is remembered (a `Target` is immutable)
_CACHED_URL_CHARS = 512


@functools.lru_cache(maxsize=2048)
def _parse_cached(url: str) -> Target:
    return _parse_absolute_url(url)


def _parse_absolute_url(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise TargetError(f"unsupported scheme {scheme!r}" if scheme else "not an absolute URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetError("URL has no host")
    if any(c in host for c in " \t\r\n/\\@"):
        raise TargetError("invalid host in URL")
    if not host.isascii():
        try:
            host.encode("idna")
        except UnicodeError:
            raise TargetError("host name is not valid IDNA") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if port == 0:
        raise TargetError("port 0 is not valid")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], path)


def parse_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) → (host, port); raises TargetError."""
    a = authority.strip()
    if not a or any(c in a for c in " \t\r\n/\\@?#"):
        raise TargetError("invalid authority")
    if a.startswith("["):
        end = a.find("]")
        if end < 0:
            raise TargetError("invalid IPv6 authority")
        host, rest = a[1:end], a[end + 1:]
        if rest and not rest.startswith(":"):
            raise TargetError("invalid authority")
        port_s = rest[1:] if rest else ""
    else:
        host, sep, port_s = a.rpartition(":")
        if not sep:
            host, port_s = a, ""
    if not port_s:
        if default_port is None:
            raise TargetError("authority needs a port")
        return host.lower().rstrip("."), default_port
    if not (port_s.isascii() and port_s.isdigit()) or not 0 < int(port_s) < 65536:
        raise TargetError("invalid port")
    if not host:
        raise TargetError("authority has no host")
    return host.lower().rstrip("."), int(port_s)


@dataclass(slots=True)
class Flow:
    """One request through the proxy and what was decided about it."""

    transport: str  # egress.http | egress.connect | egress.fetch
    principal: Principal
    client: str
    method: str = ""
    target: Target | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    findings: list[Finding] = field(default_factory=list)
    #: the address the SSRF check approved and the connection used
    pinned_ip: str | None = None
    intercepted: bool = False
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.target.url if self.target else ""

    def destination_for(self, findings: list[Finding]) -> str | None:
        """Where the request went, for the record: never the query, and only the registrable
        domain when a secret was found in the URL itself (a host label or path may carry it)."""
        t = self.target
        if t is None:
            return None
        if any(f.category in SECRET_CATEGORIES and f.location.split(".")[0] in ("url", "connect", "fetch")
               for f in findings):
            from vallum.egress.policy import registrable_domain

            return f"{t.scheme}://{registrable_domain(t.host)}/[redacted]"
        if self.transport == "egress.connect" and not self.intercepted:
            return f"{t.host}:{t.port}"
        return f"{t.scheme}://{t.authority}{t.path.split('?', 1)[0]}"

    def action(self, findings: list[Finding] | None = None) -> Action:
        return strongest([f.action for f in (self.findings if findings is None else findings)])

    def record(self, action: Action | str, *, direction: str = "request", findings: list[Finding] | None = None,
               reason: str | None = None, now: float | None = None) -> DecisionRecord:
        """The decision record for this flow at one stage."""
        extra: dict[str, Any] = {"method": self.method} if self.method else {}
        if self.pinned_ip:
            extra["ip"] = self.pinned_ip
        if self.status is not None:
            extra["status"] = self.status
        if self.intercepted:
            extra["intercepted"] = True
        extra.update(self.extra)
        return DecisionRecord(
            ts=self.started if now is None else now,
            transport=self.transport,
            action=str(action),
            request_id=self.id,
            direction=direction,
            destination=self.destination_for(self.findings if findings is None else findings),
            principal=self.principal,
            findings=list(self.findings if findings is None else findings),
            reason=reason,
            duration_ms=(time.perf_counter() - self.t0) * 1000.0,
            extra=extra,
        )
