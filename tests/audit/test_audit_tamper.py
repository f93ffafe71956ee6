"""Every kind of tampering is detected and names the first bad file and sequence number."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from auditkit import entries_of, lines_of, vallum, vallum_inproc, write_log
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vallum.audit.canonical import canonical_bytes, entry_line
from vallum.audit.entry import checkpoint_message
from vallum.audit.keys import export_public_key, key_id, public_pem
from vallum.audit.verify import verify_log

SEG1 = "audit-000001.jsonl"


@pytest.fixture
def one_file(logdir: Path) -> Path:
    return write_log(logdir, 30, checkpoint_every=10)


@pytest.fixture
def rotated(logdir: Path) -> Path:
    d = write_log(logdir, 120, checkpoint_every=25, rotate_bytes=8 * 1024)
    assert len(list(d.glob("audit-*.jsonl"))) >= 4
    return d


def index_of(entries: list[dict[str, Any]], kind: str, nth: int = 0) -> int:
    return [i for i, e in enumerate(entries) if e["kind"] == kind][nth]


def encode(entry: dict[str, Any]) -> bytes:
    e = {k: v for k, v in entry.items() if k != "hash"}
    enc = canonical_bytes(e)
    return entry_line(enc, hashlib.sha256(enc).hexdigest())


def rechain(entries: list[dict[str, Any]], start: int, key: Ed25519PrivateKey | None = None) -> list[bytes]:
    """What an attacker without the key can do: recompute every hash and link from `start` on
    (and, given a key, re-sign the checkpoints)."""
    out: list[bytes] = []
    prev = None
    for i, e in enumerate(entries):
        e = dict(e)
        if i >= start:
            if prev is not None:
                e["prev"] = prev
            if key is not None and e["kind"] == "checkpoint":
                kid = key_id(key.public_key())
                e["key_id"] = kid
                msg = checkpoint_message(e["seq"], e["prev"], e["ts"], kid, e["reason"])
                e["sig"] = base64.b64encode(key.sign(msg)).decode()
        line = encode(e) if i >= start else json.dumps(e).encode()
        if i < start:
            line = None
        out.append(line)
        prev = json.loads(line)["hash"] if line is not None else e["hash"]
    return out


def write_entries(path: Path, original: list[bytes], new: list[bytes | None]) -> None:
    path.write_bytes(b"".join(n if n is not None else o for o, n in zip(original, new, strict=True)))


def assert_tampered(d: Path, file: str, seq: int | None, *words: str, keys: list[Path] | None = None) -> None:
    r = verify_log(d, keys)
    assert r.status == "tampered", r.to_dict()
    assert r.exit_code == 1
    assert r.problem is not None
    assert r.problem.file == file, r.problem
    if seq is not None:
        assert r.problem.seq == seq, r.problem
    for w in words:
        assert w in r.problem.message, r.problem


def test_an_untouched_log_is_intact(one_file: Path, rotated: Path):
    for d in (one_file, rotated):
        r = verify_log(d)
        assert r.status == "intact", r.to_dict()
        assert r.exit_code == 0
        assert r.entries == r.last_seq + 1
        assert r.signed_through == r.last_seq
        assert "beside the log" in r.key_source


def test_edited_field(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    i = 5
    assert b'"action":"block"' in lines[i]
    lines[i] = lines[i].replace(b'"action":"block"', b'"action":"allow"')
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 5, "hash")


def test_edited_field_with_its_hash_recomputed(one_file: Path):
    path = one_file / SEG1
    entries = entries_of(path)
    lines = lines_of(path)
    entries[5]["destination"] = "https://innocent.example/"
    lines[5] = encode(entries[5])
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 6, "prev")


def test_edited_field_with_the_whole_chain_recomputed_breaks_the_next_checkpoint(one_file: Path):
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    entries[3]["action"] = "allow"
    entries[3]["findings"] = []
    write_entries(path, lines, rechain(entries, 3))
    cp = index_of(entries, "checkpoint")
    assert cp > 3
    assert_tampered(one_file, SEG1, entries[cp]["seq"], "signature")


def test_deleted_entry(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    del lines[7]
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 8, "expected seq 7")


def test_inserted_duplicate_entry(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    lines.insert(8, lines[4])
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 4, "inserted")


def test_inserted_forged_entry_with_valid_hash(one_file: Path):
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    forged = dict(entries[6])
    forged["seq"] = 7
    forged["prev"] = entries[6]["hash"]
    forged["request_id"] = "forged"
    lines.insert(7, encode(forged))
    path.write_bytes(b"".join(lines))
    # the forged entry links correctly; the real seq 7 after it no longer does
    assert_tampered(one_file, SEG1, 7, "inserted")


def test_reordered_entries(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    lines[4], lines[5] = lines[5], lines[4]
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 5, "expected seq 4")


def test_truncated_mid_line(one_file: Path):
    path = one_file / SEG1
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    assert_tampered(one_file, SEG1, None, "torn final line")


def test_truncated_at_a_line_boundary(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:-3]))
    assert_tampered(one_file, SEG1, len(lines) - 4, "without a closing checkpoint")


def test_truncated_to_nothing(one_file: Path):
    (one_file / SEG1).write_bytes(b"")
    assert_tampered(one_file, SEG1, 0, "no complete entry")


def test_deleted_middle_file(rotated: Path):
    (rotated / "audit-000002.jsonl").unlink()
    r = verify_log(rotated)
    assert r.status == "tampered"
    assert r.problem.file == "audit-000002.jsonl"
    first_of_3 = entries_of(rotated / "audit-000003.jsonl")[0]["seq"]
    assert r.problem.seq is not None and r.problem.seq < first_of_3
    assert "missing" in r.problem.message


def test_deleted_first_file(rotated: Path):
    (rotated / SEG1).unlink()
    first = entries_of(rotated / "audit-000002.jsonl")[0]["seq"]
    assert_tampered(rotated, "audit-000002.jsonl", first, "pruned")


def test_deleted_last_file(rotated: Path):
    files = sorted(rotated.glob("audit-*.jsonl"))
    files[-1].unlink()
    last_seq = entries_of(files[-2])[-1]["seq"]
    assert_tampered(rotated, files[-2].name, last_seq, "without a closing checkpoint")


def test_forged_checkpoint_signature(one_file: Path):
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    cp = index_of(entries, "checkpoint", 1)
    entries[cp]["sig"] = base64.b64encode(os.urandom(64)).decode()
    write_entries(path, lines, rechain(entries, cp))
    assert_tampered(one_file, SEG1, entries[cp]["seq"], "signature is invalid")


def test_checkpoint_signature_copied_from_another_checkpoint(one_file: Path):
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    a, b = index_of(entries, "checkpoint", 0), index_of(entries, "checkpoint", 1)
    entries[b]["sig"] = entries[a]["sig"]
    write_entries(path, lines, rechain(entries, b))
    assert_tampered(one_file, SEG1, entries[b]["seq"], "signature is invalid")


def test_checkpoint_reason_changed(rotated: Path):
    # Turning a rotation checkpoint into a closing one would hide the deletion of later files.
    files = sorted(rotated.glob("audit-*.jsonl"))
    path = files[1]
    entries, lines = entries_of(path), lines_of(path)
    assert entries[-1]["reason"] == "rotate"
    entries[-1]["reason"] = "close"
    write_entries(path, lines, rechain(entries, len(entries) - 1))
    for f in files[2:]:
        f.unlink()
    assert_tampered(rotated, path.name, entries[-1]["seq"], "signature")


def test_checkpoint_signed_with_another_key_and_public_key_replaced(one_file: Path, tmp_path: Path):
    trusted = tmp_path / "trusted.pub"
    trusted.write_bytes((one_file / "audit.pub").read_bytes())
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    entries[2]["action"] = "allow"
    attacker = Ed25519PrivateKey.generate()
    write_entries(path, lines, rechain(entries, 2, key=attacker))
    (one_file / "audit.pub").write_bytes(public_pem(attacker.public_key()))
    # Beside-the-log key: the substitution is invisible (documented); this is why --key exists.
    assert verify_log(one_file).status == "intact"
    cp = index_of(entries, "checkpoint")
    assert_tampered(one_file, SEG1, entries[cp]["seq"], "not a trusted key", keys=[trusted])


def test_checkpoint_signed_with_another_key_without_replacing_the_public_key(one_file: Path):
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    attacker = Ed25519PrivateKey.generate()
    write_entries(path, lines, rechain(entries, 1, key=attacker))
    cp = index_of(entries, "checkpoint")
    assert_tampered(one_file, SEG1, entries[cp]["seq"], "not a trusted key")


def test_added_public_key_beside_the_log_is_still_caught_with_key(one_file: Path, tmp_path: Path):
    trusted = tmp_path / "trusted.pub"
    trusted.write_bytes((one_file / "audit.pub").read_bytes())
    attacker = Ed25519PrivateKey.generate()
    export_public_key(attacker.public_key(), one_file)  # keeps the old one as audit.pub.<id>
    path = one_file / SEG1
    entries, lines = entries_of(path), lines_of(path)
    write_entries(path, lines, rechain(entries, 4, key=attacker))
    cp = index_of(entries, "checkpoint")
    assert_tampered(one_file, SEG1, entries[cp]["seq"], "not a trusted key", keys=[trusted])


def test_non_canonical_rewrite_is_caught(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    e = json.loads(lines[3])
    lines[3] = json.dumps(e).encode() + b"\n"  # same values, different bytes (spaces)
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 3, "canonical")


def test_non_canonical_number_with_recomputed_hash_is_caught(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    body = lines[3][: lines[3].index(b',"hash":')].replace(b'"duration_ms":0.5', b'"duration_ms":0.50')
    lines[3] = body + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 3, "canonical")


def test_duplicate_key_trick_is_caught(one_file: Path):
    path = one_file / SEG1
    lines = lines_of(path)
    lines[3] = lines[3].replace(b'{"action":"block"', b'{"action":"allow","action":"block"', 1)
    path.write_bytes(b"".join(lines))
    assert_tampered(one_file, SEG1, 3, "canonical")


def test_single_file_verification(rotated: Path):
    r = verify_log(rotated / "audit-000002.jsonl")
    assert r.status == "intact", r.to_dict()
    assert any("alone" in n for n in r.notes)
    assert any("continues in the next file" in n for n in r.notes)
    path = rotated / "audit-000002.jsonl"
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"action":"block"', b'"action":"warn"')
    path.write_bytes(b"".join(lines))
    r = verify_log(path)
    assert r.status == "tampered" and r.problem.file == "audit-000002.jsonl"


# ---------------------------------------------------------------- the command line


def test_cli_exit_codes(one_file: Path, tmp_path: Path):
    ok = vallum("audit", "verify", str(one_file))
    assert ok.returncode == 0, ok.stderr
    assert "OK:" in ok.stdout and "beside the log" in ok.stdout

    trusted = tmp_path / "trusted.pub"
    trusted.write_bytes((one_file / "audit.pub").read_bytes())
    ok_key = vallum_inproc("audit", "verify", str(one_file / SEG1), "--key", str(trusted))
    assert ok_key.exit_code == 0, ok_key.output
    assert "--key" in ok_key.stdout

    path = one_file / SEG1
    lines = lines_of(path)
    del lines[9]
    path.write_bytes(b"".join(lines))
    bad = vallum("audit", "verify", str(one_file))
    assert bad.returncode == 1
    assert f"first bad file: {SEG1}" in bad.stdout
    assert "first bad seq: 10" in bad.stdout
    assert f"{SEG1} seq 10" in bad.stderr

    js = vallum_inproc("audit", "verify", str(one_file), "--json")
    assert js.exit_code == 1
    report = json.loads(js.stdout)
    assert report["status"] == "tampered" and report["problem"]["seq"] == 10


def test_cli_unreadable(tmp_path: Path, one_file: Path):
    missing = vallum("audit", "verify", str(tmp_path / "nope"))
    assert missing.returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert vallum_inproc("audit", "verify", str(empty)).exit_code == 2
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    r = vallum_inproc("audit", "verify", str(one_file), "--key", str(garbage))
    assert r.exit_code == 2 and "error:" in r.output
    (one_file / "audit.pub").unlink()
    r = vallum_inproc("audit", "verify", str(one_file))
    assert r.exit_code == 2 and "--key" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_cli_permission_denied(one_file: Path):
    (one_file / SEG1).chmod(0)
    assert vallum_inproc("audit", "verify", str(one_file)).exit_code == 2
