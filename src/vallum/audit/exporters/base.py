"""`QueuedExporter`: a bounded queue plus one delivery thread; subclasses implement `deliver`."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from vallum.metrics import METRICS, VallumMetrics

log = logging.getLogger("vallum.audit.export")

Item = tuple[dict[str, Any], bytes]


class DeliveryError(Exception):
    """A batch could not be delivered; `retry` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class QueuedExporter:
    """Delivers batches of durable audit entries from its own thread, with retry and backoff."""

    name = "exporter"

    def __init__(
        self,
        *,
        max_queue: int = 10_000,
        batch_size: int = 100,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        metrics: VallumMetrics | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.metrics = metrics or METRICS
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        self._queue: deque[Item] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._label = self.metrics.exporter(self.name)

    def start(self) -> None:
        if self._thread is None:
            self.metrics.track_queue(f"export.{self.name}", self._queue.__len__)
            self._thread = threading.Thread(target=self._run, name=f"vallum-export-{self.name}", daemon=True)
            self._thread.start()

    def offer(self, entries: list[Item]) -> None:
        """Queue entries for delivery; never blocks. Entries beyond the queue bound are dropped."""
        room = self.max_queue - len(self._queue)
        if room < len(entries):
            lost = len(entries) - max(room, 0)
            self._drop(lost)
            entries = entries[: max(room, 0)]
        self._queue.extend(entries)
        self._idle.clear()
        self._wake.set()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty and no batch is in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._idle.wait(max(0.0, left)) and not self._queue:
                return True
            if left <= 0:
                return False
            time.sleep(0.005)

    def close(self, timeout: float = 5.0) -> None:
        self.drain(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._queue:  # what could not be delivered before shutdown is lost: count it
            self._drop(len(self._queue))
            self._queue.clear()
        self.shutdown()

    # subclass hooks
    def deliver(self, batch: list[Item]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release connections."""

    def _drop(self, n: int) -> None:
        self.dropped += n
        self.metrics.exporter_dropped.labels(self._label).inc(n)

    def _run(self) -> None:
        q = self._queue
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            while q and not self._stop.is_set():
                batch = [q.popleft() for _ in range(min(self.batch_size, len(q)))]
                self._send_with_retry(batch)
            if not q:
                self._idle.set()

    def _send_with_retry(self, batch: list[Item]) -> None:
        attempt = 0
        while True:
            try:
                self.deliver(batch)
            except Exception as exc:
                self.failures += 1
                self.metrics.exporter_failures.labels(self._label).inc()
                retry = getattr(exc, "retry", True)
                if not retry or attempt >= self.retries or self._stop.is_set():
                    log.warning("%s exporter gave up on %d entries: %s", self.name, len(batch), exc)
                    self._drop(len(batch))
                    return
                delay = min(self.max_backoff_s, self.backoff_s * (2**attempt))
                attempt += 1
                if self._stop.wait(delay):
                    self._drop(len(batch))
                    return
                continue
            self.sent += len(batch)
            self.metrics.exporter_sent.labels(self._label).inc(len(batch))
            return
