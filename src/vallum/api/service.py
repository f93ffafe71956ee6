"""`BehaviourService`: the risk engine wired to the store, the decision sink and the webhook.

One worker thread runs every store write and every engine step, in arrival order: ingestion stays
ordered, SQLite has its single writer, and the engine needs no finer locking. Async callers (the
HTTP API, the console, the proxies) await `submit`, `decide_event` and `call`; synchronous
in-process callers can use `engine` directly for reads (`engine.current_action(...)`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vallum.behaviour.engine import DecisionChange, IngestResult, RiskEngine
from vallum.behaviour.events import Event, event_from_stored
from vallum.behaviour.rules import RuleSet, load_ruleset
from vallum.behaviour.scoring import ACTION_ORDER, Decision
from vallum.config import Config
from vallum.decisions import DecisionRecord, DecisionSink, NullSink, Principal
from vallum.detection.model import Action, Finding
from vallum.storage.store import Store, open_store

log = logging.getLogger("vallum.behaviour")
T = TypeVar("T")
_RULE_SEVERITY_ACTION = {"allow": Action.ALLOW, "review": Action.WARN, "challenge": Action.WARN,
                         "block": Action.BLOCK}


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


@dataclass(slots=True)
class SubmitResult:
    fresh: list[bool]
    scored: bool = False


class TokenBucket:
    """Events per minute per API key (wall clock: this protects the server, not a behaviour rule)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, n: int, now: float) -> float:
        """Consume n tokens; returns 0 on success or the seconds to wait."""
        if self.capacity <= 0:
            return 0.0
        with self._lock:
            tokens, last = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if n > tokens:
                self._state[key] = (tokens, now)
                return max((n - tokens) / self.rate, 0.001) if n <= self.capacity else 60.0
            self._state[key] = (tokens - n, now)
            return 0.0


class BehaviourService:
    """Store + engine + sink + webhook. Create, then `await start()`; `await stop()` at shutdown."""

    def __init__(self, config: Config, *, store: Store | None = None, sink: DecisionSink | None = None,
                 engine: RiskEngine | None = None) -> None:
        self.config = config
        bcfg = config.behaviour
        self.store = store if store is not None else open_store(config.store_url(),
                                                                  migrate=config.store.migrate_on_start,
                                                                  pool_size=config.store.pool_size)
        self.sink: DecisionSink = sink if sink is not None else NullSink()
        self.engine = engine if engine is not None else RiskEngine(bcfg, self._load_rules())
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vallum-behaviour")
        self.bucket = TokenBucket(bcfg.rate_limit_per_key_per_minute)
        self.pending_events = 0
        self.started_at = time.time()
        self.ready = False
        self._pending_lock = threading.Lock()
        self._key_cache: dict[str, tuple[str | None, float]] = {}
        self._rule_mtimes = self._mtimes()
        self._last_reload_check = 0.0
        self._last_retention = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._webhook_q: asyncio.Queue[dict[str, Any]] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self.webhook_failures = 0
        self.webhooks_sent = 0
        #: called on the worker thread with (decision, previous action) whenever an action changes;
        #: the proxies use it to invalidate their cached actions (keep callbacks quick)
        self.listeners: list[Callable[[Decision, str], None]] = []

    # ------------------------------------------------------------------ lifecycle
    def _load_rules(self) -> RuleSet:
        b = self.config.behaviour
        rs = load_ruleset(b.rule_files, b.disable)
        for p in rs.problems:
            log.warning("rule problem: %s", p)
        return rs

    def _mtimes(self) -> dict[str, float]:
        out = {}
        for p in self.config.behaviour.rule_files:
            try:
                out[p] = os.stat(p).st_mtime
            except OSError:
                out[p] = -1.0
        return out

    def start_sync(self) -> None:
        """Load overrides and rule settings, then replay stored history into the engine."""
        for o in self.store.list_overrides():
            self.engine.set_override(o["entity_type"], o["entity_id"], o["action"], reason=o["reason"],
                                     created_by=o["created_by"], created_at=o["created_at"],
                                     expires_at=o["expires_at"])
        for rid, s in self.store.rule_settings().items():
            self.engine.set_rule_setting(rid, enabled=bool(s["enabled"]), weight=s["weight"])
        if self.config.behaviour.replay_on_start:
            self.replay()
        self.ready = True

    def replay(self) -> int:
        """Rebuild engine state from stored events (event-time order); derived rows are rewritten."""
        self.store.clear_derived()
        batch: list[Event] = []
        n = 0
        for d in self.store.iter_events():
            try:
                batch.append(event_from_stored(d))
            except ValueError:
                continue
            if len(batch) >= 2000:
                n += len(batch)
                self._persist(self.engine.ingest(batch), notify=False)
                batch = []
        if batch:
            n += len(batch)
            self._persist(self.engine.ingest(batch), notify=False)
        return n

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._webhook_q = asyncio.Queue(maxsize=10_000)
        await self.call(self.start_sync)
        if self.config.behaviour.webhook_url:
            self._webhook_task = asyncio.create_task(self._webhook_worker())
        self._sweep_task = asyncio.create_task(self._sweeper())

    async def stop(self) -> None:
        for t in (self._webhook_task, self._sweep_task):
            if t is not None:
                t.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the behaviour worker thread (after everything queued before it)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    # ------------------------------------------------------------------ keys
    def cached_key(self, key: str, now: float) -> tuple[str | None] | None:
        """`(key id or None,)` when `verify_key` answered for this key within its cache second."""
        hit = self._key_cache.get(key)
        if hit is not None and hit[1] > now:
            return (hit[0],)
        return None

    def verify_key(self, key: str, now: float) -> str | None:
        hit = self._key_cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        kid = self.store.verify_key(key)
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        # a revocation reaches a running server within a second
        self._key_cache[key] = (kid, now + 1.0)
        return kid

    # ------------------------------------------------------------------ ingestion
    def check_rate(self, key_id: str, n: int, now: float) -> None:
        wait = self.bucket.take(key_id, n, now)
        if wait > 0:
            raise RateLimited(wait)

    async def submit(self, events: Sequence[Event], *, key_id: str | None, wait: bool = False) -> SubmitResult:
        """Store events durably (returns once committed); score them in order on the worker."""
        received = time.time()
        fresh = await self.call(self.store.insert_events, events, key_id=key_id, received_at=received)
        new = [e for e, f in zip(events, fresh, strict=True) if f]
        if not new:
            return SubmitResult(fresh, scored=True)
        with self._pending_lock:
            self.pending_events += len(new)
        fut = asyncio.get_running_loop().run_in_executor(self.executor, self._score, new)
        if wait:
            await fut
            return SubmitResult(fresh, scored=True)
        fut.add_done_callback(_log_failure)
        return SubmitResult(fresh, scored=False)

    def _score(self, events: list[Event]) -> IngestResult:
        try:
            self._maybe_reload()
            ordered = sorted(events, key=lambda e: e.ts)
            result = self.engine.ingest(ordered)
            self._persist(result, notify=True)
            self._maybe_retention()
            return result
        finally:
            with self._pending_lock:
                self.pending_events -= len(events)

    def decide_event_sync(self, event: Event, key_id: str | None) -> tuple[Decision, bool]:
        fresh = self.store.insert_events([event], key_id=key_id, received_at=time.time())
        if fresh[0]:
            with self._pending_lock:
                self.pending_events += 1
            self._score([event])
        kind, eid = ("user", event.user) if event.user else ("ip", event.ip or "")
        return self.engine.decide(kind, eid), fresh[0]

    async def decide_event(self, event: Event, *, key_id: str | None) -> Decision:
        """Ingest one event and answer the decision for its user (POST /api/v1/decide)."""
        d, _ = await self.call(self.decide_event_sync, event, key_id)
        return d

    async def flush(self) -> None:
        """Wait until everything queued so far is scored."""
        await self.call(lambda: None)

    # ------------------------------------------------------------------ persistence & notifications
    def _persist(self, result: IngestResult, *, notify: bool) -> None:
        decisions: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for ch in result.changes:
            d = ch.decision
            decisions.append({"entity_type": d.entity_type, "entity_id": d.entity_id, "action": d.action,
                              "score": d.score, "reasons": d.reasons, "as_of": d.as_of})
            history.append({"entity_type": d.entity_type, "entity_id": d.entity_id, "ts": d.as_of,
                            "score": d.score, "action": d.action})
        hits = [{"rule": h.rule, "entity_type": h.entity_type, "entity_id": h.entity_id, "ts": h.ts,
                 "weight": h.weight, "detail": h.detail, "event_id": h.event_id} for h in result.hits]
        # keep only the last row per entity for the upsert (one statement may not touch a row twice)
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for row in decisions:
            last[(row["entity_type"], row["entity_id"])] = row
        self.store.save_decisions(list(last.values()), history, hits)
        now = time.time()
        for ch in result.changes:
            if not ch.action_changed:
                continue
            d = ch.decision
            if ACTION_ORDER[d.action] >= ACTION_ORDER["review"] and d.override is None:
                self.store.open_review(d.entity_type, d.entity_id, action=d.action, score=d.score, now=now)
            if notify:
                self._notify(ch, now)

    def _notify(self, ch: DecisionChange, now: float) -> None:
        d = ch.decision
        principal = Principal(**{d.entity_type: d.entity_id}) if d.entity_type in (
            "user", "session", "agent", "api_key", "ip") else Principal()
        findings = []
        for r in d.reasons[:10]:
            rule = self.engine.ruleset.rule(r["rule"])
            findings.append(Finding(rule=r["rule"], category="behaviour",
                                    severity=rule.severity if rule else "medium",
                                    action=_RULE_SEVERITY_ACTION[d.action], message=rule.description if rule else "",
                                    location=f"{d.entity_type}:{d.entity_id}", evidence=str(r["detail"])[:200]))
        rec = DecisionRecord(ts=now, transport="behaviour", action=d.action, direction="event",
                             principal=principal, findings=findings,
                             extra={"entity": {"type": d.entity_type, "id": d.entity_id}, "score": d.score,
                                    "previous": ch.previous})
        try:
            self.sink.emit(rec)
        except Exception:  # the sink owns its failures; scoring goes on
            log.exception("decision sink failed")
        for listener in self.listeners:
            try:
                listener(d, ch.previous)
            except Exception:
                log.exception("decision listener failed")
        if self._webhook_q is not None and self._loop is not None and self.config.behaviour.webhook_url:
            payload = {"event": "decision.changed", "previous": ch.previous, **d.to_dict()}
            self._loop.call_soon_threadsafe(self._enqueue_webhook, payload)

    def _enqueue_webhook(self, payload: dict[str, Any]) -> None:
        assert self._webhook_q is not None
        try:
            self._webhook_q.put_nowait(payload)
        except asyncio.QueueFull:
            self.webhook_failures += 1

    async def _webhook_worker(self) -> None:
        import httpx

        assert self._webhook_q is not None
        url = self.config.behaviour.webhook_url
        async with httpx.AsyncClient(timeout=self.config.behaviour.webhook_timeout_s, trust_env=False) as client:
            while True:
                payload = await self._webhook_q.get()
                for attempt in range(3):
                    try:
                        r = await client.post(url, json=payload)
                        if r.status_code < 500:
                            self.webhooks_sent += 1
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    self.webhook_failures += 1
                    log.warning("webhook to %s failed for %s", url, payload.get("entity"))

    async def _sweeper(self) -> None:
        """Decay step-downs happen on event time; check between batches every few seconds."""
        while True:
            await asyncio.sleep(5.0)
            try:
                await self.call(lambda: self._persist(self.engine.sweep(), notify=True))
            except Exception:
                log.exception("decay sweep failed")

    # ------------------------------------------------------------------ rules
    def _maybe_reload(self) -> None:
        if not self.config.behaviour.hot_reload:
            return
        now = time.monotonic()
        if now - self._last_reload_check < 1.0:
            return
        self._last_reload_check = now
        m = self._mtimes()
        if m != self._rule_mtimes:
            self._rule_mtimes = m
            self.reload_rules()

    def reload_rules(self) -> RuleSet:
        rs = self._load_rules()
        self.engine.set_ruleset(rs)
        log.info("behaviour rules reloaded: %d rules, %d problems", len(rs.rules), len(rs.problems))
        return rs

    def _maybe_retention(self) -> None:
        now = time.monotonic()
        if now - self._last_retention < 600:
            return
        self._last_retention = now
        if self.engine.clock <= 0:
            return
        cutoff = self.engine.clock - self.config.behaviour.retention_days * 86400.0
        self.store.purge_events_before(int(cutoff * 1000))

    # ------------------------------------------------------------------ overrides, reviews, privacy
    def set_override_sync(self, kind: str, eid: str, action: str, *, reason: str = "", created_by: str = "",
                          expires_in_s: float | None = None) -> Decision:
        now = time.time()
        expires_at = self.engine.clock + expires_in_s if expires_in_s else None
        self.store.set_override(kind, eid, action, reason=reason, created_by=created_by, now=now,
                                expires_at=expires_at)
        self._persist(self.engine.set_override(kind, eid, action, reason=reason, created_by=created_by,
                                               created_at=now, expires_at=expires_at), notify=True)
        return self.engine.decide(kind, eid)

    def remove_override_sync(self, kind: str, eid: str) -> bool:
        found = self.store.delete_override(kind, eid)
        self._persist(self.engine.remove_override(kind, eid), notify=True)
        return found

    def delete_user_sync(self, user: str) -> dict[str, int]:
        counts = self.store.delete_user(user)
        self.engine.forget_user(user)
        return counts

    def set_rule_setting_sync(self, rule_id: str, *, enabled: bool | None, weight: float | None) -> None:
        settings = self.store.rule_settings().get(rule_id, {})
        en = enabled if enabled is not None else bool(settings.get("enabled", True))
        w = weight if weight is not None else settings.get("weight")
        self.store.set_rule_setting(rule_id, enabled=en, weight=w, now=time.time())
        self.engine.set_rule_setting(rule_id, enabled=en, weight=w)


def _log_failure(fut: concurrent.futures.Future[Any] | asyncio.Future[Any]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("scoring failed: %s", exc, exc_info=exc)
