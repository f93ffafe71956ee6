"""`vallum audit show` filters and time parsing; the audit config section and factory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auditkit import T0, new_log, record, vallum, vallum_inproc
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.audit.factory import open_audit_log
from vallum.audit.show import EntryFilter, entry_time, iter_entries, parse_time
from vallum.audit.verify import verify_log
from vallum.config import ConfigError, parse_config
from vallum.decisions import Principal

NOW = 1_800_000_000.0


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_parse_time_rfc3339_round_trip(dt):
    aware = dt.replace(tzinfo=UTC)
    assert parse_time(aware.isoformat().replace("+00:00", "Z"), NOW) == pytest.approx(aware.timestamp(), abs=1e-6)
    assert parse_time(dt.isoformat(), NOW) == pytest.approx(aware.timestamp(), abs=1e-6)  # no offset = UTC
    shifted = aware.astimezone(__import__("datetime").timezone(timedelta(hours=5, minutes=30)))
    assert parse_time(shifted.isoformat(), NOW) == pytest.approx(aware.timestamp(), abs=1e-6)


@settings(deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_parse_time_relative(n, unit):
    secs = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_time(f"{n}{unit}", NOW) == NOW - n * secs


@settings(deadline=None)
@given(st.text(max_size=20))
def test_parse_time_never_crashes_otherwise(text):
    try:
        v = parse_time(text, NOW)
    except ValueError:
        return
    assert isinstance(v, float)


def test_parse_time_examples():
    assert parse_time("2026-11-22", NOW) == datetime(2026, 11, 22, tzinfo=UTC).timestamp()
    assert parse_time("1795000000", NOW) == 1795000000.0
    with pytest.raises(ValueError):
        parse_time("yesterday", NOW)


def test_entry_time():
    assert entry_time({"ts": "2026-11-18T11:06:41.500000Z"}) == T0 + 1.5


@pytest.fixture
def populated(logdir: Path) -> Path:
    with new_log(logdir) as log:
        log.emit(record(0, action="allow"))
        log.emit(record(10, action="warn", principal=Principal(user="alice", session="s9")))
        log.emit(record(20, action="block", principal=Principal(user="bob", ip="10.0.0.1")))
        log.emit(record(30, action="block", principal=Principal(agent="agent:x")))
    return logdir


def decisions(path: Path, flt: EntryFilter) -> list[str]:
    return [e["request_id"] for _, e in iter_entries(path) if e["kind"] == "decision" and flt.matches(e)]


def test_filters(populated: Path):
    assert decisions(populated, EntryFilter()) == ["req-0", "req-10", "req-20", "req-30"]
    assert decisions(populated, EntryFilter(action="block")) == ["req-20", "req-30"]
    assert decisions(populated, EntryFilter(since=T0 + 10, until=T0 + 20)) == ["req-10", "req-20"]
    assert decisions(populated, EntryFilter(principal="alice")) == ["req-10"]
    assert decisions(populated, EntryFilter(principal="ip:10.0.0.1")) == ["req-20"]
    assert decisions(populated, EntryFilter(principal="user:10.0.0.1")) == []
    assert decisions(populated, EntryFilter(rule="dlp.*")) == ["req-10", "req-20", "req-30"]
    assert decisions(populated, EntryFilter(rule="dlp.github_pat", action="warn")) == ["req-10"]
    assert decisions(populated, EntryFilter(rule="inj.*")) == []


def test_show_cli(populated: Path):
    r = vallum("audit", "show", str(populated), "--action", "block", "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["request_id"] for e in got] == ["req-20", "req-30"]
    r = vallum_inproc("audit", "show", str(populated), "--principal", "alice", "--since", "2026-11-18T11:06:45Z")
    assert r.exit_code == 0
    shown = [x for x in r.stdout.splitlines() if "#" in x]
    assert len(shown) == 1 and "user=alice" in shown[0] and "warn" in shown[0]
    assert vallum_inproc("audit", "show", str(populated), "--since", "not-a-time").exit_code == 2


def test_config_section_strict_and_defaults():
    cfg = parse_config({})
    assert cfg.audit.checkpoint_every == 1000 and cfg.audit.queue_full == "block"
    assert cfg.audit.resolve_dir(cfg.data_dir) == Path("./vallum-data/audit")
    full = parse_config(
        {
            "audit": {
                "dir": "/x",
                "checkpoint_every": 10,
                "rotate_bytes": 2048,
                "keep_files": 3,
                "queue_size": 5,
                "queue_full": "drop",
                "fsync_every": 10,
                "fsync_interval_ms": 5,
                "key_path": "/k",
                "exporters": {
                    "syslog": {"address": "127.0.0.1:514", "protocol": "tcp", "app_name": "v", "facility": 17},
                    "webhook": {"url": "http://127.0.0.1:9/h", "headers": {"A": "b"}, "max_queue": 10, "retries": 1},
                    "otlp": {"endpoint": "http://127.0.0.1:4318", "headers": {}, "service_name": "s"},
                },
            }
        }
    )
    assert full.audit.exporters.syslog.protocol == "tcp"
    for bad in (
        {"queue_full": "maybe"},
        {"exporters": {"syslog": {"address": "nohost"}}},
        {"exporters": {"webhook": {"url": "ftp://x"}}},
        {"unknown": 1},
        {"exporters": {"syslog": {"address": "127.0.0.1:514", "protcol": "udp"}}},
    ):
        with pytest.raises(ConfigError):
            parse_config({"audit": bad})


def test_factory(tmp_path: Path):
    cfg = parse_config({"data_dir": str(tmp_path), "audit": {"checkpoint_every": 2}})
    log = open_audit_log(cfg)
    assert log is not None
    with log:
        for i in range(3):
            assert log.emit(record(i))
    assert verify_log(tmp_path / "audit").ok
    assert open_audit_log(parse_config({"audit": {"enabled": False}})) is None
    with pytest.raises(ValueError, match="mode: audit"):
        open_audit_log(parse_config({"data_dir": str(tmp_path), "audit": {"queue_full": "drop"}}))
    log = open_audit_log(
        parse_config({"mode": "audit", "data_dir": str(tmp_path / "b"), "audit": {"queue_full": "drop"}})
    )
    assert log is not None and log.queue_full == "drop"
    log.close()


def test_yaml_examples_in_the_docs_are_valid_config():
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "audit-log.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        parse_config(yaml.safe_load(block))


@settings(deadline=None)
@given(st.floats(min_value=0, max_value=7_000_000_000, allow_nan=False))
def test_entry_timestamps_round_trip(ts):
    from vallum.audit.entry import rfc3339

    text = rfc3339(ts)
    assert len(text) == 27 and text.endswith("Z")
    assert entry_time({"ts": text}) == pytest.approx(ts, abs=1e-6)
    assert text[:19] == datetime.fromtimestamp(round(ts * 1e6) // 10**6, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_decision_sink_for_several_processes_shares_the_key_and_verifies_as_a_tree(tmp_path: Path):
    from vallum.audit.factory import build_decision_sink

    cfg = parse_config({"data_dir": str(tmp_path)})
    main = build_decision_sink(cfg, "vallum run")
    wrap = build_decision_sink(cfg, "mcp github")  # the main directory is taken: its own chain
    try:
        assert main.emit(record(1)) and wrap.emit(record(2))
    finally:
        for sink in (main, wrap):
            sink.sinks[0].close()
    root = tmp_path / "audit"
    sub = root / "mcp-github"
    assert (sub / "audit-000001.jsonl").exists() and not (sub / "audit.key").exists()
    assert (sub / "audit.pub").read_bytes() == (root / "audit.pub").read_bytes()
    ok = vallum_inproc("audit", "verify", str(root))
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("OK:") == 2
    shown = vallum_inproc("audit", "show", str(root), "--json", "--kind", "decision")
    assert sorted(json.loads(x)["request_id"] for x in shown.stdout.splitlines()) == ["req-1", "req-2"]
    path = sub / "audit-000001.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"action":"block"', b'"action":"allow"', 1))
    bad = vallum_inproc("audit", "verify", str(root), "--key", str(root / "audit.pub"))
    assert bad.exit_code == 1
    assert "first bad file: mcp-github/audit-000001.jsonl" in bad.stdout
