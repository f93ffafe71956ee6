"""Behaviour → inline: what the proxies ask before they let a principal's traffic through.

- `DecisionCache` answers a principal's current behaviour action from memory. It is refreshed on
  change: the behaviour service emits a record on every decision change (`ChangeListener`), and
  other replicas publish theirs (see `shared`). A miss reads the in-process engine (memory, no
  database) and is kept for `ttl` seconds.
- `SessionThreat` is a per-session score: blocks and near misses add to it, clean traffic and
  event time take it down. It escalates within a session before the engine has any history.
- `PrincipalGate` combines both into a posture `(action, reason, status)` for the proxies:
  `review` → warnings become blocks (request and response side alike: the egress proxy also
  hardens a warning in a response body or an SSE event), `challenge` → risky tool calls need
  approval, `block` → the
  principal's traffic is denied. Posture lookups never fail open: an internal fault is a block.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from vallum.decisions import DecisionRecord, Principal
from vallum.runtime.identity import AUTH_FAILED, AUTH_MISSING, principal_user, session_key

log = logging.getLogger("vallum.runtime")
ORDER = {"allow": 0, "review": 1, "challenge": 2, "block": 3}
Posture = tuple[str, str, int]


def strongest_action(*actions: str) -> str:
    return max(actions, key=lambda a: ORDER.get(a, 3), default="allow")


class DecisionCache:
    """(entity type, id) → the behaviour action, refreshed on change; misses read the engine."""

    def __init__(self, lookup: Callable[[str, str], tuple[str, str]] | None = None, *, ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.clock = clock
        self._local: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._remote: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def set(self, kind: str, eid: str, action: str, reason: str = "", *, remote: bool = False) -> None:
        """A decision changed (here, or on another replica when `remote`)."""
        with self._lock:
            if remote:
                if action == "allow":
                    self._remote.pop((kind, eid), None)
                else:
                    self._remote[(kind, eid)] = (action, reason)
            else:
                self._local[(kind, eid)] = (action, reason, self.clock() + self.ttl)
                if len(self._local) > 200_000:
                    self._local.clear()

    def get(self, kind: str, eid: str) -> tuple[str, str]:
        key = (kind, eid)
        now = self.clock()
        hit = self._local.get(key)
        if hit is not None and hit[2] > now:
            self.hits += 1
            action, reason = hit[0], hit[1]
        else:
            self.misses += 1
            action, reason = self.lookup(kind, eid) if self.lookup else ("allow", "")
            with self._lock:
                self._local[key] = (action, reason, now + self.ttl)
        remote = self._remote.get(key)
        if remote is not None and ORDER[remote[0]] > ORDER.get(action, 3):
            return remote
        return action, reason


class ThreatStore(Protocol):
    def add(self, key: str, delta: float, ts: float, half_life: float) -> float: ...
    def score(self, key: str, ts: float, half_life: float) -> float: ...


class MemoryThreatStore:
    """Session threat scores in this process (one replica)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._s: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys

    @staticmethod
    def _decayed(score: float, last: float, ts: float, half_life: float) -> float:
        dt = max(0.0, ts - last)
        return score * math.pow(0.5, dt / half_life) if half_life > 0 else score

    def add(self, key: str, delta: float, ts: float, half_life: float) -> float:
        with self._lock:
            score, last = self._s.get(key, (0.0, ts))
            score = max(0.0, self._decayed(score, last, ts, half_life) + delta)
            if score == 0.0:
                self._s.pop(key, None)
            else:
                if len(self._s) >= self.max_keys:
                    self._s.clear()
                self._s[key] = (score, max(ts, last))
            return score

    def score(self, key: str, ts: float, half_life: float) -> float:
        got = self._s.get(key)
        return 0.0 if got is None else self._decayed(got[0], got[1], ts, half_life)


class SessionThreat:
    """Per-session threat score: +block, +near miss, −clean traffic, halving every `half_life`."""

    BLOCK = 40.0
    WARN = 15.0
    CLEAN = -5.0

    def __init__(self, store: ThreatStore | None = None, *, half_life: float = 900.0,
                 review: float = 40.0, challenge: float = 70.0, block: float = 100.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store: ThreatStore = store or MemoryThreatStore()
        self.half_life = half_life
        self.thresholds = (("block", block), ("challenge", challenge), ("review", review))
        self.clock = clock

    def observe(self, record: DecisionRecord) -> float | None:
        if record.transport in ("behaviour", "scan.api"):
            return None
        if record.action == "block":
            # a block caused by the posture itself is not new evidence (no runaway feedback)
            if any(f.rule.startswith("behaviour.") for f in record.findings):
                return None
            delta = self.BLOCK
        elif record.action == "warn":
            delta = self.WARN
        else:
            delta = self.CLEAN
        return self.store.add(session_key(record.principal), delta, record.ts, self.half_life)

    def action(self, principal: Principal, ts: float | None = None) -> tuple[str, float]:
        s = self.store.score(session_key(principal), self.clock() if ts is None else ts, self.half_life)
        for name, limit in self.thresholds:
            if s >= limit:
                return name, s
        return "allow", s


class ChangeListener:
    """A `DecisionSink` for the behaviour service: each decision change refreshes the cache (and
    is published to the other replicas), and each inline decision feeds the session score."""

    def __init__(self, cache: DecisionCache, threat: SessionThreat,
                 publish: Callable[[str, str, str, str], None] | None = None) -> None:
        self.cache = cache
        self.threat = threat
        self.publish = publish

    def emit(self, record: DecisionRecord) -> bool:
        try:
            if record.transport == "behaviour":
                ent = record.extra.get("entity") or {}
                kind, eid = ent.get("type"), ent.get("id")
                if isinstance(kind, str) and isinstance(eid, str):
                    reason = ", ".join(f.rule for f in record.findings[:3])
                    self.cache.set(kind, eid, record.action, reason)
                    if self.publish is not None:
                        self.publish(kind, eid, record.action, reason)
            else:
                self.threat.observe(record)
        except Exception:  # bookkeeping must not refuse a decision; the gate fails closed instead
            log.exception("enforcement bookkeeping failed")
        return True


class PrincipalGate:
    """`gate(principal) -> (action, reason, status) | None`: the posture the proxies apply."""

    def __init__(self, cache: DecisionCache, threat: SessionThreat, *, enabled: bool = True) -> None:
        self.cache = cache
        self.threat = threat
        self.enabled = enabled

    def __call__(self, principal: Principal) -> Posture | None:
        if principal.source == AUTH_FAILED:
            return ("block", "proxy authentication failed (Proxy-Authorization)", 407)
        if principal.source == AUTH_MISSING:
            return ("block", "proxy authentication required (Proxy-Authorization)", 407)
        if not self.enabled:
            return None
        try:
            user = principal_user(principal)
            action, reason = self.cache.get("user", user)
            who = f"user {user}"
            if principal.agent:
                a2, r2 = self.cache.get("agent", principal.agent)
                if ORDER[a2] > ORDER[action]:
                    action, reason, who = a2, r2, f"agent {principal.agent}"
            s_action, s_score = self.threat.action(principal)
            if ORDER[s_action] > ORDER[action]:
                action, reason, who = s_action, f"session threat score {s_score:.0f}", "this session"
        except Exception:
            log.exception("posture lookup failed; failing closed")
            return ("block", "the principal's risk posture could not be determined (fail closed)", 403)
        if action == "allow":
            return None
        return (action, f"risk posture of {who} is {action}" + (f" ({reason})" if reason else ""), 403)


def engine_lookup(engine: Any) -> Callable[[str, str], tuple[str, str]]:
    """A `DecisionCache` lookup reading the in-process risk engine (memory only)."""

    def lookup(kind: str, eid: str) -> tuple[str, str]:
        d = engine.decide(kind, eid)
        reason = ", ".join(str(r.get("rule")) for r in (d.reasons or [])[:3])
        return d.action, reason

    return lookup
