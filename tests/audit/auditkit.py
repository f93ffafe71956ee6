"""Helpers for the audit tests: decision records, written logs, line surgery, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from vallum.audit.writer import AuditLog
from vallum.decisions import DecisionRecord, Principal
from vallum.detection.model import Action, Finding
from vallum.metrics import VallumMetrics

T0 = 1_795_000_000.0  # 2026-11-18T...


def record(i: int = 0, action: str = "block", **kw: Any) -> DecisionRecord:
    f = Finding(
        "dlp.github_pat",
        "credential",
        "critical",
        Action(action) if action in ("allow", "warn", "block") else Action.BLOCK,
        "GitHub personal access token",
        location="body",
        evidence="ghp_…[redacted]",
    )
    base: dict[str, Any] = dict(
        ts=T0 + i,
        transport="egress.http",
        action=action,
        request_id=f"req-{i}",
        destination="https://api.example.com/v1/x",
        principal=Principal(user=f"u{i % 3}", agent="agent:support"),
        findings=[f] if action != "allow" else [],
        duration_ms=0.5,
    )
    base.update(kw)
    return DecisionRecord(**base)


def new_log(directory: Path, **kw: Any) -> AuditLog:
    kw.setdefault("metrics", VallumMetrics())
    kw.setdefault("fsync_interval_ms", 5)
    return AuditLog(directory, **kw)


def write_log(directory: Path, n: int, **kw: Any) -> Path:
    """A closed log with `n` decisions."""
    with new_log(directory, **kw) as log:
        for i in range(n):
            assert log.emit(record(i))
    return directory


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def entries_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in lines_of(path)]


def vallum(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vallum", *args], capture_output=True, text=True, timeout=timeout)


def vallum_inproc(*args: str) -> Any:
    """The same CLI in this process (typer's runner): faster than a subprocess on a busy machine."""
    from typer.testing import CliRunner

    from vallum.cli.main import app

    return CliRunner().invoke(app, list(args))
