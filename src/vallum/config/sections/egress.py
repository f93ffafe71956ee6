"""`proxy:` and `egress:` — the egress proxy (owned by the egress layer)."""

from __future__ import annotations

from pydantic import Field

from vallum.config.sections.base import Section


class ProxyConfig(Section):
    listen: str = "127.0.0.1:8888"
    #: processes serving the port together (SO_REUSEPORT; `vallum proxy` only); 0 = one per CPU.
    #: Each has its own in-memory rate limiter.
    workers: int = Field(1, ge=0, le=64)
    #: most client connections held at once; more are answered 503 and closed
    max_connections: int = Field(10_000, ge=1)
    #: seconds a client may take to send a complete request head (slowloris defence)
    header_timeout: float = Field(10.0, gt=0)
    #: seconds of silence allowed while a client sends a request body
    body_timeout: float = Field(30.0, gt=0)
    #: seconds an idle keep-alive client connection is kept open
    idle_timeout: float = Field(75.0, gt=0)
    #: largest request head (request line + headers) in bytes; larger gets 431
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    #: most header fields in one request; more gets 431
    max_headers: int = Field(128, ge=8)
    #: seconds a CONNECT tunnel that is spliced (not intercepted) may stay silent both ways
    tunnel_idle_timeout: float = Field(300.0, gt=0)


class TlsInterceptionConfig(Section):
    """`egress.tls`: optional TLS interception of CONNECT tunnels (needs `vallum tls init`)."""

    #: decrypt CONNECT tunnels with a leaf certificate minted by the local CA
    intercept: bool = False
    #: folder holding ca.pem / ca.key; empty = <data_dir>/tls
    ca_dir: str = ""
    #: domains never decrypted, spliced as is ("*.example.com" also matches the apex)
    passthrough: list[str] = Field(default_factory=list)
    #: extra PEM bundle trusted when verifying upstream servers (added to the system store)
    upstream_ca_file: str = ""
    #: leaf certificates kept in memory
    leaf_cache_size: int = Field(1024, ge=1)


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
    #: largest request body inspected; a larger one is blocked (fail closed)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: largest scannable (text, HTML, JSON) response inspected; a larger one is blocked
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: scan HTML / text / JSON / SSE responses for prompt injection
    scan_responses: bool = True
    #: SSE: characters of earlier events kept to catch an injection split across events
    sse_window_chars: int = Field(512, ge=0, le=65536)
    #: seconds for one DNS resolution
    dns_timeout: float = Field(5.0, gt=0)
    #: seconds to open a connection upstream
    connect_timeout: float = Field(10.0, gt=0)
    #: seconds of upstream silence before the request fails (504, blocked)
    upstream_timeout: float = Field(60.0, gt=0)
    #: idle upstream keep-alive connections kept per destination
    upstream_pool_size: int = Field(32, ge=0)
    #: redirects the fetch endpoint follows (each hop re-checked)
    max_redirects: int = Field(5, ge=0, le=30)
    #: largest body the fetch endpoint reads
    fetch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    #: seconds between checks of the config file's modification time; 0 = SIGHUP only
    reload_poll_seconds: float = Field(2.0, ge=0)
    tls: TlsInterceptionConfig = Field(default_factory=TlsInterceptionConfig)
