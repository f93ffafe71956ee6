"""Identity on the data path: from a request's client address and headers to a `Principal`.

Pure over its inputs (config, address, headers); the only state is a small cache of verified
credentials so that a slow password hash runs once per distinct credential, not per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Callable

from vallum.config.sections.identity import CredentialConfig, IdentityConfig, ListenerConfig
from vallum.decisions import Principal

PrincipalResolver = Callable[[str, list[tuple[bytes, bytes]]], Principal]
PRINCIPAL_HEADER = b"x-vallum-principal"
#: `source` of a principal whose credentials were presented but are wrong, or missing when required
AUTH_FAILED = "proxy_auth_failed"
AUTH_MISSING = "proxy_auth_missing"


def hash_secret(secret: str, *, method: str = "scrypt") -> str:
    """A storable hash of a password or token (`identity.credentials[].secret_hash`)."""
    if method == "sha256":
        return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt:{salt.hex()}:{digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether `secret` matches a `hash_secret` value (constant-time comparison)."""
    if stored.startswith("sha256:"):
        return hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), stored[7:])
    if stored.startswith("scrypt:"):
        try:
            _, salt_hex, digest_hex = stored.split(":")
            digest = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), n=2**14, r=8, p=1, dklen=32)
        except ValueError:
            return False
        return hmac.compare_digest(digest.hex(), digest_hex)
    return False


def parse_principal_header(value: str) -> Principal | None:
    """`X-Vallum-Principal`: `user=alice; agent=agent:x; session=s1` or a bare user id."""
    value = value.strip()
    if not value:
        return None
    if "=" not in value:
        return Principal(user=value[:200], source="header")
    fields: dict[str, str] = {}
    for part in value.split(";"):
        k, sep, v = part.partition("=")
        k, v = k.strip().lower(), v.strip()
        if sep and k in ("user", "agent", "session", "api_key") and v:
            fields[k] = v[:200]
    if not fields:
        return None
    return Principal(**fields, source="header")


class IdentityResolver:
    """Builds the egress proxy's principal resolver from `identity:` (one per listener)."""

    def __init__(self, config: IdentityConfig) -> None:
        self.config = config
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in config.trusted_header_cidrs]
        self._basic: dict[str, CredentialConfig] = {c.name: c for c in config.credentials}
        #: sha256 of a presented credential → the credential it matched (None: it matched none)
        self._verified: dict[str, CredentialConfig | None] = {}

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.trusted)

    def _credential(self, header: str) -> CredentialConfig | None:
        key = hashlib.sha256(header.encode()).hexdigest()
        if key in self._verified:
            return self._verified[key]
        scheme, _, rest = header.strip().partition(" ")
        found: CredentialConfig | None = None
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name, password = "", ""
            cred = self._basic.get(name)
            if cred is not None and check_secret(password, cred.secret_hash):
                found = cred
        elif scheme.lower() == "bearer":
            token = rest.strip()
            found = next((c for c in self.config.credentials if check_secret(token, c.secret_hash)), None)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = found
        return found

    def resolver(self, listener: ListenerConfig | None = None) -> PrincipalResolver:
        """The resolver for one listener: the listener's agent, else credentials, else the header."""

        def resolve(client_ip: str, headers: list[tuple[bytes, bytes]]) -> Principal:
            if listener is not None:
                return Principal(user=listener.user or None, agent=listener.agent or None, ip=client_ip,
                                 source="listener")
            auth = None
            claimed = None
            for k, v in headers:
                lk = k.lower()
                if lk == b"proxy-authorization":
                    auth = v.decode("latin-1")
                elif lk == PRINCIPAL_HEADER:
                    claimed = v.decode("latin-1")
            if auth is not None:
                cred = self._credential(auth)
                if cred is None:
                    return Principal(ip=client_ip, source=AUTH_FAILED)
                return Principal(user=cred.user or cred.name, agent=cred.agent or None, ip=client_ip,
                                 source="proxy_auth")
            if claimed is not None and self._trusted(client_ip):
                p = parse_principal_header(claimed)
                if p is not None:
                    return Principal(user=p.user, agent=p.agent, session=p.session, api_key=p.api_key,
                                     ip=client_ip, source="header")
            if self.config.require_auth:
                return Principal(ip=client_ip, source=AUTH_MISSING)
            return Principal(ip=client_ip, source="listener")

        return resolve


def principal_user(p: Principal) -> str:
    """The behaviour `user` an inline principal is scored as (events need a user)."""
    if p.user:
        return p.user
    if p.agent:
        return p.agent
    if p.api_key:
        return f"key:{p.api_key}"
    if p.session:
        return f"session:{p.session}"
    return f"ip:{p.ip or 'unknown'}"


def session_key(p: Principal) -> str:
    """The key of the per-session threat score: the session if known, else the principal."""
    return f"s:{p.session}" if p.session else f"u:{principal_user(p)}"
