"""`PlainStream` read timeouts: one lazily re-armed timer per stream, cancellation like asyncio.timeout."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from vallum.egress.streams import PlainStream


async def pair() -> tuple[PlainStream, socket.socket]:
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    b.setblocking(False)
    return PlainStream(reader, writer), b


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_read_times_out_and_data_in_time_is_returned():
    async def main():
        s, peer = await pair()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, peer.send, b"hello")
        assert await s.read(100, timeout=1.0) == b"hello"
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError):
            await s.read(100, timeout=0.1)
        assert 0.08 < time.perf_counter() - t0 < 1.0
        s.close()
        peer.close()

    run(main())


def test_timer_follows_the_latest_deadline_both_ways():
    async def main():
        s, peer = await pair()
        loop = asyncio.get_running_loop()
        # many quick reads under a long timeout: the one timer is not re-armed for each
        for i in range(50):
            loop.call_soon(peer.send, b"x%d" % i)
            assert (await s.read(100, timeout=30.0)).startswith(b"x")
        long_timer = s._timer
        # a shorter timeout than the armed timer moves it earlier…
        with pytest.raises(TimeoutError):
            await s.read(100, timeout=0.05)
        assert long_timer.cancelled()
        s.close()
        peer.close()
        # …and a read that keeps extending its deadline is never cut short by an older timer
        s, peer = await pair()
        for _ in range(4):
            loop.call_later(0.06, peer.send, b"tick")
            assert await s.read(100, timeout=0.1) == b"tick"  # 4 × 0.06 s > the first 0.1 s deadline
        s.close()
        peer.close()

    run(main())


def test_outside_cancellation_stays_a_cancellation():
    async def main():
        s, peer = await pair()

        async def reader():
            return await s.read(100, timeout=5.0)

        t = asyncio.ensure_future(reader())
        await asyncio.sleep(0.02)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        s.close()
        peer.close()

    run(main())


def test_no_timer_left_behind_after_close():
    async def main():
        s, peer = await pair()
        peer.send(b"data")
        assert await s.read(100, timeout=60.0) == b"data"
        timer = s._timer
        assert timer is not None
        s.close()
        assert timer.cancelled() and s._timer is None
        peer.close()

    run(main())


def test_untimed_reads_and_eof():
    async def main():
        s, peer = await pair()
        peer.send(b"abc")
        assert await s.read(100) == b"abc"
        peer.close()
        assert await s.read(100, timeout=1.0) == b""
        s.close()

    run(main())
