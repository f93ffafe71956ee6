"""Crash and restart: a SIGKILLed writer, torn lines, and a chain that continues honestly."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from auditkit import entries_of, lines_of, new_log, record, vallum, vallum_inproc, write_log
from cryptography.hazmat.primitives import serialization

from vallum.audit.canonical import canonical_bytes, entry_line
from vallum.audit.entry import checkpoint_message
from vallum.audit.verify import verify_log

SEG1 = "audit-000001.jsonl"

WRITER = r"""
import sys, time
from vallum.audit.writer import AuditLog
from vallum.decisions import DecisionRecord
from vallum.metrics import VallumMetrics
log = AuditLog(sys.argv[1], checkpoint_every=50, fsync_interval_ms=5, metrics=VallumMetrics()).start()
i = 0
while True:
    log.emit(DecisionRecord(ts=time.time(), transport="egress.http", action="allow", request_id=f"c{i}"))
    i += 1
    if i == 300:
        log.flush()
        print("ready", flush=True)
    if i % 50 == 0:
        time.sleep(0.001)
"""


def start_writer(d: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def test_sigkill_mid_stream_then_verify_and_resume(logdir: Path):
    proc = start_writer(logdir)
    try:
        # While the writer runs, the log verifies with an unsigned tail (the lock shows it is live).
        live = verify_log(logdir)
        assert live.ok, live.to_dict()
        assert any("writer is running" in n or "write in progress" in n for n in live.notes)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    crashed = verify_log(logdir)
    assert crashed.status == "tampered"  # unexplained until a writer restarts and records it
    assert crashed.problem.file == SEG1
    assert "closing checkpoint" in crashed.problem.message or "torn" in crashed.problem.message
    cli = vallum("audit", "verify", str(logdir))
    assert cli.returncode == 1 and "first bad seq" in cli.stdout and "tampered or truncated" in cli.stderr

    before = (logdir / SEG1).read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    last_before = json.loads(complete.splitlines()[-1])

    with new_log(logdir) as log:  # resume
        for i in range(20):
            assert log.emit(record(i))

    # history was not rewritten: the old bytes are still there, untouched
    files = sorted(logdir.glob("audit-*.jsonl"))
    assert files[0].read_bytes().startswith(complete)
    all_entries = [json.loads(x) for f in files for x in f.read_bytes().split(b"\n")[:-1]]
    rec = next(e for e in all_entries if e["kind"] == "recovery")
    assert rec["prev"] == last_before["hash"] and rec["seq"] == last_before["seq"] + 1
    assert rec["found"]["last_seq"] == last_before["seq"]
    assert rec["found"]["previous_end"] in ("unclosed", "torn")
    resumed = verify_log(logdir)
    assert resumed.ok, resumed.to_dict()
    assert resumed.last_seq == rec["seq"] + 21
    assert vallum_inproc("audit", "verify", str(logdir)).exit_code == 0


def test_torn_final_line_is_recorded_in_a_new_file(logdir: Path):
    write_log(logdir, 10)
    path = logdir / SEG1
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:37])  # power loss mid-line
    torn_bytes = lines[-1][:37]
    original = path.read_bytes()
    assert verify_log(logdir).status == "tampered"

    write_log(logdir, 5)
    assert path.read_bytes() == original  # never rewritten
    second = entries_of(logdir / "audit-000002.jsonl")
    rec = second[0]
    assert rec["kind"] == "recovery" and rec["found"]["previous_end"] == "torn"
    torn = rec["found"]["torn_tail"]
    assert torn["file"] == SEG1 and torn["length"] == 37 and torn["offset"] == len(original) - 37
    assert torn["sha256"] == hashlib.sha256(torn_bytes).hexdigest()
    assert rec["prev"] == json.loads(lines[-2])["hash"]
    r = verify_log(logdir)
    assert r.ok, r.to_dict()
    # verifying the torn file alone looks at the next file's recovery entry
    assert verify_log(path).ok


def test_torn_line_changed_after_recovery_is_caught(logdir: Path):
    write_log(logdir, 10)
    path = logdir / SEG1
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    write_log(logdir, 3)
    path.write_bytes(data[:-31])  # the attacker trims one more byte of evidence
    r = verify_log(logdir)
    assert r.status == "tampered"
    assert r.problem.file == "audit-000002.jsonl" and "torn line" in r.problem.message


def test_restart_after_clean_close_appends_start(logdir: Path):
    write_log(logdir, 3)
    write_log(logdir, 3)
    kinds = [e["kind"] for e in entries_of(logdir / SEG1)]
    assert kinds.count("start") == 2 and "recovery" not in kinds
    assert verify_log(logdir).ok


def test_restart_detects_an_edited_tail_and_says_so(logdir: Path):
    write_log(logdir, 10)
    path = logdir / SEG1
    lines = lines_of(path)
    lines[4] = lines[4].replace(b'"action":"block"', b'"action":"allow"')
    path.write_bytes(b"".join(lines))
    write_log(logdir, 1)
    rec = [e for e in entries_of(path) if e["kind"] == "recovery"]
    assert rec and "seq 4" in rec[0]["found"]["tail_problems"][0]
    # the damage stays visible to verify: recovery explains, it does not repair
    r = verify_log(logdir)
    assert r.status == "tampered" and r.problem.seq == 4


def test_crash_during_rotation_is_recovered(logdir: Path):
    write_log(logdir, 3)
    path = logdir / SEG1
    lines = lines_of(path)
    # a writer that died right after its rotation checkpoint, before opening the next file
    key = serialization.load_pem_private_key((logdir / "audit.key").read_bytes(), None)
    last = json.loads(lines[-1])
    cp = {
        "v": 1,
        "seq": last["seq"] + 1,
        "kind": "checkpoint",
        "ts": last["ts"],
        "prev": last["hash"],
        "reason": "rotate",
        "key_id": last["key_id"],
        "entries": 0,
    }
    cp["sig"] = base64.b64encode(
        key.sign(checkpoint_message(cp["seq"], cp["prev"], cp["ts"], cp["key_id"], "rotate"))
    ).decode()
    enc = canonical_bytes(cp)
    path.write_bytes(path.read_bytes() + entry_line(enc, hashlib.sha256(enc).hexdigest()))
    assert verify_log(logdir).status == "tampered"
    write_log(logdir, 2)
    assert entries_of(logdir / "audit-000002.jsonl")[0]["kind"] == "recovery"
    assert verify_log(logdir).ok


def test_interpreter_exit_without_close_still_writes_the_closing_checkpoint(logdir: Path):
    code = (
        "import sys\nfrom vallum.audit.writer import AuditLog\nfrom vallum.decisions import DecisionRecord\n"
        "log = AuditLog(sys.argv[1]).start()\n"
        "for i in range(5):\n    log.emit(DecisionRecord(ts=1.0, transport='x', action='allow'))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(logdir)], check=True, timeout=60)
    entries = entries_of(logdir / SEG1)
    assert entries[-1]["kind"] == "checkpoint" and entries[-1]["reason"] == "close"
    assert len([e for e in entries if e["kind"] == "decision"]) == 5
    assert verify_log(logdir).ok


def test_sigterm_closes_the_log_cleanly(tmp_path: Path):
    code = (
        "import sys, time\nfrom vallum.config import parse_config\n"
        "from vallum.audit.factory import build_decision_sink\n"
        "from vallum.decisions import DecisionRecord\n"
        "sink = build_decision_sink(parse_config({'data_dir': sys.argv[1]}), 'test')\n"
        "for i in range(5):\n    sink.emit(DecisionRecord(ts=1.0, transport='x', action='allow'))\n"
        "print('ready', flush=True)\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 143
    entries = entries_of(tmp_path / "audit" / SEG1)
    assert entries[-1]["kind"] == "checkpoint" and entries[-1]["reason"] == "close"
    assert verify_log(tmp_path / "audit").ok
