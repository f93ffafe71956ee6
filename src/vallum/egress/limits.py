"""Rate limits and data budgets per registrable domain, behind a small interface.

`RateLimiter.check(key, now, nbytes, rate_limit, byte_budget)` answers whether one more request
carrying `nbytes` fits in the last minute and, if so, counts it. The in-memory limiter uses a
sliding-window counter (the current and the previous minute, the previous weighted by how much of
it still overlaps the window): O(1) memory per key. A shared (Redis-backed) limiter for several
replicas implements the same protocol. Time is passed in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class LimitResult:
    """The answer for one request. `exceeded` is "rate_limit", "data_budget" or None."""

    allowed: bool
    exceeded: str | None = None
    #: requests / bytes counted in the sliding window, including this request when allowed
    requests: float = 0.0
    bytes: float = 0.0
    #: seconds until the window has room again (a hint for Retry-After)
    retry_after: float = 0.0


@runtime_checkable
class RateLimiter(Protocol):
    def check(self, key: str, now: float, nbytes: int, rate_limit: int, byte_budget: int) -> LimitResult:
        """Count one request of `nbytes` for `key` if it fits; 0 limits are off."""
        ...


class _Window:
    __slots__ = ("cur_bytes", "cur_count", "prev_bytes", "prev_count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.cur_count = 0
        self.cur_bytes = 0
        self.prev_count = 0
        self.prev_bytes = 0

    def roll(self, now: float) -> None:
        if now - self.start >= 2 * WINDOW:
            self.prev_count = self.prev_bytes = 0
            self.cur_count = self.cur_bytes = 0
            self.start = now - ((now - self.start) % WINDOW)
        elif now - self.start >= WINDOW:
            self.prev_count, self.prev_bytes = self.cur_count, self.cur_bytes
            self.cur_count = self.cur_bytes = 0
            self.start += WINDOW


class InMemoryRateLimiter:
    """A per-process sliding-window limiter; thread-safe; forgets idle keys beyond `max_keys`."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys

    def check(self, key: str, now: float, nbytes: int, rate_limit: int, byte_budget: int) -> LimitResult:
        if rate_limit <= 0 and byte_budget <= 0:
            return LimitResult(True)
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                if len(self._windows) >= self.max_keys:
                    self._evict(now)
                w = self._windows[key] = _Window(now)
            w.roll(now)
            weight = max(0.0, 1.0 - (now - w.start) / WINDOW)
            count = w.prev_count * weight + w.cur_count
            sent = w.prev_bytes * weight + w.cur_bytes
            retry = max(0.0, w.start + WINDOW - now)
            if rate_limit > 0 and count + 1 > rate_limit:
                return LimitResult(False, "rate_limit", count, sent, retry)
            if byte_budget > 0 and sent + nbytes > byte_budget:
                return LimitResult(False, "data_budget", count, sent, retry)
            w.cur_count += 1
            w.cur_bytes += nbytes
            return LimitResult(True, None, count + 1, sent + nbytes)

    def _evict(self, now: float) -> None:
        stale = [k for k, w in self._windows.items() if now - w.start >= 2 * WINDOW]
        for k in stale:
            del self._windows[k]
        if len(self._windows) >= self.max_keys:
            # Still full of live keys: drop the oldest half rather than grow without bound.
            for k in sorted(self._windows, key=lambda k: self._windows[k].start)[: self.max_keys // 2]:
                del self._windows[k]
