"""The proxy's upstream side: resolving, dialling a pinned address, and a pooled HTTP/1.1 client.

`Resolver` (host → addresses) and `Connector` ((ip, port) → asyncio streams) are injected so that
tests fake them; the defaults use the event loop's resolver and `asyncio.open_connection`. The
connector is only ever given an IP address that the SSRF check approved: never a name, so no
second DNS lookup can happen behind the check.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from vallum.egress import http1
from vallum.egress.streams import READ_SIZE, ByteStream, PlainStream, TLSStream

Resolver = Callable[[str], Awaitable[list[str]]]
Connector = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def default_resolver(host: str) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in out:
            out.append(ip)
    return out


async def default_connector(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection to an IP address (never a name)."""
    reader, writer = await asyncio.open_connection(ip, port, limit=READ_SIZE * 4)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return reader, writer


class UpstreamError(Exception):
    """The upstream could not be reached or answered badly. `kind` is timeout|connect|protocol|tls."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """What makes two upstream connections interchangeable."""

    scheme: str
    ip: str
    port: int
    #: the TLS server name (https only)
    server_name: str | None = None


@dataclass(slots=True)
class UpstreamConn:
    key: UpstreamKey
    stream: ByteStream
    conn: http1.ClientConnection = field(default_factory=http1.ClientConnection)
    reused: bool = False

    def close(self) -> None:
        self.stream.close()


class UpstreamPool:
    """Idle keep-alive upstream connections, per `UpstreamKey`."""

    def __init__(self, connector: Connector, per_key: int = 32) -> None:
        self.connector = connector
        self.per_key = per_key
        self._idle: dict[UpstreamKey, list[UpstreamConn]] = {}

    async def acquire(self, key: UpstreamKey, *, connect_timeout: float,
                      tls_context: ssl.SSLContext | None = None) -> UpstreamConn:
        idle = self._idle.get(key)
        while idle:
            c = idle.pop()
            if not getattr(c.stream, "at_eof", False):
                c.reused = True
                return c
            c.close()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await self.connector(key.ip, key.port)
        except TimeoutError:
            raise UpstreamError("timeout", f"connecting to {key.ip}:{key.port} timed out") from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to {key.ip}:{key.port}: {exc.strerror or exc}") from None
        stream: ByteStream = PlainStream(reader, writer)
        if key.scheme == "https":
            ctx = tls_context or ssl.create_default_context()
            try:
                stream = await TLSStream.client(stream, ctx, key.server_name, timeout=connect_timeout)
            except TimeoutError:
                stream.close()
                raise UpstreamError("timeout", f"TLS handshake with {key.server_name} timed out") from None
            except (ssl.SSLError, ConnectionError, OSError) as exc:
                stream.close()
                raise UpstreamError("tls", f"TLS with {key.server_name} failed: {exc}") from None
        return UpstreamConn(key, stream)

    def release(self, c: UpstreamConn) -> None:
        """Return a connection whose exchange completed; anything else is closed."""
        if self.per_key > 0 and c.conn.reused_ok:
            c.conn.start_next_cycle()
            idle = self._idle.setdefault(c.key, [])
            if len(idle) < self.per_key:
                idle.append(c)
                return
        c.close()

    def close_all(self) -> None:
        for idle in self._idle.values():
            for c in idle:
                c.close()
        self._idle.clear()


async def _next_event(c: UpstreamConn, timeout: float) -> http1.Event | object:
    while True:
        try:
            ev = c.conn.next_event()
        except http1.ProtocolError as exc:
            raise UpstreamError("protocol", str(exc)) from None
        if ev is http1.NEED_DATA:
            try:
                data = await c.stream.read(READ_SIZE, timeout)
            except TimeoutError:
                raise UpstreamError("timeout", "upstream did not answer in time") from None
            except (OSError, ssl.SSLError) as exc:
                raise UpstreamError("protocol", f"upstream connection failed: {exc}") from None
            c.conn.receive_data(data)
            continue
        return ev


async def send_request(c: UpstreamConn, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                       body: bytes, timeout: float) -> http1.Response:
    """Send one request with a fully buffered body and return the final response head."""
    try:
        c.stream.write(c.conn.request(method, target, headers, body))  # one write, one copy of the body
        await c.stream.drain(timeout)
    except TimeoutError:
        raise UpstreamError("timeout", "sending to upstream timed out") from None
    except http1.LocalProtocolError as exc:
        raise UpstreamError("protocol", f"cannot send request upstream: {exc}") from None
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError("protocol", f"upstream connection failed: {exc}") from None
    ev = await _next_event(c, timeout)
    if isinstance(ev, http1.Response):
        return ev
    if ev is http1.CLOSED:
        raise UpstreamError("protocol", "upstream closed the connection without answering")
    raise UpstreamError("protocol", f"unexpected upstream event {ev!r}")


async def iter_body(c: UpstreamConn, timeout: float) -> AsyncIterator[bytes]:
    """The response body chunk by chunk, until the end of the message."""
    while True:
        ev = await _next_event(c, timeout)
        if isinstance(ev, http1.Data):
            yield ev.data
        elif ev is http1.END:
            return
        else:
            raise UpstreamError("protocol", "upstream closed the connection mid-body")


async def read_body(c: UpstreamConn, timeout: float, limit: int) -> bytes | None:
    """The whole response body, or None when it is larger than `limit` (connection then unusable)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in iter_body(c, timeout):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)
