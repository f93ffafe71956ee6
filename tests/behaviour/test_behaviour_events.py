"""Event validation (INTERFACES §7), timestamps and durations, including property-based tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.behaviour.events import EventError, format_ts, parse_ts, validate_event
from vallum.behaviour.windows import parse_duration

NOW = 1_790_000_000.0


def test_minimal_and_full_events():
    e = validate_event({"type": "page.view", "ts": "2026-11-20T19:02:11.250Z", "user": "u"})
    assert e.type == "page.view" and e.user == "u" and e.id.startswith("gen-")
    assert format_ts(e.ts) == "2026-11-20T19:02:11.250Z"
    full = validate_event({
        "type": "llm.request", "ts": 1763665331250, "id": "evt-1", "user": "u_7781", "session": "s",
        "conversation": "c1", "api_key": "k", "agent": "agent:support", "ip": "192.0.2.44",
        "user_agent": "Mozilla/5.0", "accept_language": "en-GB",
        "attrs": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 180, "cost_usd": 0.012,
                  "refused": False, "guard_score": 0.3, "custom": {"nested": [1, 2]}}})
    assert full.id == "evt-1" and full.ip == "192.0.2.44" and full.attrs["cost_usd"] == 0.012
    assert full.to_dict()["ts"] == "2025-11-20T19:02:11.250Z"


def test_login_failed_needs_no_user_but_others_do():
    assert validate_event({"type": "auth.login_failed", "ts": 0}).user is None
    with pytest.raises(EventError, match="missing required field 'user'"):
        validate_event({"type": "auth.login", "ts": 0})


@pytest.mark.parametrize(("event", "message"), [
    ([], "must be a JSON object"),
    ({"ts": 0, "user": "u"}, "missing required field 'type'"),
    ({"type": 5, "ts": 0, "user": "u"}, "type must be a string"),
    ({"type": "login", "ts": 0, "user": "u"}, "unknown event type 'login'"),
    ({"type": "x.Bad Type", "ts": 0, "user": "u"}, "custom event type"),
    ({"type": "page.view", "user": "u"}, "missing required field 'ts'"),
    ({"type": "page.view", "ts": "yesterday", "user": "u"}, "not RFC 3339"),
    ({"type": "page.view", "ts": True, "user": "u"}, "not a boolean"),
    ({"type": "page.view", "ts": -5, "user": "u"}, "out of range"),
    ({"type": "page.view", "ts": 0, "user": 17}, "user must be a string"),
    ({"type": "page.view", "ts": 0, "user": ""}, "user must be 1.."),
    ({"type": "page.view", "ts": 0, "user": "u", "ip": "999.1.1.1"}, "not an IPv4 or IPv6"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": []}, "attrs must be an object"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": {"cost_usd": "1"}}, "attrs.cost_usd must be a number"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": {"cost_usd": -1}}, "must not be negative"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": {"refused": "no"}}, "attrs.refused must be true or false"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": {"guard_score": 1.5}}, "between 0 and 1"),
    ({"type": "page.view", "ts": 0, "user": "u", "attrs": {"gen_ai.tool.name": 3}}, "must be a string"),
    ({"type": "page.view", "ts": 0, "user": "u", "colour": "red"}, "unknown field 'colour'"),
])
def test_bad_events_name_the_problem(event, message):
    with pytest.raises(EventError, match=message):
        validate_event(event)


def test_custom_types_with_x_prefix():
    assert validate_event({"type": "x.app.export", "ts": 0, "user": "u"}).type == "x.app.export"


def test_time_bounds_against_now():
    validate_event({"type": "page.view", "ts": (NOW + 60) * 1000, "user": "u"}, now=NOW, max_future_s=900)
    with pytest.raises(EventError, match="in the future"):
        validate_event({"type": "page.view", "ts": (NOW + 3600) * 1000, "user": "u"}, now=NOW, max_future_s=900)
    with pytest.raises(EventError, match="older than"):
        validate_event({"type": "page.view", "ts": (NOW - 500 * 86400) * 1000, "user": "u"}, now=NOW,
                       max_past_s=400 * 86400)


def test_rfc3339_offsets_and_fractions():
    assert parse_ts("2026-11-20T20:02:11+01:00") == parse_ts("2026-11-20T19:02:11Z")
    assert parse_ts("2026-11-20T19:02:11.5Z") == parse_ts("2026-11-20T19:02:11Z") + 0.5
    assert parse_ts("2026-11-20T19:02:11.123456789Z") == parse_ts("2026-11-20T19:02:11Z") + 0.123
    with pytest.raises(EventError):
        parse_ts("2026-11-20T19:02:11")  # no offset: ambiguous
    with pytest.raises(EventError):
        parse_ts("2026-02-30T00:00:00Z")


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31),
                    timezones=st.just(UTC)))
def test_rfc3339_round_trip(dt):
    dt = dt.replace(microsecond=(dt.microsecond // 1000) * 1000)
    s = format_ts(dt.timestamp())
    assert parse_ts(s) == pytest.approx(dt.timestamp(), abs=1e-3)
    assert parse_ts(s) == parse_ts(round(dt.timestamp() * 1000))


@given(st.integers(min_value=0, max_value=253402300799999))
def test_epoch_millis_round_trip(ms):
    assert round(parse_ts(ms) * 1000) == ms
    assert round(parse_ts(format_ts(parse_ts(ms))) * 1000) == ms


@given(st.integers(min_value=-14 * 60, max_value=14 * 60).filter(lambda m: abs(m) % 60 < 60))
def test_offsets_shift_the_instant(minutes):
    base = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    sign = "+" if minutes >= 0 else "-"
    local = base + timedelta(minutes=minutes)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    assert parse_ts(text) == base.timestamp()


@settings(max_examples=300)
@given(st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=40), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_validation_never_raises_anything_but_event_error(value):
    for obj in ({"type": "page.view", "ts": value, "user": "u"}, {"type": value, "ts": 0, "user": "u"},
                {"type": "page.view", "ts": 0, "user": value}, {"type": "page.view", "ts": 0, "user": "u",
                                                                "attrs": {"cost_usd": value}},
                {"type": "page.view", "ts": 0, "user": "u", "ip": value}, value):
        try:
            validate_event(obj, now=NOW)
        except EventError:
            pass


@pytest.mark.parametrize(("text", "secs"), [("10m", 600), ("1h", 3600), ("30s", 30), ("7d", 604800),
                                            ("2w", 1209600), ("1h30m", 5400), ("500ms", 0.5), (90, 90)])
def test_durations(text, secs):
    assert parse_duration(text) == secs


@pytest.mark.parametrize("bad", ["", "ten minutes", "-5m", "0s", True, None, "5y"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(["s", "m", "h", "d"])), min_size=1, max_size=4))
def test_compound_durations_add_up(parts):
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = "".join(f"{n}{u}" for n, u in parts)
    total = sum(n * unit[u] for n, u in parts)
    if total == 0:
        with pytest.raises(ValueError):
            parse_duration(text)
    else:
        assert parse_duration(text) == total
