"""Sliding windows and baselines on event time, checked against brute force."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.behaviour.windows import BUCKETS, BucketWindow, DistinctWindow, Ewma, HourlyBaseline, percentile

times = st.lists(st.floats(min_value=0, max_value=20_000, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=200)
@given(times, st.floats(min_value=60, max_value=5000))
def test_bucket_window_count_is_exact_up_to_one_bucket(ts_list, window):
    ts_list = sorted(ts_list)
    w = BucketWindow(window)
    for t in ts_list:
        w.add(t, 2.0)
    now = ts_list[-1]
    width = window / BUCKETS
    strictly_inside = sum(1 for t in ts_list if t > now - window + width)
    maybe = sum(1 for t in ts_list if t > now - window - width)
    assert strictly_inside <= w.count(now) <= maybe
    assert w.sum(now) == pytest.approx(2.0 * w.count(now))


@given(times, st.floats(min_value=60, max_value=5000))
def test_bucket_window_forgets_everything_after_a_window(ts_list, window):
    w = BucketWindow(window)
    for t in ts_list:
        w.add(t)
    assert w.count(max(ts_list) + window * 1.05) == 0
    assert w.sum(max(ts_list) + window * 1.05) == 0.0


def test_bucket_window_late_events_land_in_their_bucket():
    w = BucketWindow(600)
    w.add(1000.0)
    w.add(1300.0)
    w.add(1100.0)  # late
    assert w.count(1300.0) == 3
    assert w.count(1000.0 + 600 + 20) == 2  # the first bucket has left the window
    assert w.max(1300.0) == 1.0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=10_000, allow_nan=False), st.integers(0, 8)),
                min_size=1, max_size=100), st.floats(min_value=1, max_value=3000))
def test_distinct_window_is_exact(items, window):
    items = sorted(items)
    d = DistinctWindow(window)
    for t, v in items:
        d.add(t, v)
    now = items[-1][0]
    last: dict[int, float] = {}
    for t, v in items:
        last[v] = t
    assert d.count(now) == sum(1 for t in last.values() if t > now - window)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=100))
def test_percentile_bounds(values, q):
    s = sorted(values)
    p = percentile(s, q)
    assert s[0] - 1e-6 <= p <= s[-1] + 1e-6
    assert percentile(s, 0) == s[0] and percentile(s, 100) == s[-1]


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([], 99) == 0.0


def test_hourly_baseline_closes_hours():
    b = HourlyBaseline()
    for h in range(10):
        b.add(h * 3600 + 5, 1.0 + h)
        b.add(h * 3600 + 50, 1.0)
    assert b.hours() == 9  # the tenth hour is still open
    assert b.current(9 * 3600 + 100) == 11.0
    assert b.current(11 * 3600) == 0.0
    assert b.pct(100) == 10.0 and b.pct(0) == 2.0  # hours 0..8 total h + 2


def test_ewma_warms_up_as_a_plain_mean_then_tracks():
    e = Ewma(alpha=0.01)
    for x in (100.0, 200.0, 300.0):
        e.add(x)
    assert e.mean == pytest.approx(200.0)
    for _ in range(2000):
        e.add(1000.0)
    assert e.mean == pytest.approx(1000.0, rel=1e-3)
    assert abs(e.zscore(1000.0)) < 0.01
    assert Ewma().zscore(5.0) == 0.0
