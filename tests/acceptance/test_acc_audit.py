"""INTERFACES §1 `vallum audit verify PATH [--key PUBFILE]`: 0 intact, 1 tampered or truncated (naming
the first bad file and sequence number), 2 unreadable. The log is produced through the public surface:
a `vallum proxy` that makes decisions and is then stopped cleanly."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import samples as S

from conftest import Upstream, start_proxy, vallum


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Path:
    work = tmp_path_factory.mktemp("audit")
    p = start_proxy(work, {"egress": {"allow_private": [f"127.0.0.1:{upstream.port}"]}})
    try:
        with p.client() as c:
            for i in range(6):
                c.get(upstream.url(f"/page{i}"))
            c.get(upstream.url(f"/cb?token={S.GITHUB}"))
            c.get(upstream.url("/inject"))
    finally:
        assert p.daemon.stop(signal.SIGTERM) in (0, -15, 130, 143)
    audit = work / "data" / "audit"
    assert audit.is_dir() and list(audit.glob("*.jsonl")), list((work / "data").rglob("*"))
    return audit


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.jsonl"))


def _entries(f: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]


def _seq(e: dict[str, Any]) -> Any:
    return e.get("seq", e.get("sequence"))


def test_intact_log_verifies(audit_log: Path) -> None:
    p = vallum("audit", "verify", str(audit_log))
    assert p.returncode == 0, (p.stdout + p.stderr).decode()
    seg = _segments(audit_log)[0]
    assert vallum("audit", "verify", str(seg)).returncode == 0
    pub = audit_log / "audit.pub"
    assert pub.exists()
    assert vallum("audit", "verify", str(audit_log), "--key", str(pub)).returncode == 0


def test_secrets_never_in_the_log(audit_log: Path) -> None:
    for f in _segments(audit_log):
        assert S.GITHUB not in f.read_text()


def test_edited_entry_named_by_file_and_seq(audit_log: Path, tmp_path: Path) -> None:
    d = _copy(audit_log, tmp_path / "edited")
    seg = _segments(d)[0]
    lines = seg.read_text().splitlines()
    idx = 3
    e = json.loads(lines[idx])
    seq = _seq(e)
    assert seq is not None, e
    blob = lines[idx]
    assert '"block"' in blob or '"allow"' in blob or '"warn"' in blob
    lines[idx] = blob.replace('"allow"', '"block"', 1) if '"allow"' in blob else blob.replace('"block"', '"allow"', 1) \
        if '"block"' in blob else blob.replace('"warn"', '"allow"', 1)
    seg.write_text("\n".join(lines) + "\n")
    p = vallum("audit", "verify", str(d))
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 1, out
    assert seg.name in out and str(seq) in out, out


def test_deleted_entry_detected(audit_log: Path, tmp_path: Path) -> None:
    d = _copy(audit_log, tmp_path / "deleted")
    seg = _segments(d)[0]
    lines = seg.read_text().splitlines()
    del lines[2]
    seg.write_text("\n".join(lines) + "\n")
    p = vallum("audit", "verify", str(d))
    assert p.returncode == 1 and seg.name.encode() in p.stdout + p.stderr


def test_reordered_entries_detected(audit_log: Path, tmp_path: Path) -> None:
    d = _copy(audit_log, tmp_path / "reordered")
    seg = _segments(d)[0]
    lines = seg.read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    seg.write_text("\n".join(lines) + "\n")
    assert vallum("audit", "verify", str(d)).returncode == 1


def test_truncated_log_detected(audit_log: Path, tmp_path: Path) -> None:
    d = _copy(audit_log, tmp_path / "truncated")
    seg = _segments(d)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - 40])  # a torn final line
    p = vallum("audit", "verify", str(d))
    assert p.returncode == 1, (p.stdout + p.stderr).decode()
    assert seg.name.encode() in p.stdout + p.stderr


def test_tail_entries_removed_detected(audit_log: Path, tmp_path: Path) -> None:
    """Whole entries cut from the end (including the closing checkpoint) are a truncation."""
    d = _copy(audit_log, tmp_path / "cut")
    seg = _segments(d)[-1]
    lines = seg.read_text().splitlines()
    seg.write_text("\n".join(lines[:-2]) + "\n")
    p = vallum("audit", "verify", str(d))
    assert p.returncode == 1, (p.stdout + p.stderr).decode()


def test_substituted_key_is_not_intact(audit_log: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    p = vallum("audit", "verify", str(audit_log), "--key", str(other))
    assert p.returncode == 1, (p.stdout + p.stderr).decode()


def test_unreadable_is_2(tmp_path: Path, audit_log: Path) -> None:
    p = vallum("audit", "verify", str(tmp_path / "no-such-dir"))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    p = vallum("audit", "verify", str(audit_log), "--key", str(junk))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    p = vallum("audit", "verify", str(audit_log), "--key", str(tmp_path / "missing.pub"))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
