"""Audit log benchmark (prints JSON).

1. Sustained entries/s through the writer with checkpoints every 1,000 entries and fsync every
   1,000 entries (target >= 50,000/s).
2. The latency that the audit log adds to one decision on the data path: the p50 of
   "build the DecisionRecord + sink.emit()" with the log on (AuditLog) vs off (NullSink)
   (target <= 50 us added).

Usage: .venv/bin/python bench/bench_audit.py [--entries N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from vallum.audit.verify import verify_log
from vallum.audit.writer import AuditLog
from vallum.decisions import DecisionRecord, FanoutSink, NullSink, Principal
from vallum.detection.model import Action, Finding
from vallum.metrics import MetricsSink, VallumMetrics

FINDING = Finding(
    "dlp.github_pat",
    "credential",
    "critical",
    Action.BLOCK,
    "GitHub personal access token",
    location="request.body",
    evidence="ghp_…[redacted]",
)
PRINCIPAL = Principal(user="u_7781", session="s_12", agent="agent:support")


def make_record(i: int) -> DecisionRecord:
    return DecisionRecord(
        ts=time.time(),
        transport="egress.http",
        action="block" if i % 10 == 0 else "allow",
        destination="https://api.example.com/v1/chat/completions",
        principal=PRINCIPAL,
        findings=[FINDING] if i % 10 == 0 else [],
        duration_ms=0.123,
    )


def throughput(directory: Path, n: int) -> dict:
    records = [make_record(i) for i in range(n)]
    log = AuditLog(
        directory,
        checkpoint_every=1000,
        fsync_every=1000,
        fsync_interval_ms=50,
        queue_size=n + 10,
        metrics=VallumMetrics(),
    )
    log.start()
    writer = log._thread
    t0 = time.perf_counter()
    c0 = time.process_time()
    for r in records:
        log.emit(r)
    emitted = time.perf_counter() - t0
    log.flush(120)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    log.close()
    assert writer is not None and not writer.is_alive()
    t1 = time.perf_counter()
    report = verify_log(directory)
    verify_s = time.perf_counter() - t1
    assert report.ok, report.to_dict()
    return {
        "entries": n,
        "entries_per_s": round(n / elapsed),
        # wall-clock rate depends on how busy the machine is; CPU per entry does not
        "entries_per_cpu_s": round(n / cpu),
        "process_cpu_us_per_entry": round(cpu / n * 1e6, 2),
        "emit_loop_s": round(emitted, 3),
        "checkpoints": report.checkpoints,
        "bytes_per_entry": round(sum(p.stat().st_size for p in directory.glob("audit-*.jsonl")) / report.entries),
        "verify_entries_per_s": round(report.entries / verify_s),
    }


def latency(directory: Path, rounds: int, burst: int) -> dict:
    log = AuditLog(directory, checkpoint_every=1000, metrics=VallumMetrics())
    log.start()
    null = NullSink()
    both = FanoutSink(log, MetricsSink(VallumMetrics()))
    on: list[int] = []
    off: list[int] = []
    with_metrics: list[int] = []
    pc = time.perf_counter_ns
    i = 0
    for _ in range(rounds):
        for sink, out in ((null, off), (log, on), (both, with_metrics)):
            for _ in range(burst):
                t = pc()
                ok = sink.emit(make_record(i))
                out.append(pc() - t)
                assert ok
                i += 1
        time.sleep(0.002)  # let the writer keep up, as between bursts of real traffic
    log.close()

    def q(xs: list[int], p: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(p) - 1] / 1000, 2)

    return {
        "decisions_each": len(on),
        "p50_us_log_off": q(off, 50),
        "p50_us_log_on": q(on, 50),
        "p50_added_us": round(q(on, 50) - q(off, 50), 2),
        "p50_us_log_and_metrics_on": q(with_metrics, 50),
        "p99_us_log_off": q(off, 99),
        "p99_us_log_on": q(on, 99),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--burst", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vallum-bench-audit-"))
    try:
        result = {
            "benchmark": "audit",
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "threads": threading.active_count(),
            "throughput": throughput(tmp / "t", args.entries),
            "latency": latency(tmp / "l", args.rounds, args.burst),
            "targets": {"entries_per_s": 50_000, "p50_added_us": 50},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
