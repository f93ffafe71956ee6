"""MCP test harness: real SDK clients and servers, the relays run in-process in a thread.

The SDK's stdio client launches `servers/connect.py`, which pipes its stdio to a unix socket
served by a relay (`wrap_stdio` / `bridge_stdio_to_http`) running in a background event loop
with a shared, pre-compiled `Inspector`. The CLI itself is exercised by a few end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vallum.config import Config, parse_config
from vallum.decisions import MemorySink
from vallum.detection.model import Mode
from vallum.detection.pipeline import Inspector
from vallum.mcp.pins import FilePinStore, PinStore
from vallum.mcp.session import McpSession, ServerContext

HERE = Path(__file__).resolve().parent
SERVER = HERE / "servers" / "stdio_server.py"
CONNECT = HERE / "servers" / "connect.py"
PY = sys.executable


@pytest.fixture(scope="session")
def inspector() -> Inspector:
    return Inspector(Config())


@pytest.fixture(scope="session")
def audit_inspector(inspector: Inspector) -> Inspector:
    """The same compiled rules under mode audit (a shallow copy: compiling twice is slow)."""
    insp = copy.copy(inspector)
    insp.config = Config(mode="audit")
    insp.mode = Mode.AUDIT
    return insp


def mcp_cfg(data: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return parse_config({"mcp": data or {}}).mcp


def make_ctx(inspector: Inspector, name: str = "test", pins: PinStore | None = None,
             sink: Any = None, mcp: dict[str, Any] | None = None, transport: str = "mcp.stdio",
             **kw: Any) -> ServerContext:
    return ServerContext(name, inspector, pins if pins is not None else PinStore(),
                         sink if sink is not None else MemorySink(), transport=transport,
                         mcp_config=mcp_cfg(mcp), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop in a daemon thread; `run(coro)` schedules and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


class RelayEndpoint:
    """A unix socket; each connection runs `handler(reader, writer)` in the loop thread."""

    def __init__(self, lt: LoopThread, path: str, handler: Callable[..., Any]) -> None:
        self.lt = lt
        self.path = path
        self.results: list[Any] = []

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                self.results.append(await handler(reader, writer))
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(on_conn, path=path, limit=32 * 1024 * 1024)

        self.server = lt.run(start())

    def params(self, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        from mcp.client.stdio import StdioServerParameters

        return StdioServerParameters(command=PY, args=[str(CONNECT), self.path], env=env)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def wrap_relay(loop_thread: LoopThread, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: a relay running `wrap_stdio` around the test server for a context."""
    from vallum.mcp.stdio import StreamLineWriter, wrap_stdio

    made: list[RelayEndpoint] = []

    def make(ctx: ServerContext, env: dict[str, str] | None = None, cmd: list[str] | None = None) -> RelayEndpoint:
        full_env = {**os.environ, **(env or {})}

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
            return await wrap_stdio(cmd or [PY, str(SERVER)], McpSession(ctx), client_in=reader,
                                    client_out=StreamLineWriter(writer), env=full_env)

        ep = RelayEndpoint(loop_thread, str(tmp_path / f"relay{len(made)}.sock"), handler)
        made.append(ep)
        return ep

    yield make
    for ep in made:
        ep.close()


@pytest.fixture(scope="session")
def http_server() -> Iterator[Callable[..., str]]:
    """Factory: start the test server over Streamable HTTP (subprocess); returns its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str] | None = None) -> str:
        port = free_port()
        p = subprocess.Popen([PY, str(SERVER), "http", str(port)], env={**os.environ, **(env or {})},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.time() + 30
        while time.time() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return f"http://127.0.0.1:{port}/mcp"
            time.sleep(0.1)
        raise RuntimeError("test HTTP server did not start")

    yield start
    for p in procs:
        p.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)


def file_pins(tmp_path: Path) -> FilePinStore:
    return FilePinStore(tmp_path / "pins")
