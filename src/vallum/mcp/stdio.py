"""`vallum mcp wrap`: stdio ↔ stdio relay around a server process, driven by `McpSession`.

Newline-delimited JSON-RPC both ways (the MCP stdio transport). The server's stderr is inherited
(relayed as is); its exit code is returned. Each direction is one reader task handling its
messages in arrival order, so nothing is reordered; replies vallum makes in the server's place
(blocked calls) are written to the client in the same order as relayed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

from vallum.mcp.session import McpSession, Outcome

#: seconds the server may take to exit after its stdin closed, before it is terminated
EXIT_GRACE = 10.0
#: seconds requests in flight may still take to be answered after the client closed its stdin
PENDING_GRACE = 30.0


class LineWriter:
    """Writes whole lines to a binary file object, flushing each (client side of the relay)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.closed = False

    def write_line(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.stream.write(data + b"\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True


class StreamLineWriter:
    """`LineWriter` over an asyncio stream (a socket); writes are buffered by the transport."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write_line(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data + b"\n")


async def stdin_reader(limit: int, stream: BinaryIO | None = None) -> asyncio.StreamReader:
    """An asyncio reader over standard input (pipe or file)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    src = stream or sys.stdin.buffer
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), src)
    except (ValueError, OSError):
        # a regular file cannot be watched by the event loop: read it in a thread
        def pump() -> None:
            for line in src:
                loop.call_soon_threadsafe(reader.feed_data, line)
            loop.call_soon_threadsafe(reader.feed_eof)

        loop.run_in_executor(None, pump)
    return reader


async def read_lines(reader: asyncio.StreamReader, on_line: Callable[[bytes], object],
                     on_oversize: Callable[[], object]) -> None:
    """Call `on_line` for every non-empty line until EOF; `on_oversize` for a line over the limit."""
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            on_oversize()
            continue
        if not line:
            return
        line = line.strip()
        if line:
            res = on_line(line)
            if asyncio.iscoroutine(res):
                await res


async def wrap_stdio(cmd: list[str], session: McpSession, *, client_in: asyncio.StreamReader,
                     client_out: LineWriter | StreamLineWriter, clock: Callable[[], float] = time.time,
                     env: dict[str, str] | None = None) -> int:
    """Run `cmd` and relay between the client streams and the process; return its exit code."""
    limit = session.server.config.max_message_bytes + 1024
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
        limit=limit, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    server_in = proc.stdin

    async def send_server(out: Outcome) -> None:
        for b in out.to_server:
            if server_in.is_closing():
                break
            server_in.write(b + b"\n")
        for b in out.to_client:
            client_out.write_line(b)
        if out.to_server and not server_in.is_closing():
            with contextlib.suppress(ConnectionError):
                await server_in.drain()

    async def from_client(line: bytes) -> None:
        await send_server(session.client_message(line, clock()))

    async def from_server(line: bytes) -> None:
        await send_server(session.server_message(line, clock()))

    def oversize(side: str) -> Callable[[], None]:
        def note() -> None:
            f = session.inspector.finding("mcp.protocol.too_large", "protocol", "high",
                                          f"{side} message over mcp.max_message_bytes dropped")
            session._record(clock(), "request" if side == "client" else "response", [f] if f else [])
        return note

    async def client_loop() -> None:
        try:
            await read_lines(client_in, from_client, oversize("client"))
            # the client stopped writing but may still read: let requests in flight be answered
            deadline = time.monotonic() + PENDING_GRACE
            while session.pending and time.monotonic() < deadline and not server_task.done():
                await asyncio.sleep(0.01)
        finally:
            if not server_in.is_closing():
                server_in.close()

    server_task = asyncio.create_task(read_lines(proc.stdout, from_server, oversize("server")))
    client_task = asyncio.create_task(client_loop())
    done, _ = await asyncio.wait({server_task, client_task}, return_when=asyncio.FIRST_COMPLETED)
    if client_task in done:
        # client went away: let the server finish what it is writing, then exit
        try:
            await asyncio.wait_for(asyncio.shield(server_task), EXIT_GRACE)
        except TimeoutError:
            pass
    else:
        client_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client_task
    try:
        code = await asyncio.wait_for(proc.wait(), EXIT_GRACE)
    except TimeoutError:
        proc.terminate()
        try:
            code = await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
    server_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await server_task
    return exit_status(code)


def exit_status(code: int | None) -> int:
    """A process return code as a shell exit status (killed by signal N → 128+N)."""
    if code is None:
        return 1
    return 128 + (-code) if code < 0 else code


def default_server_name(cmd: list[str]) -> str:
    """A server name from its command: the script or package, not the interpreter."""
    launchers = {"python", "python3", "node", "npx", "uvx", "uv", "bunx", "deno", "docker", "pipx", "sh", "bash"}
    base = os.path.basename(cmd[0]) if cmd else "server"
    if base.rstrip("0123456789.") in launchers:
        for a in cmd[1:]:
            if not a.startswith("-") and a not in ("run", "exec", "-m"):
                name = os.path.basename(a.rstrip("/"))
                return name.rsplit(".", 1)[0] if name.endswith((".py", ".js", ".ts", ".mjs")) else name
    return base
