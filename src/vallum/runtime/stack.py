"""`Stack`: every vallum service in one process — egress proxy (and per-agent listeners), MCP
gateways, HTTP API + console, audit log, risk engine + store — and the loop between them.

    stack = Stack(config)
    await stack.start()          # raises StartupError (bad config, port in use, store/audit/redis)
    ...
    await stack.stop()           # stop accepting, drain queues, audit checkpoint

Data path: every inline decision goes to one sink = audit log (must accept, else the request is
refused) + `ChangeListener` (session threat score) + `BehaviourFeed` (guard.verdict / tool.*
events for the risk engine). Decision changes of the risk engine go to the audit log and the
`DecisionCache` (and to Redis for the other replicas); the proxies read the cache through
`PrincipalGate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from vallum.config import Config
from vallum.decisions import DecisionSink, FanoutSink, MemorySink
from vallum.runtime.enforcement import (
    ChangeListener,
    DecisionCache,
    MemoryThreatStore,
    PrincipalGate,
    SessionThreat,
    ThreatStore,
    engine_lookup,
)
from vallum.runtime.feed import BehaviourFeed
from vallum.runtime.identity import IdentityResolver
from vallum.runtime.sinks import build_decision_sink, close_sink

log = logging.getLogger("vallum.runtime")


LOOP_RULES = Path(__file__).parent / "rules" / "loop.yaml"


def with_loop_rules(config: Config) -> Config:
    """The config the behaviour service runs with: the loop's rule file added to behaviour.rule_files."""
    if str(LOOP_RULES) in config.behaviour.rule_files:
        return config
    b = config.behaviour.model_copy(update={"rule_files": [str(LOOP_RULES), *config.behaviour.rule_files]})
    return config.model_copy(update={"behaviour": b})


class StartupError(Exception):
    """The stack cannot start (bad config, a port in use, store/audit/Redis unavailable)."""


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_listen(value: str, what: str) -> tuple[str, int]:
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) < 65536:
        raise StartupError(f"{what}: {value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port_s)


def bind_socket(value: str, what: str) -> socket.socket:
    """A listening TCP socket for `HOST:PORT` (port 0 = any free port); StartupError if taken."""
    host, port = parse_listen(value, what)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"{what}: cannot listen on {value}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Services:
    """What the running stack is made of (the console and tests read it)."""

    config: Config
    behaviour: Any
    audit_sink: DecisionSink
    sink: DecisionSink
    feed: BehaviourFeed
    cache: DecisionCache
    threat: SessionThreat
    gate: PrincipalGate
    recent: MemorySink
    shared: Any = None
    proxies: list[Any] = field(default_factory=list)
    listen: dict[str, str] = field(default_factory=dict)


def _console_routes(config: Config, services: Services) -> list[BaseRoute]:
    try:
        from vallum.console import console_routes, default_paths
    except ImportError:
        return []
    paths = default_paths(config)
    return list(console_routes(config, service=services.behaviour, audit_dir=paths["audit_dir"],
                               recent_decisions=lambda: list(services.recent.records),
                               pins_dir=paths["pins_dir"]))


def build_app(config: Config, services: Services) -> Starlette:
    """The API app with `/metrics` and, when `vallum.console` is installed, the console pages.
    The behaviour feed starts with the app and is drained when it stops."""
    from vallum.api.app import create_app
    from vallum.metrics import metrics_endpoint

    @contextlib.asynccontextmanager
    async def feed_hook(app: Starlette) -> AsyncIterator[None]:
        services.feed.start()
        try:
            yield
        finally:
            await services.feed.stop()

    routes: list[BaseRoute] = [Route("/metrics", metrics_endpoint, methods=["GET"])]
    routes += _console_routes(config, services)
    app = create_app(config, service=services.behaviour, extra_routes=routes, lifespan_hooks=[feed_hook])
    app.state.services = services
    return app


class Stack:
    """Start and stop the whole runtime in the current event loop."""

    def __init__(self, config: Config, *, config_path: str | Path | None = None, component: str = "vallum") -> None:
        self.config = config
        self.config_path = config_path
        self.component = component
        self.services: Services | None = None
        self._sockets: dict[str, socket.socket] = {}
        self._servers: list[tuple[QuietServer, asyncio.Task[None]]] = []
        self._mcp_apps: list[Any] = []
        self._audit: DecisionSink | None = None
        self.listen: dict[str, str] = {}

    # ------------------------------------------------------------------ start
    def _bind_all(self) -> None:
        cfg = self.config
        self._sockets["console"] = bind_socket(cfg.console.listen, "console.listen")
        self._sockets["proxy"] = bind_socket(cfg.proxy.listen, "proxy.listen")
        for i, lst in enumerate(cfg.identity.listeners):
            self._sockets[f"listener:{i}"] = bind_socket(lst.listen, f"identity.listeners[{i}].listen")
        for name, s in cfg.mcp.servers.items():
            if s.listen:
                if bool(s.upstream) == bool(s.command):
                    raise StartupError(f"mcp.servers.{name}: give exactly one of upstream or command")
                self._sockets[f"mcp:{name}"] = bind_socket(s.listen, f"mcp.servers.{name}.listen")

    def _close_sockets(self) -> None:
        for s in self._sockets.values():
            with contextlib.suppress(OSError):
                s.close()

    async def start(self) -> Services:
        cfg = self.config
        try:
            self._bind_all()
        except StartupError:
            self._close_sockets()
            raise
        try:
            return await self._start(cfg)
        except StartupError:
            await self.stop()
            raise
        except Exception as exc:
            await self.stop()
            raise StartupError(f"{type(exc).__name__}: {exc}") from exc

    async def _start(self, cfg: Config) -> Services:
        from vallum.api.service import BehaviourService
        from vallum.egress.server import EgressProxy
        from vallum.storage.store import StoreError

        shared = None
        threat_store: ThreatStore = MemoryThreatStore()
        limiter = None
        if cfg.redis_url:
            from vallum.runtime.shared import SharedState

            try:
                shared = SharedState(cfg.redis_url, cfg.redis_prefix)
                shared.ping()
            except Exception as exc:
                raise StartupError(f"redis_url: cannot reach {cfg.redis_url}: {exc}") from None
            threat_store = shared.threat_store()
            limiter = shared.limiter()
        try:
            self._audit = build_decision_sink(cfg, self.component)
        except Exception as exc:
            raise StartupError(f"cannot open the audit log: {exc}") from None
        threat = SessionThreat(threat_store)
        cache = DecisionCache()
        listener = ChangeListener(cache, threat, shared.publish if shared is not None else None)
        try:
            svc = BehaviourService(with_loop_rules(cfg), sink=FanoutSink(self._audit, listener))
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        cache.lookup = engine_lookup(svc.engine)
        if shared is not None:
            shared.subscribe(lambda k, i, a, r: cache.set(k, i, a, r, remote=True))
        feed = BehaviourFeed(svc)
        from vallum.metrics import METRICS

        METRICS.track_queue("behaviour_feed", lambda: float(feed.depth))
        recent = MemorySink(5000)
        parts: list[DecisionSink] = [self._audit, listener, recent]
        if cfg.behaviour.enabled:
            parts.append(feed)
        sink = FanoutSink(*parts)
        gate = PrincipalGate(cache, threat, enabled=cfg.behaviour.enabled)
        services = Services(cfg, svc, self._audit, sink, feed, cache, threat, gate, recent, shared)
        self.services = services

        # API + console first: its lifespan starts the behaviour service (history replayed)
        app = build_app(cfg, services)
        await self._serve(app, self._sockets["console"], "console")

        identity = IdentityResolver(cfg.identity)
        proxy = EgressProxy(cfg, sink, principal_resolver=identity.resolver(), limiter=limiter,
                            config_path=self.config_path, principal_gate=gate)
        await proxy.start(sock=self._sockets["proxy"])
        services.proxies.append(proxy)
        self.listen["proxy"] = _addr(self._sockets["proxy"])
        for i, lst in enumerate(cfg.identity.listeners):
            p = EgressProxy(cfg, sink, principal_resolver=identity.resolver(lst), limiter=proxy.limiter,
                            principal_gate=gate)
            await p.start(sock=self._sockets[f"listener:{i}"])
            services.proxies.append(p)
            self.listen[f"listener:{lst.agent or lst.user}"] = _addr(self._sockets[f"listener:{i}"])
        await self._start_mcp(cfg, sink, gate, identity)
        services.listen = dict(self.listen)
        return services

    async def _serve(self, app: Any, sock: socket.socket, key: str) -> None:
        server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                           timeout_graceful_shutdown=3))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                exc = task.exception() if not task.cancelled() else None
                raise StartupError(f"{key} failed to start" + (f": {exc}" if exc else ""))
            await asyncio.sleep(0.02)
        self._servers.append((server, task))
        self.listen[key] = _addr(sock)

    async def _start_mcp(self, cfg: Config, sink: DecisionSink, gate: PrincipalGate,
                         identity: IdentityResolver) -> None:
        servers = {n: s for n, s in cfg.mcp.servers.items() if s.listen}
        if not servers:
            return
        from vallum.cli.mcp_cmd import pins_dir
        from vallum.detection.pipeline import get_inspector
        from vallum.mcp.http_server import McpHttpApp, StdioMux
        from vallum.mcp.pins import FilePinStore
        from vallum.mcp.session import ServerContext

        inspector = get_inspector(cfg)
        for name, s in servers.items():
            ctx = ServerContext(name, inspector, FilePinStore(pins_dir(cfg)), sink, transport="mcp.http", gate=gate)
            mux = StdioMux(list(s.command), ctx) if s.command else None
            if mux is not None:
                try:
                    await mux.start()
                except OSError as exc:
                    raise StartupError(f"mcp.servers.{name}: cannot start {s.command[0]}: {exc}") from None
            app = McpHttpApp(ctx, path=s.path, upstream=s.upstream or None, mux=mux,
                             principal_resolver=identity.resolver())
            self._mcp_apps.append(app)
            await self._serve(app, self._sockets[f"mcp:{name}"], f"mcp:{name}")

    # ------------------------------------------------------------------ stop
    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, finish in-flight requests (up to `grace` s), drain the behaviour feed,
        stop the API (the behaviour worker finishes scoring), then close the audit log."""
        svc = self.services
        if svc is not None:
            for p in svc.proxies:
                with contextlib.suppress(Exception):
                    await p.stop(grace)
        # MCP gateways, then the API (whose lifespan drains the feed and stops the behaviour service)
        for server, task in reversed(self._servers):
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=15)
        self._servers.clear()
        for app in self._mcp_apps:
            if getattr(app, "mux", None) is not None:
                with contextlib.suppress(Exception):
                    await app.mux.stop()
        self._mcp_apps.clear()
        if svc is not None and svc.shared is not None:
            with contextlib.suppress(Exception):
                svc.shared.close()
        if svc is not None:
            with contextlib.suppress(Exception):
                svc.behaviour.store.close()
        if self._audit is not None:
            await asyncio.get_running_loop().run_in_executor(None, close_sink, self._audit)
            self._audit = None
        self._close_sockets()

