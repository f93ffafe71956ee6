"""Sliding windows and baselines on event time. Pure: time is always passed in (seconds).

- `BucketWindow`: count / sum / max over the last `window` seconds, kept in `BUCKETS` buckets, so
  memory stays bounded however many events arrive. The window edge is accurate to one bucket
  (window / 60): an entry is counted while its bucket overlaps the window.
- `DistinctWindow`: distinct values seen in the last `window` seconds (exact).
- `HourlyBaseline`: per-hour totals of a metric and their percentiles over the entity's history.
- `Ewma`: exponentially weighted mean and variance of a per-event value.
- `Reservoir`: a bounded sample for cohort percentiles.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, deque
from typing import Any

BUCKETS = 60

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_COMPOUND = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """`"10m"`, `"1h30m"`, `"1h"`, `"30s"`, `"7d"`, `"2w"` or a number of seconds → seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 10m, 1h, 30s or a number of seconds")
    if isinstance(value, int | float):
        secs = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            secs = float(m.group(1)) * _UNIT[m.group(2)]
        elif _COMPOUND.match(value.strip()):
            secs = sum(float(n) * _UNIT[u] for n, u in _PART.findall(value))
        else:
            raise ValueError(f"bad duration {value!r}: expected e.g. 10m, 1h30m, 30s, 7d")
    else:
        raise ValueError("a duration must be like 10m, 1h, 30s or a number of seconds")
    if not math.isfinite(secs) or secs <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return secs


class BucketWindow:
    """Count, sum and max of values over a sliding window of event time."""

    __slots__ = ("_buckets", "_count", "_sum", "width")

    def __init__(self, window: float) -> None:
        self.width = window / BUCKETS
        # each bucket: [index, count, sum, max]
        self._buckets: deque[list[Any]] = deque()
        self._count = 0
        self._sum = 0.0

    def _evict(self, now: float) -> None:
        low = int(now // self.width) - BUCKETS
        b = self._buckets
        while b and b[0][0] <= low:
            _, c, s, _m = b.popleft()
            self._count -= c
            self._sum -= s

    def add(self, ts: float, value: float = 1.0) -> None:
        idx = int(ts // self.width)
        b = self._buckets
        if b and b[-1][0] == idx:
            last = b[-1]
            last[1] += 1
            last[2] += value
            if value > last[3]:
                last[3] = value
        elif not b or b[-1][0] < idx:
            b.append([idx, 1, value, value])
        else:
            # a late event: find or create its bucket (rare; events mostly arrive in order)
            for pos in range(len(b) - 1, -1, -1):
                bucket = b[pos]
                if bucket[0] == idx:
                    bucket[1] += 1
                    bucket[2] += value
                    bucket[3] = max(bucket[3], value)
                    break
                if bucket[0] < idx:
                    b.insert(pos + 1, [idx, 1, value, value])
                    break
            else:
                b.appendleft([idx, 1, value, value])
        self._count += 1
        self._sum += value

    def count(self, now: float) -> int:
        self._evict(now)
        return self._count

    def sum(self, now: float) -> float:
        self._evict(now)
        # running sums of floats drift; snap tiny residues to zero
        return 0.0 if abs(self._sum) < 1e-9 else self._sum

    def max(self, now: float) -> float:
        self._evict(now)
        return max((bk[3] for bk in self._buckets), default=0.0)


class DistinctWindow:
    """Distinct values seen in the last `window` seconds of event time."""

    __slots__ = ("_last", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: OrderedDict[Any, float] = OrderedDict()

    def add(self, ts: float, value: Any) -> None:
        prev = self._last.get(value)
        if prev is None or ts >= prev:
            self._last[value] = ts
            self._last.move_to_end(value)

    def _evict(self, now: float) -> None:
        low = now - self.window
        d = self._last
        while d:
            _k, ts = next(iter(d.items()))
            if ts > low:
                break
            d.popitem(last=False)

    def count(self, now: float) -> int:
        self._evict(now)
        return len(self._last)

    def values(self, now: float) -> list[Any]:
        self._evict(now)
        return list(self._last)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for an empty list."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * (q / 100.0)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


class HourlyBaseline:
    """Totals of a metric per active hour; percentiles over the last `keep` completed active hours."""

    __slots__ = ("_cache", "_cur_hour", "_cur_total", "history")

    def __init__(self, keep: int = 24 * 30) -> None:
        self.history: deque[float] = deque(maxlen=keep)
        self._cur_hour = -1
        self._cur_total = 0.0
        self._cache: dict[int, float] = {}

    def add(self, ts: float, value: float) -> None:
        hour = int(ts // 3600)
        if hour > self._cur_hour:
            if self._cur_hour >= 0:
                self.history.append(self._cur_total)
                self._cache.clear()
            self._cur_hour = hour
            self._cur_total = 0.0
        self._cur_total += value  # a late event from an older hour counts towards the current one

    def hours(self) -> int:
        return len(self.history)

    def current(self, now: float) -> float:
        return self._cur_total if int(now // 3600) == self._cur_hour else 0.0

    def pct(self, q: int) -> float:
        v = self._cache.get(q)
        if v is None:
            v = percentile(sorted(self.history), q)
            self._cache[q] = v
        return v


class Ewma:
    """Exponentially weighted mean and variance (West's incremental form)."""

    __slots__ = ("alpha", "mean", "n", "var")

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def add(self, x: float) -> None:
        self.n += 1
        if self.n == 1:
            self.mean = x
            return
        diff = x - self.mean
        # warm-up: a plain running mean until 1/alpha values are in, so the first value does not
        # dominate a slow average for hundreds of samples
        alpha = max(self.alpha, 1.0 / self.n)
        incr = alpha * diff
        self.mean += incr
        self.var = (1 - alpha) * (self.var + diff * incr)

    def zscore(self, x: float) -> float:
        if self.n < 2:
            return 0.0
        sd = math.sqrt(self.var)
        return (x - self.mean) / sd if sd > 1e-12 else (0.0 if x == self.mean else 100.0)


class Reservoir:
    """The last `size` values (a sliding sample) with cached percentiles, for cohort baselines."""

    __slots__ = ("_dirty", "_sorted", "values")

    def __init__(self, size: int = 5000) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []
        self._dirty = 0

    def add(self, x: float) -> None:
        self.values.append(x)
        self._dirty += 1

    def pct(self, q: float) -> float:
        # re-sort at most every 64 additions: cohort percentiles move slowly
        if self._dirty > 64 or (self._dirty and len(self._sorted) < 64):
            self._sorted = sorted(self.values)
            self._dirty = 0
        return percentile(self._sorted, q)

    def __len__(self) -> int:
        return len(self.values)
