"""The loop for MCP proxies that run apart from `vallum run` (`vallum mcp wrap|bridge|serve`).

With `VALLUM_API_URL` and `VALLUM_API_KEY` in the environment, such a proxy sends its decisions
as behaviour events to that API (batched in a background thread, bounded, lossy) and asks it for
its principals' posture (`GET /api/v1/decisions/…`, cached 2 s, so not a round trip per call).
A posture that cannot be read fails closed (the call is blocked, saying why).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import quote

from vallum.decisions import DecisionRecord, DecisionSink, FanoutSink
from vallum.runtime.enforcement import DecisionCache, Posture, PrincipalGate, SessionThreat
from vallum.runtime.feed import events_for

log = logging.getLogger("vallum.runtime")


class RemoteLoop:
    """A decision sink that posts behaviour events to a vallum API, and a gate reading it."""

    def __init__(self, api_url: str, api_key: str, *, max_queue: int = 20_000, interval: float = 0.2,
                 timeout: float = 2.0) -> None:
        import httpx

        self.api = api_url.rstrip("/")
        self.http = httpx.Client(headers={"authorization": f"Bearer {api_key}"}, timeout=timeout, trust_env=False)
        self.max_queue = max_queue
        self.interval = interval
        self._q: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.dropped = 0
        self.sent = 0
        self.threat = SessionThreat()
        self.cache = DecisionCache(self._lookup)
        self.gate = PrincipalGate(self.cache, self.threat)
        self._thread = threading.Thread(target=self._run, name="vallum-remote-loop", daemon=True)
        self._thread.start()
        atexit.register(self.flush)  # a stdio proxy ends with its client: deliver what is queued

    # ------------------------------------------------------------------ DecisionSink
    def emit(self, record: DecisionRecord) -> bool:
        try:
            self.threat.observe(record)
            evs = events_for(record)
        except Exception:
            log.exception("cannot turn a decision into behaviour events")
            return True
        with self._lock:
            if len(self._q) + len(evs) > self.max_queue:
                self.dropped += len(evs)
            else:
                self._q.extend(evs)
        return True

    def flush(self) -> None:
        """Post everything queued now (also called by the background thread)."""
        with self._send_lock:
            while True:
                with self._lock:
                    batch = [self._q.popleft() for _ in range(min(500, len(self._q)))]
                if not batch:
                    return
                try:
                    r = self.http.post(f"{self.api}/api/v1/events", json=batch)
                    if r.status_code != 202:
                        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
                    self.sent += len(batch)
                except Exception as exc:
                    self.dropped += len(batch)
                    log.warning("behaviour events not delivered to %s: %s", self.api, exc)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()

    # ------------------------------------------------------------------ posture
    def _lookup(self, kind: str, eid: str) -> tuple[str, str]:
        r = self.http.get(f"{self.api}/api/v1/decisions/{kind}/{quote(eid, safe='')}")
        if r.status_code != 200:
            raise RuntimeError(f"decision lookup: HTTP {r.status_code}")
        d = r.json()
        return str(d["action"]), ", ".join(str(x.get("rule")) for x in d.get("reasons", [])[:3])

    def posture(self, principal: Any) -> Posture | None:
        return self.gate(principal)


def attach_remote_loop(sink: DecisionSink) -> tuple[DecisionSink, Any]:
    """(sink, gate) for an MCP proxy: unchanged and None unless VALLUM_API_URL/VALLUM_API_KEY are set."""
    url, key = os.environ.get("VALLUM_API_URL", ""), os.environ.get("VALLUM_API_KEY", "")
    if not (url and key):
        return sink, None
    loop = RemoteLoop(url, key)
    return FanoutSink(sink, loop), loop.gate
