"""`EgressProxy`: the asyncio edge of the egress proxy (HTTP/1.1 framing in `http1`, on llhttp).

One listener serves absolute-form HTTP requests (forward proxy), `CONNECT` tunnels (spliced, or
intercepted with the local CA) and `GET /fetch?url=…`. The order of checks for a request is fixed:
URL policy and content (URL, headers, body) → rate limit / data budget → DNS resolution and the
check of every resolved address → decision record → upstream. A name is therefore never resolved
for a request that failed a content check, and the address that passed is the one dialled.

The configuration in force is one immutable `ProxyState`; each request takes the state current
when it starts, so a reload never changes the rules under an in-flight request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

from vallum.config import Config, ConfigError, load_config
from vallum.decisions import DecisionRecord, DecisionSink, NullSink, Principal
from vallum.detection.model import Action, Finding, strongest
from vallum.detection.pipeline import Inspector, dedupe, get_inspector
from vallum.egress import http1, policy
from vallum.egress.flow import Flow, Target, TargetError, parse_absolute_url, parse_authority
from vallum.egress.limits import InMemoryRateLimiter, RateLimiter
from vallum.egress.reload import weakenings
from vallum.egress.sni import ClientHelloError, parse_client_hello
from vallum.egress.sse import SSEError, SSEScanner, SSESplitter
from vallum.egress.streams import READ_SIZE, ByteStream, PlainStream, TLSStream
from vallum.egress.tlsca import CAError, CertificateAuthority
from vallum.egress.upstream import (
    Connector,
    Resolver,
    UpstreamConn,
    UpstreamError,
    UpstreamKey,
    UpstreamPool,
    default_connector,
    default_resolver,
    iter_body,
    read_body,
    send_request,
)
from vallum.runtime.enforcement import ORDER as _POSTURE_ORDER

log = logging.getLogger("vallum.egress")

#: (client ip, request headers) → who is behind the request. A later issue reads
#: Proxy-Authorization / X-Vallum-Principal here; the default names the listener's client.
PrincipalResolver = Callable[[str, list[tuple[bytes, bytes]]], Principal]
#: principal → None, or its risk posture (action, reason, status) from the behaviour layer:
#: "block" denies the request; "review"/"challenge" turn warnings into blocks (vallum.runtime).
PrincipalGate = Callable[[Principal], "tuple[str, str, int] | None"]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"proxy-authenticate",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect", b"x-vallum-principal",
})
#: headers addressed to the proxy itself (identity), consumed here and never forwarded: not scanned as
#: outgoing data (a client's own proxy credentials are not a leak)
CONSUMED = frozenset({b"proxy-authorization", b"x-vallum-principal"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
FETCH_UA = b"vallum-fetch/0.1"


#: postures under which a warning is enforced as a block ("block" is refused at the request; it can
#: only be seen here when it arrives while a response is already being relayed)
_TIGHTENING = ("review", "challenge", "block")


def default_principal(client_ip: str, headers: list[tuple[bytes, bytes]]) -> Principal:
    """The principal of a request when nothing identifies it better: the client address."""
    return Principal(ip=client_ip, source="listener")


def _malformed(exc: http1.ProtocolError) -> str:
    return f"malformed request: {exc}" if exc.status == 400 else str(exc)


class _ClientGone(Exception):
    """The client closed, timed out or broke the protocol; the connection ends."""


@dataclass(frozen=True, slots=True)
class Tunnel:
    """An intercepted CONNECT tunnel: the requests inside go to this host, at this pinned address."""

    host: str
    port: int
    ip: str
    connect_id: str
    #: who opened the tunnel: requests inside it carry no Proxy-Authorization of their own
    principal: Principal | None = None


class ProxyState:
    """One configuration in force: config, compiled inspector, CA, upstream TLS context."""

    def __init__(self, config: Config, generation: int = 0,
                 inspector_factory: Callable[[Config], Inspector] = get_inspector) -> None:
        self.config = config
        self.generation = generation
        self.inspector: Inspector = inspector_factory(config)
        tls = config.egress.tls
        self.ca: CertificateAuthority | None = None
        if tls.intercept:
            folder = tls.ca_dir or str(Path(config.data_dir) / "tls")
            self.ca = CertificateAuthority(folder, tls.leaf_cache_size)
        self.upstream_tls = ssl.create_default_context()
        self.upstream_tls.set_alpn_protocols(["http/1.1"])
        if tls.upstream_ca_file:
            self.upstream_tls.load_verify_locations(tls.upstream_ca_file)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


@functools.lru_cache(maxsize=4096)
def _ip_literal(host: str) -> str | None:
    try:
        from vallum.detection.netaddr import parse_ip_literal

        ip = parse_ip_literal(host)
        return str(ip) if ip is not None else None
    except ImportError:
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            return None


class EgressProxy:
    """The egress proxy server, startable in-process (`start`/`stop`) or from the CLI (`run_proxy`)."""

    def __init__(self, config: Config | None = None, sink: DecisionSink | None = None, *,
                 resolver: Resolver | None = None, connector: Connector | None = None,
                 principal_resolver: PrincipalResolver | None = None, limiter: RateLimiter | None = None,
                 config_path: str | Path | None = None, clock: Callable[[], float] = time.time,
                 inspector_factory: Callable[[Config], Inspector] = get_inspector,
                 principal_gate: PrincipalGate | None = None) -> None:
        self.inspector_factory = inspector_factory
        self.state = ProxyState(config or Config(), 0, inspector_factory)
        self.sink: DecisionSink = sink or NullSink()
        self.resolver: Resolver = resolver or default_resolver
        self.connector: Connector = connector or default_connector
        self.principal_resolver = principal_resolver or default_principal
        self.principal_gate = principal_gate
        self.limiter: RateLimiter = limiter or InMemoryRateLimiter()
        self.config_path = Path(config_path) if config_path else None
        self.clock = clock
        self.pool = UpstreamPool(self.connector, self.state.config.egress.upstream_pool_size)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._streams: set[ByteStream] = set()
        self._watch: asyncio.Task[None] | None = None
        self._mtime: tuple[int, int] | None = None
        self.stats = {"connections": 0, "requests": 0, "blocked": 0, "reloads": 0, "reloads_refused": 0}

    # ------------------------------------------------------------------ lifecycle
    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def port(self) -> int:
        """The port the proxy listens on (after `start`)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False,
                    sock: socket.socket | None = None) -> None:
        """Listen on host:port (default: `proxy.listen`); port 0 picks a free port. `sock`: serve a
        socket bound in advance instead (`vallum run` binds every port before starting anything)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._on_client, sock=sock, limit=READ_SIZE * 4)
            host, port = sock.getsockname()[:2]
        elif host is None or port is None:
            h, p = parse_authority(self.config.proxy.listen)
            host = h if host is None else host
            port = p if port is None else port
        if sock is None:
            self._server = await asyncio.start_server(self._on_client, host, port, limit=READ_SIZE * 4,
                                                      backlog=4096, reuse_port=reuse_port or None)
        if self.config_path is not None:
            self._mtime = self._stat()
            if self.config.egress.reload_poll_seconds > 0:
                self._watch = asyncio.create_task(self._watch_config())
        log.info("egress proxy listening on %s:%s", host, self.port)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening, give in-flight requests `grace` seconds, then close every connection."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._server is not None:
            self._server.close()
        if grace and self._conns:
            await asyncio.wait(list(self._conns), timeout=grace)
        for s in list(self._streams):
            s.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2.0)
        self.pool.close_all()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # ------------------------------------------------------------------ reload
    def reload(self, config: Config) -> list[str]:
        """Swap in a new configuration; returns how it weakens security (each is logged).

        Raises (and keeps the old configuration) when the new one cannot be used, e.g. a bad rule
        file or missing CA. Requests already running finish under the configuration they started with.
        """
        new = ProxyState(config, self.state.generation + 1, self.inspector_factory)
        weak = weakenings(self.state.config, config)
        if config.proxy.listen != self.state.config.proxy.listen:
            log.warning("proxy.listen changed to %s: takes effect after a restart", config.proxy.listen)
        self.state = new
        self.pool.per_key = config.egress.upstream_pool_size
        self.stats["reloads"] += 1
        for w in weak:
            log.warning("config reload weakens security: %s", w)
        log.info("configuration reloaded (generation %d)", new.generation)
        return weak

    def reload_from_file(self, path: str | Path | None = None) -> bool:
        """Validate and apply the config file; an invalid one is refused and the old one stays."""
        p = Path(path) if path else self.config_path
        if p is None:
            log.warning("reload requested but the proxy was started without a config file")
            return False
        try:
            cfg = load_config(p)
            self.reload(cfg)
        except (ConfigError, CAError, ValueError, OSError, ssl.SSLError) as exc:
            self.stats["reloads_refused"] += 1
            log.error("config reload refused, keeping the running configuration: %s", exc)
            return False
        return True

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.config_path) if self.config_path else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.config.egress.reload_poll_seconds or 2.0)
            cur = self._stat()
            if cur is not None and cur != self._mtime:
                self._mtime = cur
                self.reload_from_file()

    # ------------------------------------------------------------------ connections
    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        stream = PlainStream(reader, writer)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "unknown"
        if len(self._conns) >= self.config.proxy.max_connections:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await _lingering_close(reader, writer)
            stream.close()
            return
        self._conns.add(task)
        self._streams.add(stream)
        self.stats["connections"] += 1
        try:
            await self._serve_http(stream, client_ip, None)
        except (_ClientGone, ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        except Exception:
            log.exception("egress connection failed")
        finally:
            stream.close()
            self._streams.discard(stream)
            self._conns.discard(task)

    async def _read_head(self, conn: http1.ServerConnection, stream: ByteStream,
                         state: ProxyState) -> http1.Event | object:
        """The next request head: `idle_timeout` for its first byte, then `header_timeout` for all of it."""
        ev = conn.next_event()
        if ev is not http1.NEED_DATA:
            return ev  # already received (pipelined, or in the same read as the previous request)
        pc = state.config.proxy
        loop = asyncio.get_running_loop()
        started = conn.has_partial_request
        deadline = loop.time() + (pc.header_timeout if started else pc.idle_timeout)
        while True:
            ev = conn.next_event()
            if ev is not http1.NEED_DATA:
                return ev
            data = await stream.read(READ_SIZE, deadline - loop.time())
            if data and not started:
                started = True
                deadline = loop.time() + pc.header_timeout
            conn.receive_data(data)

    async def _serve_http(self, stream: ByteStream, client_ip: str, tunnel: Tunnel | None) -> None:
        pc = self.state.config.proxy
        conn = http1.ServerConnection(max_head_bytes=pc.max_header_bytes, max_headers=pc.max_headers)
        while True:
            state = self.state
            try:
                ev = await self._read_head(conn, stream, state)
            except TimeoutError:
                if conn.has_partial_request:
                    await self._send_simple(conn, stream, 408, "request head not received in time")
                return
            except http1.ProtocolError as exc:
                await self._send_simple(conn, stream, exc.status, _malformed(exc))
                return
            if not isinstance(ev, http1.Request):
                return
            state = self.state  # the configuration in force when this request arrived
            self.stats["requests"] += 1
            try:
                keep = await self._dispatch(conn, stream, ev, state, client_ip, tunnel)
            except http1.ProtocolError as exc:  # a malformed body (bad chunking, bad length)
                await self._send_simple(conn, stream, exc.status, _malformed(exc))
                return
            if not keep or not conn.keep_alive or not conn.request_done or not conn.response_done:
                return
            conn.start_next_cycle()

    async def _dispatch(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request,
                        state: ProxyState, client_ip: str, tunnel: Tunnel | None) -> bool:
        raw_headers = req.headers
        if tunnel is not None and tunnel.principal is not None:
            principal = tunnel.principal
        else:
            principal = self.principal_resolver(client_ip, raw_headers)
        method = req.method.decode("ascii", "replace")  # llhttp knows methods in upper case only
        target = req.target.decode("latin-1")
        posture = self._posture(principal)
        if posture is not None and posture[0] == "block":
            return await self._deny_principal(conn, stream, principal, client_ip, method, target, raw_headers,
                                              tunnel, posture)
        px = {"posture": posture[0]} if posture is not None else {}
        if method == "CONNECT":
            if tunnel is not None:
                await self._send_simple(conn, stream, 400, "CONNECT inside a tunnel is not supported")
                return False
            flow = Flow("egress.connect", principal, client_ip, method="CONNECT", headers=raw_headers, extra=px)
            return await self._connect(conn, stream, req, flow, state)
        if tunnel is not None:
            flow = Flow("egress.connect", principal, client_ip, method=method, headers=raw_headers, intercepted=True,
                        extra=px)
            if not target.startswith("/"):
                await self._send_simple(conn, stream, 400, "absolute-form target inside a tunnel")
                return False
            flow.target = Target("https", tunnel.host, tunnel.port, target)
            flow.pinned_ip = tunnel.ip
            flow.extra["connect_id"] = tunnel.connect_id
            return await self._forward(conn, stream, req, flow, state, tunnel)
        if target.startswith("/"):
            if method == "GET" and (target == "/fetch" or target.startswith("/fetch?")):
                flow = Flow("egress.fetch", principal, client_ip, method="GET", headers=raw_headers, extra=px)
                return await self._fetch(conn, stream, req, flow, state)
            await self._send_simple(conn, stream, 400, "not a proxy request: use an absolute URL, CONNECT "
                                    "or GET /fetch?url=…")
            return False
        flow = Flow("egress.http", principal, client_ip, method=method, headers=raw_headers, extra=px)
        try:
            flow.target = parse_absolute_url(target)
        except TargetError as exc:
            await self._send_simple(conn, stream, 400, f"bad request target: {exc}")
            return False
        return await self._forward(conn, stream, req, flow, state, None)

    # ------------------------------------------------------------------ principal posture
    def _posture(self, principal: Principal) -> tuple[str, str, int] | None:
        if self.principal_gate is None:
            return None
        try:
            return self.principal_gate(principal)
        except Exception:
            log.exception("principal gate failed; failing closed")
            return ("block", "the principal's risk posture could not be determined (fail closed)", 403)

    async def _deny_principal(self, conn: http1.ServerConnection, stream: ByteStream, principal: Principal,
                              client_ip: str, method: str, target: str, raw_headers: list[tuple[bytes, bytes]],
                              tunnel: Tunnel | None, posture: tuple[str, str, int]) -> bool:
        """The principal itself is blocked (behaviour layer) or unauthenticated: 403/407, recorded."""
        transport = ("egress.connect" if method == "CONNECT" or tunnel is not None
                     else "egress.fetch" if target.startswith("/fetch") else "egress.http")
        flow = Flow(transport, principal, client_ip, method=method, headers=raw_headers,
                    extra={"posture": posture[0]}, intercepted=tunnel is not None)
        with contextlib.suppress(TargetError):
            if method == "CONNECT":
                h, p = parse_authority(target)
                flow.target = Target("https", h, p, "/")
            elif tunnel is not None:
                flow.target = Target("https", tunnel.host, tunnel.port, target)
            elif not target.startswith("/"):
                flow.target = parse_absolute_url(target)
        auth = posture[2] == 407
        f = Finding(rule="identity.proxy_auth" if auth else "behaviour.principal_blocked",
                    category="behaviour", severity="high", action=Action.BLOCK, message=posture[1],
                    location="principal")
        await self._deny(conn, stream, flow, [f], status=posture[2], reason=posture[1], close=True)
        return False

    def _tighten(self, flow: Flow, findings: list[Finding]) -> list[Finding]:
        """Under a review/challenge posture a warning is enforced as a block."""
        if flow.extra.get("posture") not in _TIGHTENING:
            return findings
        return [dataclasses.replace(f, action=Action.BLOCK,
                                    message=f"{f.message} (blocked: principal under {flow.extra['posture']})")
                if f.action is Action.WARN else f for f in findings]

    def _tighten_response(self, flow: Flow, findings: list[Finding]) -> list[Finding]:
        """Response-side findings (a response body, an SSE event) get the same tightening as the
        request's. A response can arrive long after the request (a slow upstream, a stream that runs
        for minutes), so when it holds a warning the principal's posture is asked again and the
        stronger of the two applies: the warnings that pushed the principal into review earlier in
        the same stream are enough to harden the next one. A failing gate fails closed (block)."""
        if not any(f.action is Action.WARN for f in findings):
            return findings
        current = flow.extra.get("posture")
        if current not in _TIGHTENING and self.principal_gate is not None:
            fresh = self._posture(flow.principal)
            if fresh is not None:
                action = fresh[0] if fresh[0] in _POSTURE_ORDER else "block"  # unknown: fail closed
                if _POSTURE_ORDER[action] > _POSTURE_ORDER.get(str(current), 0):
                    flow.extra["posture"] = action
        return self._tighten(flow, findings)

    # ------------------------------------------------------------------ responses to the client
    @staticmethod
    async def _send(stream: ByteStream, data: bytes) -> None:
        stream.write(data)
        await stream.drain()

    async def _send_simple(self, conn: http1.ServerConnection, stream: ByteStream, status: int, message: str) -> None:
        """An error that is not a policy decision (malformed request, timeouts): JSON {"error"}.
        Nothing is sent when an answer is already under way (the connection just closes)."""
        if conn.response_started:
            return
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        with contextlib.suppress(ConnectionError, OSError):
            await self._send(stream, conn.full_response(status, headers, body))

    async def _send_block(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, status: int,
                          finding: Finding | None, *, rule: str = "vallum.blocked", category: str = "protocol",
                          message: str = "blocked", close: bool = False, retry_after: float | None = None) -> None:
        body = policy.block_body(flow.id, finding, rule=rule, category=category, message=message)
        headers = [(b"content-type", b"application/json"),
                   (b"x-vallum-action", b"block"), (b"x-vallum-request-id", flow.id.encode())]
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
        if status == 407:
            headers.append((b"proxy-authenticate", b'Basic realm="vallum"'))
        if close:
            headers.append((b"connection", b"close"))
        flow.status = status
        self.stats["blocked"] += 1
        if conn.response_started:  # too late for a clean answer: the connection is dropped
            raise _ClientGone
        await self._send(stream, conn.full_response(status, headers, body))

    def _emit(self, record: DecisionRecord) -> bool:
        try:
            return bool(self.sink.emit(record))
        except Exception:
            log.exception("decision sink failed; failing closed")
            return False

    async def _deny(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, findings: list[Finding], *,
                    status: int = 403, direction: str = "request", reason: str | None = None,
                    close: bool = False, retry_after: float | None = None) -> bool:
        """Record a block and answer it. Returns whether the client connection may be kept."""
        self._emit(flow.record(Action.BLOCK, direction=direction, findings=findings, reason=reason))
        f = policy.primary(findings)
        await self._send_block(conn, stream, flow, status, f, message=reason or "blocked", close=close,
                               retry_after=retry_after)
        return not close

    async def _fail(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, state: ProxyState, rule: str,
                    message: str, *, status: int, direction: str = "request", close: bool = False) -> bool:
        """A failure that is not a detector finding (upstream down, DNS failed): recorded, fail closed."""
        f = policy.protocol_finding(state.inspector, rule, message)
        f = Finding(rule=f.rule, category=f.category, severity=f.severity, action=Action.BLOCK,
                    message=f.message, location=f.location)
        return await self._deny(conn, stream, flow, [f], status=status, direction=direction, reason=message,
                                close=close)

    # ------------------------------------------------------------------ request bodies
    async def _read_body(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request,
                         state: ProxyState) -> bytes | None:
        """The whole request body, or None when it exceeds `egress.max_body_bytes`."""
        limit = state.config.egress.max_body_bytes
        cl = http1.header(req.headers, b"content-length")
        if cl is not None and cl.isdigit() and int(cl) > limit:
            return None
        if conn.they_are_waiting_for_100_continue:
            await self._send(stream, conn.informational(100))
        parts: list[bytes] = []
        size = 0
        timeout = state.config.proxy.body_timeout
        while True:
            ev = conn.next_event()
            if ev is http1.NEED_DATA:
                try:
                    data = await stream.read(READ_SIZE, timeout)
                except TimeoutError:
                    raise _ClientGone from None
                conn.receive_data(data)
                continue
            if isinstance(ev, http1.Data):
                size += len(ev.data)
                if size > limit:
                    return None
                parts.append(ev.data)
            elif ev is http1.END:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                raise _ClientGone

    # ------------------------------------------------------------------ shared checks
    def _limit(self, state: ProxyState, flow: Flow, host: str, nbytes: int) -> tuple[list[Finding], float]:
        eg = state.config.egress
        if not eg.rate_limit_per_minute and not eg.data_budget_per_minute:
            return [], 0.0
        key = policy.registrable_domain(host)
        res = self.limiter.check(key, self.clock(), nbytes, eg.rate_limit_per_minute, eg.data_budget_per_minute)
        if res.allowed:
            return [], 0.0
        if res.exceeded == "data_budget":
            f = state.inspector.finding("egress.data_budget", "rate_limit", "medium",
                                        f"data budget of {eg.data_budget_per_minute} bytes/min to {key} exceeded",
                                        location="destination", evidence=key)
        else:
            f = state.inspector.finding("egress.rate_limit", "rate_limit", "medium",
                                        f"rate limit of {eg.rate_limit_per_minute} requests/min to {key} exceeded",
                                        location="destination", evidence=key)
        return ([f] if f else []), res.retry_after

    async def _pin(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, state: ProxyState,
                   findings: list[Finding]) -> bool | None:
        """Resolve the flow's target once and pin the approved address (DNS only after every content
        check passed). On refusal answer the client and return whether the connection may be kept;
        None means pinned: go on."""
        assert flow.target is not None
        ip, addr, failure = await self._resolve(state, flow, flow.target.host, flow.target.port)
        findings += addr
        if failure:
            return await self._fail(conn, stream, flow, state, "egress.dns_failure", failure, status=502)
        if ip is None:
            return await self._deny(conn, stream, flow, findings)
        flow.pinned_ip = ip
        return None

    async def _resolve(self, state: ProxyState, flow: Flow, host: str, port: int) -> tuple[str | None, list[Finding],
                                                                                        str | None]:
        """Resolve once, check every address, pin the first approved one. (ip, findings, failure)."""
        literal = _ip_literal(host)
        if literal is not None:
            # An IP literal was already judged by the URL policy (SSRF on literals, allow_private):
            # nothing to resolve, and the same address check would only repeat that verdict.
            flow.extra["resolved"] = [literal]
            return literal, [], None
        else:
            try:
                async with asyncio.timeout(state.config.egress.dns_timeout):
                    ips = list(await self.resolver(host))
            except TimeoutError:
                return None, [], f"DNS resolution of {host} timed out"
            except Exception as exc:
                return None, [], f"DNS resolution of {host} failed ({type(exc).__name__})"
            if not ips:
                return None, [], f"{host} has no address"
        findings: list[Finding] = []
        for ip in ips:
            findings.extend(policy.address_finding(state.inspector, host, ip, port))
        flow.extra["resolved"] = ips
        if strongest([f.action for f in findings]) is Action.BLOCK:
            return None, findings, None
        return ips[0], findings, None

    # ------------------------------------------------------------------ forward proxy
    async def _forward(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request, flow: Flow,
                       state: ProxyState, tunnel: Tunnel | None) -> bool:
        insp = state.inspector
        target = flow.target
        assert target is not None
        body = await self._read_body(conn, stream, req, state)
        if body is None:
            f = policy.protocol_finding(insp, "egress.body_too_large",
                                        "request body over egress.max_body_bytes "
                                        f"({state.config.egress.max_body_bytes})"
                                        "; not inspected")
            f = Finding(rule=f.rule, category=f.category, severity=f.severity, action=Action.BLOCK,
                        message=f.message, location="request.body")
            return await self._deny(conn, stream, flow, [f], close=True, reason=f.message)
        flow.body = body
        headers = flow.headers
        url = target.url
        findings: list[Finding] = []
        if tunnel is not None:
            host_hdr = _header(headers, b"host")
            if host_hdr is not None:
                try:
                    hh, hp = parse_authority(host_hdr, tunnel.port)
                except TargetError:
                    hh, hp = "", 0
                if (hh, hp) != (tunnel.host, tunnel.port):
                    findings.append(policy.protocol_finding(
                        insp, "egress.host_mismatch", "Host header does not match the CONNECT target "
                        "(domain fronting)", category="url", location="request.headers.host"))
        # request_findings runs the URL policy too (check_url) before headers and body
        scanned = [(k, v) for k, v in headers if k.lower() not in CONSUMED]
        findings += policy.request_findings(
            insp, flow.method, url, policy.headers_dict(scanned), body,
            content_type=_header(headers, b"content-type"), content_encoding=_header(headers, b"content-encoding"),
            max_body_bytes=state.config.egress.max_body_bytes)
        findings = self._tighten(flow, dedupe(findings))
        if strongest([f.action for f in findings]) is Action.BLOCK:
            return await self._deny(conn, stream, flow, findings)
        lim, retry = self._limit(state, flow, target.host, len(body) + len(url))
        findings += lim
        if lim and strongest([f.action for f in lim]) is Action.BLOCK:
            return await self._deny(conn, stream, flow, findings, status=429, retry_after=retry)
        if tunnel is None:
            refused = await self._pin(conn, stream, flow, state, findings)
            if refused is not None:
                return refused
        flow.findings = findings
        action = flow.action()
        if not self._emit(flow.record(action)):
            return await self._fail(conn, stream, flow, state, "vallum.sink_refused",
                                    "the decision could not be recorded; blocked (fail closed)", status=403)
        return await self._exchange(conn, stream, req, flow, state, body, warned=action is Action.WARN)

    def _upstream_headers(self, flow: Flow, body: bytes) -> list[tuple[bytes, bytes]]:
        assert flow.target is not None
        out = [(b"host", flow.target.authority.encode("idna") if not flow.target.authority.isascii()
                else flow.target.authority.encode())]
        conn_tokens = {t.strip().lower().encode() for t in (_header(flow.headers, b"connection") or "").split(",")}
        for k, v in flow.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == b"host" or lk == b"content-length" or lk in conn_tokens:
                continue
            out.append((k, v))
        if body or flow.method in ("POST", "PUT", "PATCH"):
            out.append((b"content-length", str(len(body)).encode()))
        return out

    async def _exchange(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request, flow: Flow,
                        state: ProxyState, body: bytes, *, warned: bool) -> bool:
        eg = state.config.egress
        target = flow.target
        assert target is not None and flow.pinned_ip is not None
        key = UpstreamKey(target.scheme, flow.pinned_ip, target.port,
                          target.host if target.scheme == "https" else None)
        up_headers = self._upstream_headers(flow, body)
        method = flow.method.encode()
        path = target.path.encode("latin-1")
        up: UpstreamConn | None = None
        for attempt in (0, 1):
            try:
                up = await self.pool.acquire(key, connect_timeout=eg.connect_timeout, tls_context=state.upstream_tls)
                resp = await send_request(up, method, path, up_headers, body, eg.upstream_timeout)
                break
            except UpstreamError as exc:
                stale = up is not None and up.reused and attempt == 0 and exc.kind == "protocol"
                if up is not None:
                    up.close()
                    up = None
                if stale:
                    continue  # a pooled connection the server had closed: retry once on a fresh one
                rule = "egress.upstream_timeout" if exc.kind == "timeout" else "egress.upstream_error"
                return await self._fail(conn, stream, flow, state, rule, str(exc),
                                        status=504 if exc.kind == "timeout" else 502)
        assert up is not None
        flow.status = resp.status_code
        try:
            return await self._relay_response(conn, stream, flow, state, up, resp, warned=warned)
        except UpstreamError as exc:
            up.close()
            if not conn.response_started:
                rule = "egress.upstream_timeout" if exc.kind == "timeout" else "egress.upstream_error"
                return await self._fail(conn, stream, flow, state, rule, str(exc),
                                        status=504 if exc.kind == "timeout" else 502, direction="response")
            self._emit(flow.record(Action.BLOCK, direction="response", findings=[], reason=str(exc)))
            raise _ClientGone from None
        except BaseException:
            up.close()
            raise

    def _client_headers(self, resp: http1.Response, warned: bool) -> list[tuple[bytes, bytes]]:
        conn = _header(resp.headers, b"connection")
        conn_tokens = {t.strip().lower().encode() for t in conn.split(",")} if conn else set()
        out = [(k, v) for k, v in resp.headers
               if (lk := k.lower()) not in HOP_BY_HOP and lk not in conn_tokens]
        if warned:
            out.append((b"x-vallum-action", b"warn"))
        return out

    async def _relay_response(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, state: ProxyState,
                              up: UpstreamConn, resp: http1.Response, *, warned: bool) -> bool:
        eg = state.config.egress
        insp = state.inspector
        rh = resp.headers
        ctype = _header(rh, b"content-type")
        no_body = flow.method == "HEAD" or resp.status_code in (204, 304) or 100 <= resp.status_code < 200
        if eg.scan_responses and not no_body and policy.is_sse(ctype):
            return await self._relay_sse(conn, stream, flow, state, up, resp, warned=warned)
        if eg.scan_responses and not no_body and policy.is_scannable(ctype):
            rbody = await read_body(up, eg.upstream_timeout, eg.max_response_bytes)
            if rbody is None:
                up.close()
                f = policy.protocol_finding(insp, "egress.response_too_large",
                                            f"response over egress.max_response_bytes ({eg.max_response_bytes})"
                                            "; not inspected", location="response.body")
                f = Finding(rule=f.rule, category=f.category, severity=f.severity, action=Action.BLOCK,
                            message=f.message, location=f.location)
                return await self._deny(conn, stream, flow, [f], direction="response", reason=f.message)
            self.pool.release(up)
            findings = self._tighten_response(flow, policy.response_findings(
                insp, flow.url, resp.status_code, policy.headers_dict(rh), rbody, content_type=ctype,
                content_encoding=_header(rh, b"content-encoding"), max_body_bytes=eg.max_response_bytes))
            action = strongest([f.action for f in findings])
            if action is Action.BLOCK:
                return await self._deny(conn, stream, flow, findings, direction="response")
            if not self._emit(flow.record(action, direction="response", findings=findings)):
                return await self._fail(conn, stream, flow, state, "vallum.sink_refused",
                                        "the decision could not be recorded; blocked (fail closed)",
                                        status=403, direction="response")
            out_headers = self._client_headers(resp, warned or action is Action.WARN)
            await self._send(stream, conn.full_response(resp.status_code, out_headers, rbody, resp.reason))
            return True
        # Not text (images, archives, binary): streamed through as is. The head goes out with the
        # first piece of body when that is already here (one write), on its own otherwise.
        pending = conn.response(resp.status_code, self._client_headers(resp, warned), resp.reason)
        if not up.conn.has_pending_events:
            await self._send(stream, pending)
            pending = b""
        async for chunk in iter_body(up, eg.upstream_timeout):
            stream.write(pending + conn.data(chunk) if pending else conn.data(chunk))
            pending = b""
            await stream.drain()
        await self._send(stream, pending + conn.end())
        self.pool.release(up)
        return True

    async def _relay_sse(self, conn: http1.ServerConnection, stream: ByteStream, flow: Flow, state: ProxyState,
                         up: UpstreamConn, resp: http1.Response, *, warned: bool) -> bool:
        """Forward an event stream event by event, each after it was scanned (and across events)."""
        eg = state.config.egress
        insp = state.inspector
        headers = [(k, v) for k, v in self._client_headers(resp, warned) if k.lower() != b"content-length"]
        await self._send(stream, conn.response(resp.status_code, headers, resp.reason))
        splitter = SSESplitter(eg.max_response_bytes)
        scanner = SSEScanner(lambda text, loc: policy.text_findings(insp, text, loc), eg.sse_window_chars)
        seen: list[Finding] = []

        async def block(findings: list[Finding], reason: str | None = None) -> bool:
            up.close()
            f = policy.primary(findings)
            self.stats["blocked"] += 1
            self._emit(flow.record(Action.BLOCK, direction="response", findings=seen + findings, reason=reason))
            payload = policy.block_body(flow.id, f, message=reason or "blocked")
            event = b"event: vallum.block\ndata: " + payload + b"\n\n"
            await self._send(stream, conn.data(event) + conn.end())
            return False

        try:
            async for chunk in iter_body(up, eg.upstream_timeout):
                for raw in splitter.feed(chunk):
                    fs = self._tighten_response(flow, scanner.scan(raw))
                    if fs and strongest([f.action for f in fs]) is Action.BLOCK:
                        return await block(fs)
                    seen.extend(fs)
                    stream.write(conn.data(raw))
                await stream.drain()
            rest = splitter.flush()
            if rest:
                fs = self._tighten_response(flow, scanner.scan(rest))
                if fs and strongest([f.action for f in fs]) is Action.BLOCK:
                    return await block(fs)
                seen.extend(fs)
                stream.write(conn.data(rest))
        except SSEError as exc:
            f = policy.protocol_finding(insp, "egress.sse_event_too_large", str(exc), location="response.sse")
            return await block([f], str(exc))
        except UpstreamError as exc:
            return await block([], str(exc))
        await self._send(stream, conn.end())
        self.pool.release(up)
        self._emit(flow.record(strongest([f.action for f in seen]), direction="response", findings=seen))
        return True

    # ------------------------------------------------------------------ CONNECT
    async def _connect(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request, flow: Flow,
                       state: ProxyState) -> bool:
        insp = state.inspector
        try:
            host, port = parse_authority(req.target.decode("latin-1"))
        except TargetError as exc:
            await self._send_simple(conn, stream, 400, f"bad CONNECT target: {exc}")
            return False
        flow.target = Target("https", host, port, "/")
        # The CONNECT request has no body (http1 refuses one); its end comes with the head.
        try:
            ev = conn.next_event()
        except http1.ProtocolError:
            ev = None
        if ev is not http1.END:
            await self._send_simple(conn, stream, 400, "CONNECT with a body")
            return False
        findings = self._tighten(flow, dedupe(policy.url_findings(insp, flow.target.url, "CONNECT", "connect")))
        if strongest([f.action for f in findings]) is Action.BLOCK:
            return await self._deny(conn, stream, flow, findings, close=True)
        lim, retry = self._limit(state, flow, host, 0)
        findings += lim
        if lim and strongest([f.action for f in lim]) is Action.BLOCK:
            return await self._deny(conn, stream, flow, findings, status=429, close=True, retry_after=retry)
        ip, addr, failure = await self._resolve(state, flow, host, port)
        findings += addr
        if failure:
            return await self._fail(conn, stream, flow, state, "egress.dns_failure", failure, status=502, close=True)
        if ip is None:
            return await self._deny(conn, stream, flow, findings, close=True)
        flow.pinned_ip = ip
        flow.findings = findings
        # 200 written by hand: a CONNECT 2xx carries no framing headers, and the bytes after it are
        # the tunnel's.
        stream.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await stream.drain()
        buf = conn.trailing_data
        hello = None
        try:
            async with asyncio.timeout(state.config.proxy.header_timeout):
                while (hello := parse_client_hello(buf)) is None:
                    data = await stream.read(READ_SIZE)
                    if not data:
                        return False
                    buf += data
        except TimeoutError:
            self._emit(flow.record(Action.BLOCK, findings=[], reason="no TLS ClientHello in time"))
            return False
        except ClientHelloError as exc:
            f = policy.protocol_finding(insp, "egress.tunnel_not_tls",
                                        f"CONNECT tunnel does not start with a TLS ClientHello ({exc})",
                                        location="connect.tls")
            return self._tunnel_refused(flow, f, force_block=True)
        sni = hello.sni
        # A server name other than the CONNECT host is recorded by its registrable domain only:
        # its labels may carry data (SNI as an exfiltration channel).
        flow.extra["sni"] = sni if sni in (None, host) else f"{policy.registrable_domain(sni)} (mismatch)"
        if sni is None:
            if _ip_literal(host) is None:
                f = policy.protocol_finding(insp, "egress.sni_missing",
                                            "TLS ClientHello without a server name for a named CONNECT target",
                                            category="url", location="connect.sni")
                if not self._tunnel_refused(flow, f):
                    return False
        elif sni != host:
            # what the name itself carries (credentials in labels, exfil services) is reported too
            sni_findings = [x for x in policy.url_findings(insp, f"https://{sni}/", "CONNECT", "connect.sni")
                            if x.category != "url" or x.action is Action.BLOCK]
            f = policy.protocol_finding(insp, "egress.sni_mismatch",
                                        f"TLS server name ({policy.registrable_domain(sni)}) does not match the "
                                        f"CONNECT target {host!r} (domain fronting)", category="url",
                                        location="connect.sni")
            flow.findings.extend(sni_findings)
            if not self._tunnel_refused(flow, f):
                return False
        tls = state.config.egress.tls
        intercept = state.ca is not None and tls.intercept and not policy.domain_matches(host, tls.passthrough)
        flow.extra["intercept"] = intercept
        # Recorded once the ClientHello is checked, so the record names the SNI; a refusal closes.
        if not self._emit(flow.record(flow.action())):
            log.error("decision sink refused a CONNECT record; tunnel closed (fail closed)")
            return False
        if intercept:
            assert state.ca is not None
            flow.intercepted = True
            try:
                inner = await TLSStream.server(stream, state.ca.context_for(sni or host), initial=buf,
                                               timeout=state.config.proxy.header_timeout)
            except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
                log.info("TLS interception handshake with the client failed: %s", exc)
                return False
            await self._serve_http(inner, flow.client, Tunnel(host, port, ip, flow.id, flow.principal))
            inner.close()
            return False
        await self._splice(stream, buf, flow, state)
        return False

    def _tunnel_refused(self, flow: Flow, finding: Finding, force_block: bool = False) -> bool:
        """Record a tunnel-level finding after the 200; True when the tunnel may go on (audit)."""
        action = Action.BLOCK if force_block else finding.action
        if action is Action.BLOCK:
            self._emit(flow.record(action, findings=[*flow.findings, finding], reason=finding.message))
            self.stats["blocked"] += 1
            return False
        flow.findings.append(finding)  # audit: recorded with the tunnel's decision
        return True

    async def _splice(self, client: ByteStream, first: bytes, flow: Flow, state: ProxyState) -> None:
        assert flow.pinned_ip is not None and flow.target is not None
        eg = state.config.egress
        try:
            async with asyncio.timeout(eg.connect_timeout):
                r, w = await self.connector(flow.pinned_ip, flow.target.port)
        except (OSError, TimeoutError) as exc:
            self._emit(flow.record(Action.BLOCK, findings=[], reason=f"cannot connect upstream: {exc}"))
            return
        upstream = PlainStream(r, w)
        upstream.write(first)
        idle = state.config.proxy.tunnel_idle_timeout
        sent = [len(first), 0]

        async def pump(src: ByteStream, dst: PlainStream | ByteStream, idx: int) -> None:
            try:
                while True:
                    data = await src.read(READ_SIZE, idle)
                    if not data:
                        break
                    sent[idx] += len(data)
                    dst.write(data)
                    await dst.drain()
            except (TimeoutError, ConnectionError, OSError):
                pass
            finally:
                if isinstance(dst, PlainStream):
                    dst.write_eof()

        try:
            a = asyncio.ensure_future(pump(client, upstream, 0))
            b = asyncio.ensure_future(pump(upstream, client, 1))
            _done, _pending = await asyncio.wait({a, b}, return_when=asyncio.ALL_COMPLETED)
        finally:
            upstream.close()
        flow.extra["bytes_out"], flow.extra["bytes_in"] = sent

    # ------------------------------------------------------------------ fetch
    async def _fetch(self, conn: http1.ServerConnection, stream: ByteStream, req: http1.Request, flow: Flow,
                     state: ProxyState) -> bool:
        insp = state.inspector
        eg = state.config.egress
        if await self._read_body(conn, stream, req, state) is None:  # (a GET body is read and ignored)
            await self._send_simple(conn, stream, 400, "request body too large")
            return False
        query = urlsplit(req.target.decode("latin-1")).query
        urls = parse_qs(query).get("url")
        if not urls or not urls[0]:
            await self._send_simple(conn, stream, 400, "missing url parameter: GET /fetch?url=…")
            return True
        url = urls[0]
        findings: list[Finding] = []
        hops = 0
        while True:
            try:
                flow.target = parse_absolute_url(url)
            except TargetError as exc:
                await self._send_simple(conn, stream, 400, f"bad url: {exc}")
                return True
            hop = f"fetch.url[{hops}]" if hops else "fetch.url"
            fs = self._tighten(flow, dedupe(policy.url_findings(insp, flow.target.url, "GET", hop)))
            findings += fs
            if strongest([f.action for f in fs]) is Action.BLOCK:
                return await self._deny(conn, stream, flow, findings)
            lim, retry = self._limit(state, flow, flow.target.host, len(url))
            findings += lim
            if lim and strongest([f.action for f in lim]) is Action.BLOCK:
                return await self._deny(conn, stream, flow, findings, status=429, retry_after=retry)
            refused = await self._pin(conn, stream, flow, state, findings)
            if refused is not None:
                return refused
            try:
                status, rheaders, rbody = await self._fetch_once(flow, state)
            except UpstreamError as exc:
                rule = "egress.upstream_timeout" if exc.kind == "timeout" else "egress.upstream_error"
                return await self._fail(conn, stream, flow, state, rule, str(exc),
                                        status=504 if exc.kind == "timeout" else 502)
            if rbody is None:
                return await self._fail(conn, stream, flow, state, "egress.response_too_large",
                                        f"fetched body over egress.fetch_max_bytes ({eg.fetch_max_bytes})", status=403)
            location = _header(rheaders, b"location")
            if status in REDIRECTS and location:
                hops += 1
                if hops > eg.max_redirects:
                    return await self._fail(conn, stream, flow, state, "egress.too_many_redirects",
                                            f"more than {eg.max_redirects} redirects", status=403)
                url = urljoin(flow.target.url, location)
                flow.extra.setdefault("redirects", []).append(urlsplit(url).netloc[-200:])
                continue
            break
        ctype = _header(rheaders, b"content-type") or ""
        content, cfind = self._fetch_content(state, rbody, ctype, _header(rheaders, b"content-encoding"))
        findings = self._tighten_response(flow, dedupe(findings + cfind))
        flow.status = status
        flow.findings = findings
        action = flow.action()
        if action is Action.BLOCK:
            return await self._deny(conn, stream, flow, findings, direction="response")
        if not self._emit(flow.record(action, direction="response")):
            return await self._fail(conn, stream, flow, state, "vallum.sink_refused",
                                    "the decision could not be recorded; blocked (fail closed)", status=403)
        out = json.dumps({"url": flow.target.url, "status": status, "content_type": ctype, "content": content,
                          "findings": [f.to_dict() for f in findings]}, ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"x-vallum-action", str(action).encode()), (b"x-vallum-request-id", flow.id.encode())]
        await self._send(stream, conn.full_response(200, headers, out))
        return True

    async def _fetch_once(self, flow: Flow, state: ProxyState) -> tuple[int, list[tuple[bytes, bytes]], bytes | None]:
        eg = state.config.egress
        t = flow.target
        assert t is not None and flow.pinned_ip is not None
        key = UpstreamKey(t.scheme, flow.pinned_ip, t.port, t.host if t.scheme == "https" else None)
        headers = [(b"host", t.authority.encode("idna") if not t.authority.isascii() else t.authority.encode()),
                   (b"user-agent", FETCH_UA),
                   (b"accept", b"text/html,text/plain;q=0.9,application/json;q=0.9,*/*;q=0.5"),
                   (b"accept-encoding", b"gzip, deflate, br")]
        up = await self.pool.acquire(key, connect_timeout=eg.connect_timeout, tls_context=state.upstream_tls)
        try:
            resp = await send_request(up, b"GET", t.path.encode("latin-1"), headers, b"", eg.upstream_timeout)
            body = await read_body(up, eg.upstream_timeout, eg.fetch_max_bytes)
        except BaseException:
            up.close()
            raise
        if body is None:
            up.close()
        else:
            self.pool.release(up)
        return resp.status_code, list(resp.headers), body

    def _fetch_content(self, state: ProxyState, body: bytes, ctype: str,
                       encoding: str | None) -> tuple[str, list[Finding]]:
        insp = state.inspector
        eg = state.config.egress
        if encoding and encoding.strip().lower() not in ("identity", ""):
            try:
                from vallum.detection.http import decompress_body

                body = decompress_body(body, encoding, eg.fetch_max_bytes)
            except Exception as exc:
                f = policy.protocol_finding(insp, "egress.body_not_inspectable",
                                            f"fetched body cannot be decoded ({exc})", location="fetch.body")
                return "", [f]
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip('"').strip()
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        mt = policy.media_type(ctype)
        if mt in ("text/html", "application/xhtml+xml") or (not mt and "<html" in text[:2048].lower()):
            findings = policy.html_findings(insp, text, "fetch.html")
            try:
                from vallum.detection.html import html_to_text

                content = html_to_text(text)
            except Exception as exc:
                return "", [*findings, policy.internal_error(insp, exc, "fetch.text")]
            findings += policy.text_findings(insp, content, "fetch.text")
            return content, findings
        if policy.is_scannable(ctype):
            return text, policy.text_findings(insp, text, "fetch.content")
        return "", []


def _worker_main(config: Config, config_path: str | None, listen: str) -> None:
    """A worker process of a multi-process `vallum proxy` (shares the port with SO_REUSEPORT)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_proxy(config, config_path=config_path, listen=listen, workers=1, reuse_port=True))


async def run_proxy(config: Config, *, config_path: str | Path | None = None, listen: str | None = None,
                    sink: DecisionSink | None = None, ready: Callable[[EgressProxy], None] | None = None,
                    workers: int | None = None, reuse_port: bool = False) -> None:
    """Run the proxy until SIGINT/SIGTERM; SIGHUP reloads the config file (the CLI's entry point).

    With `proxy.workers` > 1 (or 0: one per CPU) the extra workers are separate processes sharing
    the listening port; SIGHUP is forwarded to them. Decisions of the extra workers go to their
    own `NullSink` unless they are started by an integrator with a sink of their own.
    """
    n = workers if workers is not None else (config.proxy.workers or os.cpu_count() or 1)
    proxy = EgressProxy(config, sink, config_path=config_path)
    host, port = parse_authority(listen or config.proxy.listen)
    await proxy.start(host, port, reuse_port=reuse_port or n > 1)
    children: list[multiprocessing.process.BaseProcess] = []
    if n > 1:
        ctx = multiprocessing.get_context("spawn")
        addr = f"[{host}]:{proxy.port}" if ":" in host else f"{host}:{proxy.port}"
        for _ in range(n - 1):
            child = ctx.Process(target=_worker_main, args=(config, str(config_path) if config_path else None, addr),
                                daemon=True)
            child.start()
            children.append(child)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def hup() -> None:
        proxy.reload_from_file()
        for c in children:
            if c.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(c.pid, signal.SIGHUP)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, hup)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if ready is not None:
        ready(proxy)
    try:
        await stop.wait()
    finally:
        for c in children:
            c.terminate()
        await proxy.stop(grace=5.0)
        for c in children:
            c.join(timeout=5)


async def _lingering_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close after a refusal and read (briefly, boundedly) what the client already sent:
    closing a socket with unread data sends a reset, which can destroy the answer in flight."""
    try:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(1.0):
            for _ in range(16):
                if not await reader.read(4096):
                    break
    except (TimeoutError, ConnectionError, OSError):
        pass
