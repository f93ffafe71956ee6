"""State shared by several replicas through Redis (`redis_url`): rate limits and data budgets of
the egress proxy, session threat scores, and decision changes (pub/sub + a hash for late joiners).

Every key starts with `redis_prefix`. A Redis fault on the data path fails closed (the limiter
answers "exceeded", the threat store raises and the gate blocks) and is logged.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

from vallum.egress.limits import WINDOW, LimitResult

log = logging.getLogger("vallum.runtime")

_LIMIT_LUA = """
local cc = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
local cb = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
local pc = tonumber(redis.call('HGET', KEYS[2], 'c') or '0')
local pb = tonumber(redis.call('HGET', KEYS[2], 'b') or '0')
local w = tonumber(ARGV[1])
local nbytes = tonumber(ARGV[2])
local rl = tonumber(ARGV[3])
local bb = tonumber(ARGV[4])
local count = pc * w + cc
local sent = pb * w + cb
if rl > 0 and count + 1 > rl then return {0, 'rate_limit', tostring(count), tostring(sent)} end
if bb > 0 and sent + nbytes > bb then return {0, 'data_budget', tostring(count), tostring(sent)} end
redis.call('HINCRBY', KEYS[1], 'c', 1)
redis.call('HINCRBY', KEYS[1], 'b', nbytes)
redis.call('EXPIRE', KEYS[1], 180)
return {1, '', tostring(count + 1), tostring(sent + nbytes)}
"""

_THREAT_LUA = """
local ts = tonumber(ARGV[2])
local hl = tonumber(ARGV[3])
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local t = tonumber(redis.call('HGET', KEYS[1], 't') or ARGV[2])
local dt = ts - t
if dt < 0 then dt = 0 end
s = s * math.pow(0.5, dt / hl) + tonumber(ARGV[1])
if s < 0 then s = 0 end
if ts > t then t = ts end
redis.call('HSET', KEYS[1], 's', tostring(s), 't', tostring(t))
redis.call('EXPIRE', KEYS[1], 86400)
return tostring(s)
"""


class SharedState:
    """One Redis connection pool and the shared-state adapters built on it."""

    def __init__(self, url: str, prefix: str = "vallum:") -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._limit = self.client.register_script(_LIMIT_LUA)
        self._threat = self.client.register_script(_THREAT_LUA)
        self._sub_thread: threading.Thread | None = None
        self._pubsub: Any = None

    def ping(self) -> None:
        """Raises when Redis is unreachable (startup check)."""
        self.client.ping()

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
        self.client.close()

    # ------------------------------------------------------------------ rate limits
    def limiter(self) -> RedisRateLimiter:
        return RedisRateLimiter(self)

    # ------------------------------------------------------------------ session threat scores
    def threat_store(self) -> RedisThreatStore:
        return RedisThreatStore(self)

    # ------------------------------------------------------------------ decision changes
    @property
    def channel(self) -> str:
        return self.prefix + "decisions"

    def publish(self, kind: str, eid: str, action: str, reason: str) -> None:
        """A decision changed on this replica: record it and tell the others."""
        field = f"{kind}\x1f{eid}"
        msg = json.dumps({"type": kind, "id": eid, "action": action, "reason": reason})
        try:
            pipe = self.client.pipeline()
            if action == "allow":
                pipe.hdel(self.channel, field)
            else:
                pipe.hset(self.channel, field, msg)
            pipe.publish(self.channel, msg)
            pipe.execute()
        except Exception:
            log.exception("cannot publish a decision change to Redis")

    def subscribe(self, on_change: Any) -> None:
        """Load the current non-allow decisions, then follow changes in a daemon thread."""
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self.channel)
        for raw in self.client.hgetall(self.channel).values():
            self._deliver(on_change, raw)

        def run() -> None:
            while True:
                try:
                    m = self._pubsub.get_message(timeout=1.0)
                except Exception:
                    return
                if m is not None and m.get("type") == "message":
                    self._deliver(on_change, m["data"])

        self._sub_thread = threading.Thread(target=run, name="vallum-redis-sub", daemon=True)
        self._sub_thread.start()

    @staticmethod
    def _deliver(on_change: Any, raw: bytes | str) -> None:
        try:
            d = json.loads(raw)
            on_change(str(d["type"]), str(d["id"]), str(d["action"]), str(d.get("reason", "")))
        except Exception:
            log.exception("bad decision message from Redis")


class RedisRateLimiter:
    """The egress `RateLimiter` protocol over Redis: the same sliding-window counter, shared."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def check(self, key: str, now: float, nbytes: int, rate_limit: int, byte_budget: int) -> LimitResult:
        if rate_limit <= 0 and byte_budget <= 0:
            return LimitResult(True)
        idx = math.floor(now / WINDOW)
        start = idx * WINDOW
        weight = max(0.0, 1.0 - (now - start) / WINDOW)
        retry = max(0.0, start + WINDOW - now)
        base = f"{self.shared.prefix}rl:{key}:"
        try:
            ok, exceeded, count, sent = self.shared._limit(keys=[base + str(idx), base + str(idx - 1)],
                                                           args=[weight, nbytes, rate_limit, byte_budget])
        except Exception:
            log.exception("shared rate limiter unavailable; failing closed")
            return LimitResult(False, "rate_limit", 0.0, 0.0, 1.0)
        exc = exceeded.decode() if isinstance(exceeded, bytes) else str(exceeded)
        return LimitResult(bool(int(ok)), exc or None, float(count), float(sent), 0.0 if int(ok) else retry)


class RedisThreatStore:
    """Session threat scores in Redis (`ThreatStore` protocol), so a session that moves between
    replicas keeps its score."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def _key(self, key: str) -> str:
        return f"{self.shared.prefix}threat:{key}"

    def add(self, key: str, delta: float, ts: float, half_life: float) -> float:
        return float(self.shared._threat(keys=[self._key(key)], args=[delta, ts, half_life]))

    def score(self, key: str, ts: float, half_life: float) -> float:
        s, t = self.shared.client.hmget(self._key(key), ["s", "t"])
        if s is None:
            return 0.0
        dt = max(0.0, ts - float(t or ts))
        return float(s) * math.pow(0.5, dt / half_life)
