"""Decision sinks. `emit` must never block the data path.

`emit` returns False when the record could not be accepted (e.g. the audit queue is full and the
policy is to refuse new traffic rather than lose evidence): the caller then fails closed.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol, runtime_checkable

from vallum.decisions.record import DecisionRecord


@runtime_checkable
class DecisionSink(Protocol):
    def emit(self, record: DecisionRecord) -> bool: ...


class NullSink:
    """Accepts and forgets every record."""

    def emit(self, record: DecisionRecord) -> bool:
        return True


class MemorySink:
    """Keeps the last `maxlen` records in memory (tests, the console's recent-traffic view)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.records: deque[DecisionRecord] = deque(maxlen=maxlen)

    def emit(self, record: DecisionRecord) -> bool:
        self.records.append(record)
        return True


class FanoutSink:
    """Hands each record to every sink; refuses it if any sink that must not lose it refused."""

    def __init__(self, *sinks: DecisionSink) -> None:
        self.sinks: list[DecisionSink] = list(sinks)

    def add(self, sink: DecisionSink) -> None:
        self.sinks.append(sink)

    def emit(self, record: DecisionRecord) -> bool:
        ok = True
        for s in self.sinks:
            try:
                ok = s.emit(record) and ok
            except Exception:
                # A broken sink must not pass traffic silently: report refusal, caller fails closed.
                ok = False
        return ok
