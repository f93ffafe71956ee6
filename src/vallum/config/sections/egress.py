"""`proxy:` and `egress:` — the egress proxy (owned by the egress layer)."""

from __future__ import annotations

from pydantic import Field

from vallum.config.sections.base import Section


class ProxyConfig(Section):
    listen: str = "127.0.0.1:8888"


class EgressConfig(Section):
    #: CIDRs or host:port exempt from SSRF protection, e.g. ["127.0.0.1:9000"]
    allow_private: list[str] = Field(default_factory=list)
    #: domains reachable in strict mode ("*.example.com" also matches the apex)
    allowlist: list[str] = Field(default_factory=list)
    #: domains always blocked (added to the built-in list)
    blocklist: list[str] = Field(default_factory=list)
    #: per registrable domain; 0 = off
    rate_limit_per_minute: int = Field(60, ge=0)
    #: bytes sent per registrable domain per minute; 0 = off
    data_budget_per_minute: int = Field(0, ge=0)
