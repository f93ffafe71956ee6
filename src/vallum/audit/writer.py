"""`AuditLog`: the decision sink that writes the hash-chained, signed audit log.

The data path only appends to a bounded in-memory queue (`emit`); one writer thread encodes,
chains, batches writes, fsyncs in batches, signs checkpoints, rotates files and hands durable
entries to the SIEM exporters. See docs/audit-log.md for the format.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from vallum import __version__
from vallum.audit.canonical import GENESIS_PREV, encode_normalized, entry_line
from vallum.audit.entry import (
    FORMAT_VERSION,
    KIND_CHECKPOINT,
    KIND_DECISION,
    KIND_DROPPED,
    KIND_RECOVERY,
    KIND_REFUSED,
    KIND_ROTATE,
    KIND_START,
    checkpoint_message,
    decision_body,
    json_safe,
    rfc3339,
)
from vallum.audit.files import WriterLock, last_line, list_segments, segment_name, split_lines
from vallum.audit.keys import (
    PRIVATE_KEY_NAME,
    export_public_key,
    key_id,
    load_or_create_signing_key,
)
from vallum.audit.verify import ChainBroken, ChainChecker, parse_entry, torn_tail, trusted_keys_beside
from vallum.decisions.record import DecisionRecord
from vallum.metrics import METRICS, VallumMetrics

log = logging.getLogger("vallum.audit")

QUEUE_POLICIES = ("block", "drop")
_CLOSE = object()


class AuditError(RuntimeError):
    """The audit log cannot be opened or written."""


class EntryExporter(Protocol):
    """Receives entries after they are durable. `offer` must return at once (never block)."""

    name: str

    def start(self) -> None: ...

    def offer(self, entries: list[tuple[dict[str, Any], bytes]]) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


class AuditLog:
    """A `DecisionSink` writing every decision to the audit log. Thread-safe.

    `emit` returns False (the caller fails closed) when the log is not running, the writer has
    failed, or the queue is full under policy ``block``. Under policy ``drop`` a full queue drops
    the record, counts it, and the next entry written records how many were dropped.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        key_path: str | Path | None = None,
        checkpoint_every: int = 1000,
        rotate_bytes: int = 64 * 1024 * 1024,
        keep_files: int = 0,
        queue_size: int = 100_000,
        queue_full: str = "block",
        fsync_every: int = 1000,
        fsync_interval_ms: float = 50.0,
        exporters: Iterable[EntryExporter] = (),
        metrics: VallumMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if queue_full not in QUEUE_POLICIES:
            raise ValueError(f"queue_full must be one of {QUEUE_POLICIES}, not {queue_full!r}")
        if checkpoint_every < 1 or queue_size < 1 or fsync_every < 1 or rotate_bytes < 1024 or keep_files < 0:
            raise ValueError("checkpoint_every, queue_size, fsync_every must be >= 1; rotate_bytes >= 1024")
        self.directory = Path(directory)
        self.key_path = Path(key_path) if key_path else self.directory / PRIVATE_KEY_NAME
        self.checkpoint_every = checkpoint_every
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self.queue_size = queue_size
        self.queue_full = queue_full
        self.fsync_every = fsync_every
        self.fsync_interval = fsync_interval_ms / 1000.0
        self.exporters = list(exporters)
        self.metrics = metrics or METRICS
        self._clock = clock
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._accepting = False
        self._started = False
        self._closed = False
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._writer_lock = WriterLock(self.directory)
        self.dropped = 0
        self.refused = 0
        self._dropped_pending = 0
        self._refused_pending = 0
        # writer-thread state
        self._seq = 0
        self._prev = GENESIS_PREV
        self._segment = 0
        self._fd = -1
        self._file_size = 0
        self._since_checkpoint = 0
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._unsynced: list[tuple[Any, bytes]] = []
        self._kinds: Counter[str] = Counter()
        self._first_unsynced = 0.0
        self._oldest_enqueued: float | None = None
        # drain at most this many per round, so fsync_every is honoured under full load too
        self._batch_max = min(4096, fsync_every)
        self.public_key_path: Path | None = None
        self._atexit: Callable[[], Any] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AuditLog:
        """Open the log: take the directory lock, load or create the key, check the tail, record
        the start (or what recovery found), then start the writer thread."""
        with self._lock:
            if self._started:
                return self
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self._writer_lock.acquire():
                raise AuditError(f"another writer holds {self.directory / 'writer.lock'}")
            try:
                self._key, _ = load_or_create_signing_key(self.key_path)
                pub = self._key.public_key()
                self.key_id = key_id(pub)
                self.public_key_path, replaced = export_public_key(pub, self.directory)
                self._open_chain(replaced)
            except BaseException:
                self._writer_lock.release()
                raise
            self.metrics.set_queue_policy(self.queue_full)
            self.metrics.track_queue("audit", self._queue.__len__)
            for ex in self.exporters:
                ex.start()
            self._started = self._accepting = True
            self._thread = threading.Thread(target=self._run, name="vallum-audit-writer", daemon=True)
            self._thread.start()
            # A clean interpreter exit still gets its closing checkpoint if the owner forgot close().
            ref = weakref.ref(self)
            self._atexit = lambda: (lambda log: log.close() if log is not None else None)(ref())
            atexit.register(self._atexit)
        return self

    def emit(self, record: DecisionRecord) -> bool:
        """Queue one decision; never blocks. False = not accepted (the caller fails closed)."""
        q = self._queue
        # The lock makes "accepting?" and the append one step, so close() can never strand a record
        # it has already said yes to. It is held for a few hundred nanoseconds, never across I/O.
        with self._emit_lock:
            if not self._accepting:
                refused = True
            elif len(q) >= self.queue_size:
                refused = self.queue_full != "drop"
                if not refused:
                    self.dropped += 1
                    self._dropped_pending += 1
                    self.metrics.audit_dropped.inc()
                    return True
            else:
                q.append((time.monotonic(), record))
                refused = False
        if refused:
            self._count_refused()
            return False
        if not self._wake.is_set():
            self._wake.set()
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything emitted before this call is written and fsynced."""
        if not self._started or self._closed:
            return self._failed is None
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout) and self._failed is None

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting, drain the queue, write the closing checkpoint, stop the exporters."""
        with self._lock:
            if self._closed or not self._started:
                self._closed = True
                return
            self._closed = True
            with self._emit_lock:
                self._accepting = False
                self._queue.append(_CLOSE)
            self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        for ex in self.exporters:
            ex.close()
        self.metrics.track_queue("audit", lambda: 0)

    def __enter__(self) -> AuditLog:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def _count_refused(self) -> None:
        with self._emit_lock:
            self.refused += 1
            self._refused_pending += 1
        self.metrics.audit_refused.inc()

    # ------------------------------------------------------------------ start-up and recovery

    def _open_chain(self, replaced_key: str | None) -> None:
        segments = list_segments(self.directory)
        now = rfc3339(self._clock())
        fields: dict[str, Any] = {
            "software": f"vallum {__version__}",
            "pid": os.getpid(),
            "key_id": self.key_id,
            "checkpoint_every": self.checkpoint_every,
        }
        if replaced_key:
            fields["key_change"] = {"from": replaced_key, "to": self.key_id}
        if not segments:
            self._open_segment(1)
            self._make(KIND_START, now, fields)
            self._commit()
            return
        number, path = segments[-1]
        data = path.read_bytes()
        lines, torn = split_lines(data)
        found: dict[str, Any] = {}
        keys, _ = trusted_keys_beside(self.directory)
        checker = ChainChecker(keys)
        # The tail: everything since (at least) the last two checkpoints; `verify` checks the rest.
        tail_from = max(0, len(lines) - 2 * self.checkpoint_every - 2)
        try:
            for i, raw in enumerate(lines[tail_from:], start=tail_from + 1):
                checker.feed(path.name, i, raw)
        except ChainBroken as exc:
            found["tail_problems"] = [str(exc.problem)]
        last = _last_good(lines)
        if last is None:
            last = self._last_of_earlier(segments[:-1])
        if last is not None:
            entry, digest = last
            self._seq, self._prev = entry["seq"] + 1, digest
            if not (entry["kind"] == KIND_CHECKPOINT and entry.get("reason") == "close"):
                found["previous_end"] = "unclosed"
            if found or torn:
                found["last_seq"], found["last_kind"] = entry["seq"], entry["kind"]
        if torn:
            found["previous_end"] = "torn"
            found["torn_tail"] = torn_tail(path.name, len(data) - len(torn), torn).to_dict()
        rotated_out = last is not None and last[0]["kind"] == KIND_CHECKPOINT and last[0].get("reason") == "rotate"
        if torn or rotated_out or (last is None and lines):
            # Never append after a torn line or a rotation checkpoint: start the next file.
            self._open_segment(number + 1)
        else:
            self._open_segment(number, append=True)
        if found:
            fields["found"] = found
            log.warning("audit log recovery in %s: %s", self.directory, found)
        self._make(KIND_RECOVERY if found else KIND_START, now, json_safe(fields))
        self._commit()

    def _last_of_earlier(self, segments: list[tuple[int, Path]]) -> tuple[dict[str, Any], str] | None:
        for _, p in reversed(segments):
            raw = last_line(p)
            if raw is None:
                continue
            try:
                return parse_entry(raw)
            except ValueError:
                continue
        return None

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        q = self._queue
        closing = False
        waiters: list[threading.Event] = []
        try:
            while True:
                self._wake.clear()
                waiters = []
                n = 0
                while n < self._batch_max:
                    try:
                        item = q.popleft()
                    except IndexError:
                        break
                    if type(item) is tuple:
                        if self._oldest_enqueued is None:
                            self._oldest_enqueued = item[0]
                        self._add_decision(item[1])
                        n += 1
                    elif item is _CLOSE:
                        closing = True
                    else:
                        waiters.append(item)
                self._record_losses()
                if closing and not q:
                    self._checkpoint("close")
                    self._commit()
                    for w in waiters:
                        w.set()
                    break
                if self._buf:
                    self._write_buffer()
                now = time.monotonic()
                if self._unsynced and (
                    waiters
                    or len(self._unsynced) >= self.fsync_every
                    or now - self._first_unsynced >= self.fsync_interval
                ):
                    self._sync()
                for w in waiters:
                    w.set()
                if not q:
                    wait = 1.0
                    if self._unsynced:
                        wait = max(0.0, self.fsync_interval - (now - self._first_unsynced))
                    self._wake.wait(wait)
        except BaseException as exc:
            self._failed = exc
            with self._emit_lock:
                self._accepting = False
            self.metrics.audit_writer_errors.inc()
            log.exception("audit writer failed; decisions are now refused (fail closed)")
            for item in [*waiters, *list(q)]:
                if isinstance(item, threading.Event):
                    item.set()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._writer_lock.release()

    def _add_decision(self, record: DecisionRecord) -> None:
        body, redactions = decision_body(record)
        if redactions:
            self.metrics.audit_redactions.inc(redactions)
        self._make(KIND_DECISION, body.pop("ts"), body)
        self._after_entry()

    def _record_losses(self) -> None:
        if not (self._dropped_pending or self._refused_pending):
            return
        with self._emit_lock:
            dropped, self._dropped_pending = self._dropped_pending, 0
            refused, self._refused_pending = self._refused_pending, 0
        now = rfc3339(self._clock())
        if dropped:
            self._make(KIND_DROPPED, now, {"count": dropped, "policy": self.queue_full, "cause": "queue full"})
            self._after_entry()
        if refused:
            self._make(
                KIND_REFUSED,
                now,
                {
                    "count": refused,
                    "policy": self.queue_full,
                    "cause": "queue full or log not running; the traffic was blocked",
                },
            )
            self._after_entry()

    def _after_entry(self) -> None:
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_every:
            self._checkpoint("interval")
        if self._file_size + self._buf_bytes >= self.rotate_bytes:
            self._rotate()

    def _make(self, kind: str, ts: str, fields: dict[str, Any]) -> None:
        entry = fields  # always a fresh dict: extend it in place rather than copy it
        entry["v"] = FORMAT_VERSION
        entry["seq"] = self._seq
        entry["kind"] = kind
        entry["ts"] = ts
        entry["prev"] = self._prev
        try:
            encoded = encode_normalized(entry)
        except (TypeError, ValueError):
            # An unexpected type or a lone surrogate slipped past the fast path: take the slow one.
            entry = json_safe(entry)
            encoded = encode_normalized(entry)
        digest = hashlib.sha256(encoded).hexdigest()
        line = entry_line(encoded, digest)
        self._kinds[kind] += 1
        self._seq += 1
        self._prev = digest
        self._buf.append(line)
        self._buf_bytes += len(line)
        if not self._unsynced:
            self._first_unsynced = time.monotonic()
        if self.exporters:
            entry["hash"] = digest
            self._unsynced.append((entry, line))
        else:
            self._unsynced.append((None, line))  # keep no dicts alive that nobody will read

    def _checkpoint(self, reason: str) -> None:
        ts = rfc3339(self._clock())
        msg = checkpoint_message(self._seq, self._prev, ts, self.key_id, reason)
        sig = base64.b64encode(self._key.sign(msg)).decode("ascii")
        self._make(
            KIND_CHECKPOINT,
            ts,
            {
                "reason": reason,
                "key_id": self.key_id,
                "sig": sig,
                "entries": self._since_checkpoint,
            },
        )
        self._since_checkpoint = 0

    def _rotate(self) -> None:
        self._checkpoint("rotate")
        self._commit()
        previous = segment_name(self._segment)
        number = self._segment + 1
        pruned: list[dict[str, Any]] = []
        doomed: list[Path] = []
        if self.keep_files:
            for n, p in list_segments(self.directory):
                if n <= number - self.keep_files:
                    info = _segment_summary(p)
                    if info is not None:
                        pruned.append(info)
                    doomed.append(p)
        os.close(self._fd)
        self._fd = -1
        self._open_segment(number)
        self._make(KIND_ROTATE, rfc3339(self._clock()), {"previous_file": previous, "pruned": pruned})
        self._commit()
        for p in doomed:
            p.unlink(missing_ok=True)
        self._since_checkpoint += 1

    def _open_segment(self, number: int, append: bool = False) -> None:
        path = self.directory / segment_name(number)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._fd = os.open(path, flags, 0o640)
        self._segment = number
        self._file_size = os.fstat(self._fd).st_size
        if not append:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _write_buffer(self) -> None:
        data = b"".join(self._buf)
        self._buf.clear()
        self._buf_bytes = 0
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._file_size += len(data)

    def _commit(self) -> None:
        if self._buf:
            self._write_buffer()
        if self._unsynced:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._fd)
        done, self._unsynced = self._unsynced, []
        kinds, self._kinds = self._kinds, Counter()
        for kind, c in kinds.items():
            self.metrics.audit_entries.labels(kind).inc(c)
        if self._oldest_enqueued is not None:
            self.metrics.audit_write_lag.set(time.monotonic() - self._oldest_enqueued)
            self._oldest_enqueued = None
        self.metrics.audit_last_seq.set(self._seq - 1)
        for ex in self.exporters:
            try:
                ex.offer(done)
            except Exception:
                self.metrics.exporter_failures.labels(self.metrics.exporter(ex.name)).inc()
                log.exception("audit exporter %s refused entries", ex.name)


def _last_good(lines: list[bytes]) -> tuple[dict[str, Any], str] | None:
    for raw in reversed(lines):
        try:
            return parse_entry(raw)
        except ValueError:
            continue
    return None


def _segment_summary(path: Path) -> dict[str, Any] | None:
    raw = last_line(path)
    if raw is None:
        return None
    try:
        entry, digest = parse_entry(raw)
    except ValueError:
        return None
    return {"file": path.name, "last_seq": entry["seq"], "last_hash": digest}
