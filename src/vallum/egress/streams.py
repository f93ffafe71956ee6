"""Byte streams for the proxy: plain asyncio streams, and TLS over memory BIOs.

TLS runs over `ssl.SSLObject` + `MemoryBIO` rather than `start_tls` because the proxy has already
read the client's ClientHello (to check SNI) when it decides to intercept: those bytes are handed
to the TLS layer as its first input. The same wrapper speaks TLS to upstream servers over any
connector's streams.

Reads take their timeout as an argument. `PlainStream` keeps one lazily re-armed timer per stream
instead of a timer per read (as `asyncio.timeout` would): a read moves the deadline, and the timer,
when it fires early, re-arms itself for the current deadline. A read that outlives its deadline is
cancelled the way `asyncio.timeout` does it (the reading task is cancelled, the cancellation turned
into `TimeoutError`); every caller then closes the stream.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

READ_SIZE = 65536


class ByteStream(Protocol):
    async def read(self, n: int = READ_SIZE, timeout: float | None = None) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class PlainStream:
    """An asyncio (reader, writer) pair as a `ByteStream`."""

    __slots__ = ("_deadline", "_expired", "_loop", "_reader_task", "_timer", "_timer_at", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._reader_task: asyncio.Task[object] | None = None  # set while a timed read waits
        self._expired = False

    async def read(self, n: int = READ_SIZE, timeout: float | None = None) -> bytes:
        if timeout is None:
            return await self.reader.read(n)
        if timeout <= 0:
            raise TimeoutError
        self._deadline = deadline = self._loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._expire)
            self._timer_at = deadline
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._reader_task = task
        try:
            return await self.reader.read(n)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError("read timed out") from None
            raise
        finally:
            self._reader_task = None

    def _expire(self) -> None:
        self._timer = None
        task = self._reader_task
        if task is None:
            return  # no read waiting: the next one arms a timer again
        if self._loop.time() >= self._deadline:
            self._expired = True
            task.cancel()
        else:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            self._timer_at = self._deadline

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout: float | None = None) -> None:
        # Everything was sent (the common case on a fast peer) on a healthy connection: nothing to
        # wait for. A closing transport goes through drain(), which raises for a lost connection.
        transport = self.writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            return
        if timeout is None:
            await self.writer.drain()
            return
        async with asyncio.timeout(timeout):
            await self.writer.drain()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.writer.close()
        except Exception:
            pass

    def write_eof(self) -> None:
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (OSError, RuntimeError):
            pass

    @property
    def at_eof(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()


class TLSStream:
    """TLS over another `ByteStream` (client or server side)."""

    def __init__(self, inner: ByteStream, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.inner = inner
        self._ssl = sslobj
        self._in = incoming
        self._out = outgoing

    @classmethod
    async def server(cls, inner: ByteStream, ctx: ssl.SSLContext, initial: bytes = b"",
                     timeout: float = 10.0) -> TLSStream:
        """Accept TLS from a client; `initial` holds bytes already read (the ClientHello)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        if initial:
            incoming.write(initial)
        s = cls(inner, ctx.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing)
        async with asyncio.timeout(timeout):
            await s._handshake()
        return s

    @classmethod
    async def client(cls, inner: ByteStream, ctx: ssl.SSLContext, server_hostname: str | None,
                     timeout: float = 10.0) -> TLSStream:
        """Open TLS to a server, verifying it as `ctx` says."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        s = cls(inner, ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_hostname),
                incoming, outgoing)
        async with asyncio.timeout(timeout):
            await s._handshake()
        return s

    @property
    def selected_alpn(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.inner.write(data)

    async def _handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                await self.inner.drain()
                chunk = await self.inner.read(READ_SIZE)
                if not chunk:
                    raise ConnectionError("connection closed during the TLS handshake") from None
                self._in.write(chunk)
        self._flush()
        await self.inner.drain()

    async def read(self, n: int = READ_SIZE, timeout: float | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                return self._ssl.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                chunk = await self.inner.read(READ_SIZE, None if deadline is None else deadline - loop.time())
                if not chunk:
                    return b""  # a ragged EOF ends the stream like a close_notify
                self._in.write(chunk)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._ssl.write(view)
            view = view[n:]
        self._flush()

    async def drain(self, timeout: float | None = None) -> None:
        await self.inner.drain(timeout)

    def close(self) -> None:
        try:
            self._ssl.unwrap()
        except (ssl.SSLError, ValueError, OSError):
            pass
        try:
            self._flush()
        except Exception:
            pass
        self.inner.close()

    @property
    def at_eof(self) -> bool:
        return bool(getattr(self.inner, "at_eof", False))
