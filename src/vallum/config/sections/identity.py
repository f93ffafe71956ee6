"""`identity:` — who is behind data-path traffic (docs/identity.md).

Methods, strongest first: per-agent listener ports, `Proxy-Authorization` credentials (stored
hashed), an `X-Vallum-Principal` header accepted only from trusted CIDRs (a sidecar), and for MCP
the client's session. Owned by the runtime layer.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from vallum.config.sections.base import Section


def _check_hash(value: str) -> str:
    if value and not (value.startswith("sha256:") or value.startswith("scrypt:")):
        raise ValueError("a secret hash is sha256:<hex> or scrypt:<salt hex>:<hex> "
                         "(make one with `vallum identity hash`)")
    return value


class CredentialConfig(Section):
    """One `Proxy-Authorization` credential: Basic `name:password` or `Bearer <token>`."""

    #: the user name of Basic credentials (and the principal's user unless `user` is given)
    name: str
    #: hash of the password (Basic) or the token (Bearer); never the secret itself
    secret_hash: str
    user: str = ""
    agent: str = ""

    _hash = field_validator("secret_hash")(_check_hash)


class ListenerConfig(Section):
    """An extra egress listener whose every client is one agent (a port per agent)."""

    listen: str
    user: str = ""
    agent: str = ""

    @model_validator(mode="after")
    def _someone(self) -> ListenerConfig:
        if not (self.user or self.agent):
            raise ValueError(f"listener {self.listen}: give user and/or agent")
        return self


class IdentityConfig(Section):
    #: Proxy-Authorization credentials, one per agent or user
    credentials: list[CredentialConfig] = Field(default_factory=list)
    #: refuse egress traffic without valid credentials (407); a per-agent listener counts as identified
    require_auth: bool = False
    #: CIDRs whose X-Vallum-Principal header is believed (a sidecar on loopback); empty = never
    trusted_header_cidrs: list[str] = Field(default_factory=list)
    #: extra egress listeners, one per agent
    listeners: list[ListenerConfig] = Field(default_factory=list)

    @field_validator("trusted_header_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise ValueError(f"not a CIDR: {c!r}") from None
        return v
