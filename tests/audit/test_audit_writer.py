"""The writer: entry content, redaction defence, checkpoints, rotation, retention, queue policy."""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from auditkit import T0, entries_of, new_log, record, write_log

from vallum.audit.keys import load_public_key
from vallum.audit.verify import verify_log
from vallum.audit.writer import AuditError, AuditLog
from vallum.decisions import DecisionRecord, FanoutSink, Principal
from vallum.detection.model import Action, Finding
from vallum.metrics import VallumMetrics

SEG1 = "audit-000001.jsonl"


def test_decision_entry_holds_every_documented_member(logdir: Path):
    with new_log(logdir) as log:
        rec = record(1, reason="policy", extra={"bytes": 12})
        rec.principal = Principal(user="alice", session="s1", agent="agent:a", api_key="k_12", ip="127.0.0.1")
        assert log.emit(rec)
    entries = entries_of(logdir / SEG1)
    assert [e["kind"] for e in entries] == ["start", "decision", "checkpoint"]
    e = entries[1]
    assert e["v"] == 1 and e["seq"] == 1 and e["prev"] == entries[0]["hash"]
    assert e["ts"] == "2026-11-18T11:06:41.000000Z"  # T0 + 1 s, UTC
    assert e["request_id"] == "req-1" and e["transport"] == "egress.http" and e["action"] == "block"
    assert e["destination"] == "https://api.example.com/v1/x"
    assert e["principal"] == {
        "user": "alice",
        "session": "s1",
        "agent": "agent:a",
        "api_key": "k_12",
        "ip": "127.0.0.1",
    }
    assert e["rules"] == ["dlp.github_pat"]
    assert e["findings"][0]["evidence"] == "ghp_…[redacted]"
    assert e["duration_ms"] == 0.5 and e["reason"] == "policy" and e["extra"] == {"bytes": 12}
    assert entries[2]["reason"] == "close" and entries[2]["key_id"] == entries[0]["key_id"]


def test_defence_in_depth_redaction(logdir: Path):
    token = "ghp_R8x2kLm9QwErTy7uIoP3aSdFgHjK1zXcVbN4"
    aws = "AKIAIOSFODNN7EXAMPLEwJalrXUtnFEMIK7MDENG"
    leaky = Finding("dlp.github_pat", "credential", "critical", Action.BLOCK, f"found {token}", evidence=token)
    metrics = VallumMetrics()
    with new_log(logdir, metrics=metrics) as log:
        log.emit(
            DecisionRecord(
                ts=T0,
                transport="mcp.stdio",
                action="block",
                findings=[leaky],
                destination=f"https://bob:hunter2hunter2@api.example.com/?access_token={aws}",
                reason="Authorization: Bearer sk-abcdefghijklmnopqrstuvwx1234",
                extra={"args": {"password": "correct horse battery staple", "note": f"key {aws}"}},
                principal=Principal(api_key=token),
            )
        )
    raw = (logdir / SEG1).read_text()
    for secret in (token, aws, "hunter2hunter2", "abcdefghijklmnopqrstuvwx1234", "correct horse"):
        assert secret not in raw
    e = entries_of(logdir / SEG1)[1]
    assert e["findings"][0]["evidence"].endswith("[redacted]")
    assert e["destination"].startswith("https://bob:")
    assert "api.example.com" in e["destination"]
    assert metrics.registry.get_sample_value("vallum_audit_redactions_total") >= 6
    assert verify_log(logdir).ok


def test_ordinary_values_are_not_redacted(logdir: Path):
    with new_log(logdir) as log:
        log.emit(
            record(
                2,
                destination="https://api.openai.com/v1/chat/completions",
                extra={"prompt_hash": "a" * 20 + "0123456789abcdef" * 2 + "b" * 12, "model": "gpt-4o-mini"},
            )
        )
    e = entries_of(logdir / SEG1)[1]
    assert e["destination"] == "https://api.openai.com/v1/chat/completions"
    assert e["extra"]["model"] == "gpt-4o-mini"
    assert len(e["extra"]["prompt_hash"]) == 64


def test_odd_values_are_logged_and_verify(logdir: Path):
    with new_log(logdir) as log:
        log.emit(
            record(
                3,
                extra={
                    "nan": float("nan"),
                    "tiny": 1e-9,
                    "big": 1e300,
                    "s": "bad \ud800 surrogate",
                    "t": (1, 2),
                    "obj": object(),
                    "f": 2.0,
                },
                duration_ms=1e-9,
            )
        )
    e = entries_of(logdir / SEG1)[1]
    assert e["extra"]["f"] == 2 and e["extra"]["t"] == [1, 2]
    assert e["extra"]["nan"] == "nan" and e["extra"]["s"] == "bad \ufffd surrogate"
    assert verify_log(logdir).ok


def test_checkpoint_every_n_entries(logdir: Path):
    write_log(logdir, 95, checkpoint_every=20)
    entries = entries_of(logdir / SEG1)
    cps = [e for e in entries if e["kind"] == "checkpoint"]
    assert [c["reason"] for c in cps] == ["interval"] * 4 + ["close"]
    assert all(c["entries"] == 20 for c in cps[:4]) and cps[-1]["entries"] == 15
    gaps = [b["seq"] - a["seq"] for a, b in itertools.pairwise(cps)]
    assert gaps[:3] == [21, 21, 21]


def test_key_file_and_public_key(logdir: Path):
    write_log(logdir, 2)
    key = logdir / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = load_public_key(logdir / "audit.pub")
    assert (logdir / "audit.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    from vallum.audit.keys import key_id

    assert entries_of(logdir / SEG1)[0]["key_id"] == key_id(pub)


def test_configured_key_path_and_restart_reuses_key(tmp_path: Path, logdir: Path):
    key = tmp_path / "keys" / "signing.pem"
    write_log(logdir, 1, key_path=key)
    assert key.exists() and not (logdir / "audit.key").exists()
    first = (logdir / "audit.pub").read_bytes()
    write_log(logdir, 1, key_path=key)
    assert (logdir / "audit.pub").read_bytes() == first
    entries = entries_of(logdir / SEG1)
    assert [e["kind"] for e in entries] == ["start", "decision", "checkpoint", "start", "decision", "checkpoint"]
    assert verify_log(logdir).ok


def test_new_key_after_key_loss_is_recorded_and_both_keys_verify(logdir: Path, tmp_path: Path):
    write_log(logdir, 2)
    old_pub = tmp_path / "old.pub"
    old_pub.write_bytes((logdir / "audit.pub").read_bytes())
    (logdir / "audit.key").unlink()
    write_log(logdir, 2)
    start2 = [e for e in entries_of(logdir / SEG1) if e["kind"] == "start"][1]
    assert start2["key_change"]["from"] != start2["key_change"]["to"]
    assert verify_log(logdir).ok  # audit.pub + audit.pub.<old id> beside the log
    r = verify_log(logdir, [old_pub])
    assert r.status == "tampered" and "not a trusted key" in r.problem.message
    assert verify_log(logdir, [old_pub, logdir / "audit.pub"]).ok


def test_rotation_continues_the_chain(logdir: Path):
    write_log(logdir, 200, rotate_bytes=8 * 1024, checkpoint_every=50)
    files = sorted(logdir.glob("audit-*.jsonl"))
    assert len(files) >= 5
    prev_last = None
    for f in files:
        entries = entries_of(f)
        assert f.stat().st_size < 8 * 1024 + 2048
        if prev_last is not None:
            assert entries[0]["kind"] == "rotate" and entries[0]["prev"] == prev_last["hash"]
            assert entries[0]["seq"] == prev_last["seq"] + 1
        if f != files[-1]:
            assert entries[-1]["kind"] == "checkpoint" and entries[-1]["reason"] == "rotate"
        prev_last = entries[-1]
    r = verify_log(logdir)
    assert r.ok and r.files == [f.name for f in files]


def test_retention_prunes_old_files_and_records_it(logdir: Path):
    write_log(logdir, 300, rotate_bytes=8 * 1024, keep_files=3)
    files = sorted(logdir.glob("audit-*.jsonl"))
    assert len(files) == 3
    assert files[0].name != SEG1
    r = verify_log(logdir)
    assert r.ok, r.to_dict()
    assert r.first_seq > 0 and any("pruned" in n for n in r.notes)


def test_queue_full_block_refuses_and_records_refusals(logdir: Path):
    metrics = VallumMetrics()
    log = new_log(logdir, queue_size=5, metrics=metrics)
    log.start()
    gate = threading.Event()
    original = log._add_decision

    def slow(rec):
        gate.wait(10)
        original(rec)

    log._add_decision = slow  # stall the writer so the queue fills
    results = [log.emit(record(i)) for i in range(50)]
    assert results.count(False) >= 40  # at most queue + in-flight were accepted
    assert results[:5] == [True] * 5
    assert metrics.registry.get_sample_value("vallum_audit_refused_total") == results.count(False)
    assert metrics.registry.get_sample_value("vallum_audit_queue_full_policy", {"policy": "block"}) == 1
    gate.set()
    log.close()
    entries = entries_of(logdir / SEG1)
    refused = [e for e in entries if e["kind"] == "refused"]
    assert sum(e["count"] for e in refused) == results.count(False)
    assert len([e for e in entries if e["kind"] == "decision"]) == results.count(True)
    assert verify_log(logdir).ok


def test_queue_full_drop_accepts_counts_and_records_drops(logdir: Path):
    metrics = VallumMetrics()
    log = new_log(logdir, queue_size=5, queue_full="drop", metrics=metrics)
    log.start()
    gate = threading.Event()
    original = log._add_decision
    log._add_decision = lambda rec: (gate.wait(10), original(rec))
    results = [log.emit(record(i)) for i in range(50)]
    assert all(results)
    assert log.dropped >= 40
    assert metrics.registry.get_sample_value("vallum_audit_dropped_total") == log.dropped
    assert metrics.registry.get_sample_value("vallum_audit_queue_full_policy", {"policy": "drop"}) == 1
    gate.set()
    log.close()
    entries = entries_of(logdir / SEG1)
    assert sum(e["count"] for e in entries if e["kind"] == "dropped") == log.dropped
    assert len([e for e in entries if e["kind"] == "decision"]) == 50 - log.dropped


def test_emit_refused_before_start_and_after_close(logdir: Path):
    log = new_log(logdir)
    assert log.emit(record(0)) is False
    log.start()
    assert log.emit(record(1)) is True
    log.close()
    assert log.emit(record(2)) is False
    # a refused record makes FanoutSink refuse: the transport fails closed
    assert FanoutSink(log).emit(record(3)) is False


def test_writer_failure_fails_closed(logdir: Path):
    metrics = VallumMetrics()
    log = new_log(logdir, metrics=metrics)
    log.start()
    os.close(log._fd)  # the disk "goes away" under the writer
    log._fd = os.open(os.devnull, os.O_RDONLY)
    log.emit(record(0))
    assert log.flush(5) is False
    deadline = time.time() + 5
    while log.failed is None and time.time() < deadline:
        time.sleep(0.01)
    assert log.failed is not None
    assert log.emit(record(1)) is False
    assert metrics.registry.get_sample_value("vallum_audit_writer_errors_total") == 1
    log.close()


def test_one_writer_per_directory(logdir: Path):
    with new_log(logdir), pytest.raises(AuditError, match="another writer"):
        new_log(logdir).start()


def test_flush_makes_entries_durable_and_visible(logdir: Path):
    with new_log(logdir, fsync_interval_ms=10_000, fsync_every=10_000) as log:
        for i in range(10):
            log.emit(record(i))
        assert log.flush(5)
        assert len(entries_of(logdir / SEG1)) == 11
        r = verify_log(logdir)
        assert r.ok and any("writer is running" in n for n in r.notes)


def test_many_threads_emit_concurrently(logdir: Path):
    with new_log(logdir, checkpoint_every=100) as log:

        def work(t: int) -> None:
            for i in range(300):
                assert log.emit(record(t * 1000 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    entries = entries_of(logdir / SEG1)
    ids = [e["request_id"] for e in entries if e["kind"] == "decision"]
    assert len(ids) == 1800 == len(set(ids))
    assert verify_log(logdir).ok


def test_entries_are_json_lines(logdir: Path):
    write_log(logdir, 5)
    for line in (logdir / SEG1).read_bytes().splitlines():
        assert isinstance(json.loads(line), dict)


def test_rejects_bad_settings(logdir: Path):
    with pytest.raises(ValueError):
        AuditLog(logdir, queue_full="ignore")
    with pytest.raises(ValueError):
        AuditLog(logdir, checkpoint_every=0)


def test_every_accepted_decision_is_logged_even_when_close_races_emit(logdir: Path):
    log = new_log(logdir)
    log.start()
    accepted = [0] * 4
    go = threading.Event()

    def work(t: int) -> None:
        go.wait()
        for i in range(5000):
            if log.emit(record(t * 10_000 + i)):
                accepted[t] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    go.set()
    time.sleep(0.01)
    log.close()  # while the producers are still emitting
    for th in threads:
        th.join()
    entries = entries_of(logdir / SEG1)
    assert len([e for e in entries if e["kind"] == "decision"]) == sum(accepted)
    assert entries[-1]["kind"] == "checkpoint" and entries[-1]["reason"] == "close"
    assert verify_log(logdir).ok
