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
from acc_support import Upstream, start_proxy, vallum_all


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


def _tamper(audit_log: Path, work: Path) -> dict[str, tuple[Path, Path | None, Any]]:
    """name → (copy, the segment that was changed, the seq of the changed entry)."""
    out: dict[str, tuple[Path, Path | None, Any]] = {}

    def lines_of(name: str, last: bool = False) -> tuple[Path, Path, list[str]]:
        d = _copy(audit_log, work / name)
        seg = _segments(d)[-1 if last else 0]
        return d, seg, seg.read_text().splitlines()

    d, seg, lines = lines_of("edited")
    blob = lines[3]
    seq = _seq(json.loads(blob))
    for a, b in (('"allow"', '"block"'), ('"block"', '"allow"'), ('"warn"', '"allow"')):
        if a in blob:
            lines[3] = blob.replace(a, b, 1)
            break
    assert lines[3] != blob, blob
    seg.write_text("\n".join(lines) + "\n")
    out["edited"] = (d, seg, seq)
    d, seg, lines = lines_of("deleted")
    del lines[2]
    seg.write_text("\n".join(lines) + "\n")
    out["deleted"] = (d, seg, None)
    d, seg, lines = lines_of("reordered")
    lines[2], lines[3] = lines[3], lines[2]
    seg.write_text("\n".join(lines) + "\n")
    out["reordered"] = (d, seg, None)
    d, seg, _ = lines_of("torn", last=True)
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - 40])  # a torn final line
    out["torn"] = (d, seg, None)
    d, seg, lines = lines_of("cut", last=True)
    seg.write_text("\n".join(lines[:-2]) + "\n")  # whole entries cut, the closing checkpoint included
    out["cut"] = (d, seg, None)
    return out


@pytest.fixture(scope="module")
def verdicts(audit_log: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every `vallum audit verify` of this module, run at once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    work = tmp_path_factory.mktemp("tamper")
    copies = _tamper(audit_log, work)
    other = work / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    junk = work / "junk.key"
    junk.write_text("not a key")
    calls: dict[str, tuple[str, ...]] = {
        "intact": ("audit", "verify", str(audit_log)),
        "one-file": ("audit", "verify", str(_segments(audit_log)[0])),
        "with-key": ("audit", "verify", str(audit_log), "--key", str(audit_log / "audit.pub")),
        "other-key": ("audit", "verify", str(audit_log), "--key", str(other)),
        "no-dir": ("audit", "verify", str(work / "no-such-dir")),
        "junk-key": ("audit", "verify", str(audit_log), "--key", str(junk)),
        "missing-key": ("audit", "verify", str(audit_log), "--key", str(work / "missing.pub")),
        **{name: ("audit", "verify", str(d)) for name, (d, _, _) in copies.items()},
    }
    results = vallum_all(*[(args, {}) for args in calls.values()])
    return {"copies": copies, **dict(zip(calls, results, strict=True))}


def _text(p: Any) -> str:
    return (p.stdout + p.stderr).decode()


def test_intact_log_verifies(verdicts: Any, audit_log: Path) -> None:
    assert (audit_log / "audit.pub").exists()
    for name in ("intact", "one-file", "with-key"):
        assert verdicts[name].returncode == 0, (name, _text(verdicts[name]))


def test_secrets_never_in_the_log(audit_log: Path) -> None:
    for f in _segments(audit_log):
        assert S.GITHUB not in f.read_text()


def test_edited_entry_named_by_file_and_seq(verdicts: Any) -> None:
    _, seg, seq = verdicts["copies"]["edited"]
    out = _text(verdicts["edited"])
    assert verdicts["edited"].returncode == 1, out
    assert seg.name in out and str(seq) in out, out


@pytest.mark.parametrize("name", ["deleted", "reordered", "torn", "cut"])
def test_deleted_reordered_truncated_detected(verdicts: Any, name: str) -> None:
    _, seg, _ = verdicts["copies"][name]
    out = _text(verdicts[name])
    assert verdicts[name].returncode == 1, out
    if name in ("deleted", "torn"):
        assert seg.name in out, out


def test_substituted_key_is_not_intact(verdicts: Any) -> None:
    assert verdicts["other-key"].returncode == 1, _text(verdicts["other-key"])


def test_unreadable_is_2(verdicts: Any) -> None:
    for name in ("no-dir", "junk-key", "missing-key"):
        assert verdicts[name].returncode == 2, (name, _text(verdicts[name]))
        assert "Traceback" not in _text(verdicts[name])
