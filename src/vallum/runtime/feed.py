"""Inline → behaviour: every inline decision becomes a behaviour event for its principal.

`BehaviourFeed` is a `DecisionSink`. `emit` only converts and appends to a bounded queue (never
blocks, never refuses: losing a behaviour signal must not fail the data path; the audit log is
the evidence and has its own fail-closed policy). A background task hands batches to the
`BehaviourService`. Overflow is counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any

from vallum.behaviour.events import Event, EventError, validate_event
from vallum.decisions import DecisionRecord
from vallum.runtime.identity import principal_user

log = logging.getLogger("vallum.runtime")
_SEVERITY_SCORE = {"info": 0.1, "low": 0.3, "medium": 0.55, "high": 0.8, "critical": 1.0}
_MCP_TOOL_DIRECTIONS = {"tool_call": "tool.call", "tool_result": "tool.result"}


def _domain(record: DecisionRecord) -> str | None:
    dest = record.destination or ""
    if record.transport.startswith("mcp."):
        return None
    host = dest.split("://", 1)[-1].split("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host or None


def guard_score(record: DecisionRecord) -> float:
    """An inline decision's risk in 0-1: the strongest finding's severity, 1.0 for a block."""
    if record.action == "block":
        return 1.0
    best = max((_SEVERITY_SCORE.get(f.severity, 0.5) for f in record.findings), default=0.0)
    return min(best, 0.79) if record.action == "warn" else min(best, 0.3)


def events_for(record: DecisionRecord) -> list[dict[str, Any]]:
    """The behaviour events (as JSON objects) of one inline decision record."""
    if record.transport in ("behaviour", "scan.api"):
        return []
    if record.direction == "response" and record.action == "allow":
        return []  # the request's event already counts this exchange; a clean response adds nothing
    p = record.principal
    base: dict[str, Any] = {"ts": int(record.ts * 1000), "user": principal_user(p)}
    for k in ("session", "agent", "api_key", "ip"):
        v = getattr(p, k)
        if v:
            base[k] = v
    top = next((f for f in record.findings if str(f.action) == record.action), None) or (
        record.findings[0] if record.findings else None)
    # a denial caused by the principal's own posture is not new evidence against it
    denied = record.action == "block" and bool(record.findings) and all(
        f.rule.startswith(("behaviour.", "identity.")) for f in record.findings)
    action = "denied" if denied else record.action
    if action == "block" and record.direction == "tools_list":
        action = "withheld"  # a poisoned server's list is not the principal's doing
    attrs: dict[str, Any] = {
        "action": action,
        "transport": record.transport,
        "direction": record.direction,
        "guard_score": round(guard_score(record), 3),
    }
    if record.rules:
        attrs["rules"] = ",".join(record.rules)[:500]
        attrs["categories"] = ",".join(sorted({f.category for f in record.findings}))
    if top is not None:
        attrs["rule"] = top.rule
        attrs["category"] = top.category
        attrs["severity"] = top.severity
    dom = _domain(record)
    if dom:
        attrs["dest_domain"] = dom
    status = record.extra.get("status")
    if isinstance(status, int):
        attrs["http_status"] = status
    out = [{"type": "guard.verdict", "id": f"gv-{record.request_id}-{record.direction}", **base,
            "attrs": attrs}]
    etype = _MCP_TOOL_DIRECTIONS.get(record.direction)
    tool = record.extra.get("tool")
    if etype and record.transport.startswith("mcp.") and isinstance(tool, str):
        tattrs: dict[str, Any] = {"gen_ai.tool.name": tool, "server": str(record.extra.get("server", ""))}
        out.append({"type": etype, "id": f"{etype[5:]}-{record.request_id}", **base, "attrs": tattrs})
    return out


class BehaviourFeed:
    """A `DecisionSink` feeding inline decisions to the risk engine (batched, bounded, lossy)."""

    def __init__(self, service: Any, *, max_queue: int = 50_000, batch: int = 500,
                 interval: float = 0.05) -> None:
        self.service = service
        self.max_queue = max_queue
        self.batch = batch
        self.interval = interval
        self._q: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.accepted = 0
        self.dropped = 0
        self.rejected = 0
        self.delivered = 0

    # ------------------------------------------------------------------ DecisionSink
    def emit(self, record: DecisionRecord) -> bool:
        try:
            evs = events_for(record)
        except Exception:  # a conversion fault loses a signal, never the request
            log.exception("cannot turn a decision into behaviour events")
            self.rejected += 1
            return True
        if not evs:
            return True
        with self._lock:
            room = self.max_queue - len(self._q)
            if room < len(evs):
                self.dropped += len(evs)
                return True
            self._q.extend(evs)
            self.accepted += len(evs)
        return True

    # ------------------------------------------------------------------ delivery
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())

    @property
    def depth(self) -> int:
        return len(self._q)

    def _take(self) -> list[Event]:
        with self._lock:
            n = min(self.batch, len(self._q))
            raw = [self._q.popleft() for _ in range(n)]
        out: list[Event] = []
        for obj in raw:
            try:
                out.append(validate_event(obj))
            except EventError as exc:
                self.rejected += 1
                log.warning("behaviour event rejected: %s", exc)
        return out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(asyncio.CancelledError):
                await self.flush()

    async def flush(self) -> int:
        """Deliver everything queued now; returns how many events went to the engine."""
        n = 0
        while self._q:
            evs = self._take()
            if not evs:
                continue
            try:
                await self.service.submit(evs, key_id=None, wait=True)
                self.delivered += len(evs)
                n += len(evs)
            except Exception:
                self.dropped += len(evs)
                log.exception("behaviour feed: a batch of %d events failed", len(evs))
        return n

    async def stop(self) -> None:
        """Stop the task and drain the queue into the engine."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.flush()
