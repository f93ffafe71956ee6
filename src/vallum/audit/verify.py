"""Verifying an audit log: hashes, chain links, sequence, checkpoint signatures, file boundaries.

`ChainChecker` is the pure core: feed it one file's lines in chain order and it reports the first
problem. `verify_log` walks a file or a directory with it and returns a `VerifyReport`.

What makes a log **intact** (exit 0):

- every line is canonical JSON whose ``hash`` is the SHA-256 of its canonical encoding;
- ``seq`` goes up by one and ``prev`` is the previous entry's hash, across files;
- every checkpoint is signed by a trusted key over (context, seq, prev, ts, key id, reason);
- every file but the last ends with a ``rotate`` checkpoint, or with a torn line that the first
  entry of the next file (a ``recovery`` entry) names exactly (file, offset, length, SHA-256);
- the log ends with a ``close`` checkpoint — or a writer holds the directory's lock right now,
  in which case the entries after the last checkpoint are reported as not yet signed;
- if the first file starts after seq 0, a later ``rotate`` entry records the pruned files.

Anything else is **tampered or truncated** (exit 1). A log that cannot be read, or a key that
cannot be loaded, is **unreadable** (exit 2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vallum.audit.canonical import GENESIS_PREV, CanonicalError, canonical_float, encode_normalized, entry_line
from vallum.audit.entry import (
    CHECKPOINT_REASONS,
    FORMAT_VERSION,
    KIND_CHECKPOINT,
    KIND_RECOVERY,
    KIND_ROTATE,
    KIND_START,
    KINDS,
    checkpoint_message,
)
from vallum.audit.files import first_line, list_segments, segment_name, segment_number, split_lines, writer_is_live
from vallum.audit.keys import PUBLIC_KEY_NAME, AuditKeyError, key_id, load_public_key, verify_signature

INTACT, TAMPERED, UNREADABLE = "intact", "tampered", "unreadable"
EXIT_CODES = {INTACT: 0, TAMPERED: 1, UNREADABLE: 2}


@dataclass(slots=True)
class Problem:
    """The first thing found wrong: in which file, at which sequence number (and line)."""

    file: str
    seq: int | None
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.seq is not None:
            where += f" seq {self.seq}"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    status: str
    files: list[str] = field(default_factory=list)
    entries: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    #: seq of the last entry covered by a valid checkpoint signature
    signed_through: int | None = None
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    key_source: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def ok(self) -> bool:
        return self.status == INTACT

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "files": self.files,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "signed_through": self.signed_through,
            "problem": None
            if self.problem is None
            else {
                "file": self.problem.file,
                "seq": self.problem.seq,
                "line": self.problem.line,
                "message": self.problem.message,
            },
            "notes": self.notes,
            "keys": self.keys,
            "key_source": self.key_source,
        }


class ChainBroken(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _canonical_float_text(text: str) -> float:
    x = float(text)
    if canonical_float(x) is not x or repr(x) != text:
        raise CanonicalError(f"number {text} is not in canonical form")
    return x


def _no_constant(text: str) -> Any:
    raise CanonicalError(f"{text} is not a JSON number")


def parse_entry(raw: bytes) -> tuple[dict[str, Any], str]:
    """Parse one stored line and check its own hash and canonical form. Returns (entry, hash).

    Raises ValueError with a message naming what is wrong.
    """
    try:
        entry = json.loads(raw, parse_float=_canonical_float_text, parse_constant=_no_constant)
    except CanonicalError as exc:
        raise ValueError(f"entry has no canonical encoding: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise ValueError("line is not valid JSON (edited or corrupted)") from None
    if not isinstance(entry, dict):
        raise ValueError("line is not a JSON object")
    for name, typ in (("v", int), ("seq", int), ("kind", str), ("ts", str), ("prev", str), ("hash", str)):
        if type(entry.get(name)) is not typ:
            raise ValueError(f"member {name!r} is missing or not a {typ.__name__}")
    digest = entry.pop("hash")
    try:
        # Every number was checked while parsing, so the plain encoder is the canonical one here.
        encoded = encode_normalized(entry)
    except (UnicodeEncodeError, TypeError, ValueError):
        raise ValueError("entry has no canonical encoding (a lone surrogate or bad value)") from None
    if hashlib.sha256(encoded).hexdigest() != digest:
        raise ValueError("hash does not match the entry's content (entry edited)")
    if entry_line(encoded, digest) != raw + b"\n":
        raise ValueError("line is not in canonical form (edited after writing)")
    if entry["v"] != FORMAT_VERSION:
        raise ValueError(f"unknown format version {entry['v']}")
    if entry["kind"] not in KINDS:
        raise ValueError(f"unknown entry kind {entry['kind']!r}")
    return entry, digest


@dataclass(slots=True)
class TornTail:
    file: str
    offset: int
    length: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "length": self.length, "sha256": self.sha256}


class ChainChecker:
    """The sans-I/O verification state machine. Raises `ChainBroken` at the first problem."""

    def __init__(self, keys: dict[str, Ed25519PublicKey], check_signatures: bool = True) -> None:
        self.keys = keys
        self.check_signatures = check_signatures
        self.last_seq: int | None = None
        self.last_hash: str | None = None
        self.last_entry: dict[str, Any] | None = None
        self.first_entry: dict[str, Any] | None = None
        self.first_file: str | None = None
        self.entries = 0
        self.checkpoints = 0
        self.signed_through: int | None = None
        self.pruned: list[dict[str, Any]] = []
        self.pending_torn: TornTail | None = None
        self.recoveries: list[int] = []
        self.last_checkpoint_key: str | None = None

    def feed(self, file: str, lineno: int, raw: bytes) -> dict[str, Any]:
        expected = None if self.last_seq is None else self.last_seq + 1
        try:
            entry, digest = parse_entry(raw)
        except ValueError as exc:
            seq = _peek_seq(raw)
            raise ChainBroken(Problem(file, seq if seq is not None else expected, lineno, str(exc))) from None
        seq = entry["seq"]

        def bad(msg: str) -> ChainBroken:
            return ChainBroken(Problem(file, seq, lineno, msg))

        if self.last_seq is None:
            self.first_entry, self.first_file = entry, file
            if seq == 0 and entry["prev"] != GENESIS_PREV:
                raise bad("the first entry (seq 0) does not start the chain (prev is not the genesis value)")
        else:
            if seq > self.last_seq + 1:
                raise bad(f"expected seq {self.last_seq + 1}, found {seq}: entries deleted or reordered")
            if seq <= self.last_seq:
                raise bad(f"seq {seq} follows seq {self.last_seq}: an entry was inserted, duplicated or reordered")
            if entry["prev"] != self.last_hash:
                raise bad(f"prev does not match the hash of seq {self.last_seq}: entry inserted, replaced or edited")
        if self.pending_torn is not None:
            torn = self.pending_torn
            found = entry.get("found") if entry["kind"] == KIND_RECOVERY else None
            if not isinstance(found, dict) or found.get("torn_tail") != torn.to_dict():
                raise bad(
                    f"{torn.file} ends with a torn line ({torn.length} bytes at offset {torn.offset}) "
                    "that no recovery entry explains (truncated or edited)"
                )
            self.pending_torn = None
        kind = entry["kind"]
        if kind == KIND_CHECKPOINT:
            self._check_checkpoint(entry, bad)
        elif kind == KIND_START and self.last_entry is not None and not _is_close(self.last_entry):
            raise bad("writer restart without a closing checkpoint before it and without a recovery entry")
        elif kind == KIND_RECOVERY:
            self.recoveries.append(seq)
        elif kind == KIND_ROTATE:
            pruned = entry.get("pruned") or []
            if isinstance(pruned, list):
                self.pruned.extend(p for p in pruned if isinstance(p, dict))
        self.last_seq, self.last_hash, self.last_entry = seq, digest, entry
        self.entries += 1
        return entry

    def _check_checkpoint(self, entry: dict[str, Any], bad: Any) -> None:
        kid, sig, reason = entry.get("key_id"), entry.get("sig"), entry.get("reason")
        if reason not in CHECKPOINT_REASONS or not isinstance(kid, str) or not isinstance(sig, str):
            raise bad("malformed checkpoint (reason, key_id or sig missing)")
        if self.check_signatures:
            key = self.keys.get(kid)
            if key is None:
                raise bad(f"checkpoint signed by key {kid}, which is not a trusted key ({', '.join(self.keys)})")
            try:
                signature = base64.b64decode(sig, validate=True)
            except (binascii.Error, ValueError):
                raise bad("checkpoint signature is not base64") from None
            msg = checkpoint_message(entry["seq"], entry["prev"], entry["ts"], kid, reason)
            if not verify_signature(key, signature, msg):
                raise bad("checkpoint signature is invalid (forged checkpoint or history rewritten before it)")
            self.signed_through = entry["seq"]
        self.checkpoints += 1
        self.last_checkpoint_key = kid

    def end_of_file(self, file: str, torn: TornTail | None) -> None:
        """Call after a file's last complete line; `torn` is what followed the last LF."""
        if torn is not None:
            self.pending_torn = torn


def _is_close(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == KIND_CHECKPOINT and entry.get("reason") == "close"


def _peek_seq(raw: bytes) -> int | None:
    try:
        v = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    s = v.get("seq") if isinstance(v, dict) else None
    return s if type(s) is int else None


def torn_tail(file: str, offset: int, torn: bytes) -> TornTail:
    return TornTail(file, offset, len(torn), hashlib.sha256(torn).hexdigest())


def trusted_keys_beside(directory: Path) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """The exported public keys in a log directory: ``audit.pub`` and older ``audit.pub.<id>``."""
    keys: dict[str, Ed25519PublicKey] = {}
    names: list[str] = []
    main = directory / PUBLIC_KEY_NAME
    paths = [main] if main.exists() else []
    paths += sorted(p for p in directory.glob(f"{PUBLIC_KEY_NAME}.*") if not p.name.endswith(".tmp"))
    for p in paths:
        k = load_public_key(p)
        keys[key_id(k)] = k
        names.append(p.name)
    return keys, names


def log_directories(path: str | Path) -> list[Path]:
    """The log directories at `path`: itself if it holds segments, plus every sub-directory that
    does (one per process that wrote its own chain; see `factory.build_decision_sink`)."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    found = [p] if list_segments(p) else []
    for sub in sorted(x for x in p.iterdir() if x.is_dir()):
        if list_segments(sub):
            found.append(sub)
    return found or [p]


def verify_tree(path: str | Path, key_files: Sequence[str | Path] | None = None) -> list[tuple[Path, VerifyReport]]:
    """`verify_log` for every log directory at `path` (see `log_directories`)."""
    return [(d, verify_log(d, key_files)) for d in log_directories(path)]


def verify_log(path: str | Path, key_files: Sequence[str | Path] | None = None) -> VerifyReport:
    """Verify a log directory or one segment file (see the module docstring)."""
    p = Path(path)
    report = VerifyReport(status=INTACT)
    if not p.exists():
        report.status, report.notes = UNREADABLE, [f"{p} does not exist"]
        return report
    single = p.is_file()
    directory = p.parent if single else p
    try:
        segments = [(segment_number(p) or 0, p)] if single else list_segments(directory)
    except OSError as exc:
        report.status, report.notes = UNREADABLE, [f"cannot list {directory}: {exc.strerror}"]
        return report
    if not segments:
        report.status, report.notes = UNREADABLE, [f"no audit log files (audit-NNNNNN.jsonl) in {directory}"]
        return report
    try:
        if key_files:
            keys = {}
            for kf in key_files:
                k = load_public_key(Path(kf))
                keys[key_id(k)] = k
            report.key_source = "given with --key: " + ", ".join(str(k) for k in key_files)
        else:
            keys, names = trusted_keys_beside(directory)
            if not keys:
                report.status = UNREADABLE
                report.notes = [f"no public key {PUBLIC_KEY_NAME} beside the log in {directory}; pass --key PUBFILE"]
                return report
            report.key_source = (
                f"found beside the log ({', '.join(names)}); it is only as trustworthy as that directory — "
                "pass --key with a copy kept elsewhere to detect a substituted key"
            )
    except AuditKeyError as exc:
        report.status, report.notes = UNREADABLE, [str(exc)]
        return report
    report.keys = sorted(keys)
    checker = ChainChecker(keys)
    live = writer_is_live(directory)
    try:
        _walk(checker, segments, single, directory, live, report)
    except ChainBroken as exc:
        report.status, report.problem = TAMPERED, exc.problem
    except OSError as exc:
        report.status = UNREADABLE
        report.notes.append(f"cannot read {getattr(exc, 'filename', '') or p}: {exc.strerror}")
    report.entries, report.checkpoints = checker.entries, checker.checkpoints
    report.first_seq = None if checker.first_entry is None else checker.first_entry["seq"]
    report.last_seq, report.signed_through = checker.last_seq, checker.signed_through
    return report


def _walk(
    checker: ChainChecker,
    segments: list[tuple[int, Path]],
    single: bool,
    directory: Path,
    live: bool,
    report: VerifyReport,
) -> None:
    prev_number: int | None = None
    last_file = ""
    for number, path in segments:
        name = path.name
        expected_seq = None if checker.last_seq is None else checker.last_seq + 1
        if prev_number is not None and number != prev_number + 1:
            missing = ", ".join(segment_name(n) for n in range(prev_number + 1, number))
            raise ChainBroken(Problem(missing, expected_seq, None, "file missing from the middle of the log (deleted)"))
        if prev_number is not None and checker.pending_torn is None:
            last = checker.last_entry
            if last is None or not (last.get("kind") == KIND_CHECKPOINT and last.get("reason") == "rotate"):
                raise ChainBroken(
                    Problem(last_file, checker.last_seq, None, "file ends without a rotation checkpoint (truncated)")
                )
        prev_number, last_file = number, name
        report.files.append(name)
        data = path.read_bytes()
        lines, torn = split_lines(data)
        for i, raw in enumerate(lines, start=1):
            checker.feed(name, i, raw)
        checker.end_of_file(name, torn_tail(name, len(data) - len(torn), torn) if torn else None)
    _end_of_log(checker, segments, single, directory, live, report)


def _end_of_log(
    checker: ChainChecker,
    segments: list[tuple[int, Path]],
    single: bool,
    directory: Path,
    live: bool,
    report: VerifyReport,
) -> None:
    name = segments[-1][1].name
    nxt = None if checker.last_seq is None else checker.last_seq + 1
    if checker.pending_torn is not None:
        torn = checker.pending_torn
        follower = directory / segment_name(segments[-1][0] + 1)
        if single and follower.exists():
            line = first_line(follower)
            if line is not None:
                checker.feed(follower.name, 1, line)  # raises unless it is the matching recovery entry
                report.notes.append(f"the torn tail is explained by the recovery entry in {follower.name}")
                return
        if live:
            report.notes.append(f"{name} ends mid-line ({torn.length} bytes): a writer is running, write in progress")
        else:
            raise ChainBroken(
                Problem(
                    name,
                    nxt,
                    None,
                    f"torn final line ({torn.length} bytes at offset {torn.offset}) and no writer "
                    "has recorded a recovery since: truncated, or the writer crashed and has not restarted",
                )
            )
    if checker.last_entry is None:
        if live:
            report.notes.append("the log is empty; a writer is starting")
            return
        raise ChainBroken(Problem(name, 0, None, "the log holds no complete entry (truncated)"))
    first = checker.first_entry or {}
    if single:
        if first.get("seq", 0) > 0:
            report.notes.append(
                f"verified {name} alone: its link to the previous file (seq {first['seq'] - 1}) "
                "was not checked; verify the directory to check the whole chain"
            )
    elif first.get("seq", 0) > 0:
        start = {"last_seq": first["seq"] - 1, "last_hash": first["prev"]}
        if not any(
            p.get("last_seq") == start["last_seq"] and p.get("last_hash") == start["last_hash"] for p in checker.pruned
        ):
            raise ChainBroken(
                Problem(
                    checker.first_file or name,
                    first["seq"],
                    1,
                    f"the log starts at seq {first['seq']} but no rotation entry records the "
                    "earlier files as pruned (files deleted)",
                )
            )
        report.notes.append(f"files before seq {first['seq']} were pruned by retention (recorded in the log)")
    last = checker.last_entry
    if _is_close(last):
        return
    unsigned = last["seq"] - (checker.signed_through if checker.signed_through is not None else -1)
    if single and last.get("kind") == KIND_CHECKPOINT and last.get("reason") == "rotate":
        report.notes.append(f"{name} ends with a rotation checkpoint; the chain continues in the next file")
        return
    if live:
        report.notes.append(f"a writer is running: the last {unsigned} entries are chained but not yet signed")
        return
    raise ChainBroken(
        Problem(
            name,
            last["seq"],
            None,
            f"the log ends without a closing checkpoint ({unsigned} unsigned entries at the end): "
            "truncated, or the writer stopped uncleanly and has not restarted to record it",
        )
    )
