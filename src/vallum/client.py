"""The Python SDK: send events to a vallum server and ask for decisions.

    from vallum.client import Client
    with Client("http://127.0.0.1:8080", api_key="vk_…") as vc:
        vc.llm_request(user="u_1", model="m-large", input_tokens=180, output_tokens=640, cost_usd=0.012)
        vc.tool_call(user="u_1", agent="agent:support", tool="send_email", dest_domain="mail.example")
        print(vc.decide({"type": "auth.login", "user": "u_1", "ip": "192.0.2.4"})["action"])

Events are queued and sent in batches (by size or every `flush_interval` seconds) from a background
thread (`Client`) or task (`AsyncClient`); a failed batch is retried with backoff, and 4xx answers
other than 429 are not retried (the server said the batch itself is wrong). Every event gets an
`id` on the client, so a retried batch is ingested once.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = ["AsyncClient", "Client", "VallumError", "make_event"]

USER_AGENT = "vallum-python/0.1"


class VallumError(RuntimeError):
    """The server refused a request (status and its JSON error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def make_event(type: str, *, user: str | None = None, ts: str | int | None = None, id: str | None = None,
               attrs: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """An event dict (INTERFACES §7) with `ts` (now) and a random `id` filled in."""
    ev: dict[str, Any] = {"type": type, "ts": ts if ts is not None else _now_iso(),
                          "id": id or "evt-" + uuid.uuid4().hex}
    if user is not None:
        ev["user"] = user
    for k, v in fields.items():
        if v is not None:
            ev[k] = v
    ev["attrs"] = {k: v for k, v in (attrs or {}).items() if v is not None}
    return ev


def _llm_attrs(model: str | None, input_tokens: int | None, output_tokens: int | None, cost_usd: float | None,
               max_tokens: int | None, refused: bool | None, extra: dict[str, Any]) -> dict[str, Any]:
    return {"gen_ai.request.model": model, "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens, "cost_usd": cost_usd,
            "gen_ai.request.max_tokens": max_tokens, "refused": refused, **extra}


def _tool_attrs(tool: str, dest_domain: str | None, args_bytes: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    return {"gen_ai.tool.name": tool, "dest_domain": dest_domain, "args_bytes": args_bytes, **extra}


class _Base:
    def __init__(self, url: str, api_key: str, *, batch_size: int = 500, flush_interval: float = 1.0,
                 max_queue: int = 100_000, retries: int = 5, timeout: float = 10.0, gzip_min_bytes: int = 4096
                 ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.retries = retries
        self.timeout = timeout
        self.gzip_min_bytes = gzip_min_bytes
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        #: events the server rejected (each with its error), kept for inspection
        self.rejected: list[dict[str, Any]] = []
        self.sent = 0
        self.dropped = 0

    def _encode(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        body = "\n".join(json.dumps(e, separators=(",", ":")) for e in events).encode()
        headers = {**self.headers, "Content-Type": "application/x-ndjson"}
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def _settle(self, batch: list[dict[str, Any]], resp: httpx.Response) -> bool:
        """Account for one answer to a batch; True when no retry should follow."""
        if resp.status_code == 202:
            self._record(batch, resp)
            return True
        if not self._retryable(resp.status_code):
            self.dropped += len(batch)
            self.rejected.append({"event": None, "error": str(self._error(resp))})
            return True
        return False

    def _record(self, events: list[dict[str, Any]], resp: httpx.Response) -> None:
        data = resp.json()
        self.sent += int(data.get("accepted", 0))
        for r in data.get("rejected", []):
            i = r.get("index")
            self.rejected.append({"event": events[i] if isinstance(i, int) and i < len(events) else None,
                                  "error": r.get("error")})

    @staticmethod
    def _error(resp: httpx.Response) -> VallumError:
        try:
            msg = resp.json().get("error", resp.text)
        except ValueError:
            msg = resp.text
        return VallumError(resp.status_code, str(msg)[:500])

    @staticmethod
    def _retryable(status: int) -> bool:
        return status == 429 or status >= 500

    @staticmethod
    def _backoff(attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None and resp.headers.get("retry-after"):
            try:
                return min(float(resp.headers["retry-after"]), 30.0)
            except ValueError:
                pass
        return min(0.2 * 2 ** attempt, 10.0)


class Client(_Base):
    """Synchronous client with a background sender thread. Use as a context manager or call `close()`."""

    def __init__(self, url: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(url, api_key, **kwargs)
        self._http = httpx.Client(timeout=self.timeout, trust_env=False)
        self._queue: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._inflight = 0
        self._thread = threading.Thread(target=self._run, name="vallum-client", daemon=True)
        self._thread.start()

    # -- sending
    def send(self, event: dict[str, Any]) -> None:
        """Queue one event (dropped, and counted in `dropped`, when the queue is full)."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                return
            self._queue.append(event)
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    def send_many(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            self.send(e)

    def emit(self, type: str, **kwargs: Any) -> dict[str, Any]:
        ev = make_event(type, **kwargs)
        self.send(ev)
        return ev

    def llm_request(self, *, user: str, model: str | None = None, input_tokens: int | None = None,
                    output_tokens: int | None = None, cost_usd: float | None = None, max_tokens: int | None = None,
                    refused: bool | None = None, attrs: dict[str, Any] | None = None, **fields: Any
                    ) -> dict[str, Any]:
        """Emit an `llm.request` event with the OpenTelemetry GenAI attribute names."""
        return self.emit("llm.request", user=user, attrs=_llm_attrs(model, input_tokens, output_tokens, cost_usd,
                                                                      max_tokens, refused, attrs or {}), **fields)

    def tool_call(self, *, user: str, tool: str, agent: str | None = None, dest_domain: str | None = None,
                  args_bytes: int | None = None, attrs: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Emit a `tool.call` event."""
        return self.emit("tool.call", user=user, agent=agent, attrs=_tool_attrs(tool, dest_domain, args_bytes,
                                                                                  attrs or {}), **fields)

    def flush(self, timeout: float = 30.0) -> None:
        """Send everything queued so far (blocks until sent or `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
            while (self._queue or self._inflight) and time.monotonic() < deadline:
                self._cond.wait(0.05)
                self._cond.notify()

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self.flush_interval)
                if self._closed and not self._queue:
                    return
                batch, self._queue = self._queue[:self.batch_size], self._queue[self.batch_size:]
                self._inflight = len(batch)
            if batch:
                try:
                    self._post_batch(batch)
                except Exception:  # never kill the sender thread; the events are counted as dropped
                    self.dropped += len(batch)
            with self._cond:
                self._inflight = 0
                self._cond.notify_all()

    def _post_batch(self, batch: list[dict[str, Any]]) -> None:
        body, headers = self._encode(batch)
        resp: httpx.Response | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.post(f"{self.url}/api/v1/events", content=body, headers=headers)
                if self._settle(batch, resp):
                    return
            except httpx.HTTPError:
                resp = None
            if attempt < self.retries:
                time.sleep(self._backoff(attempt, resp))
        self.dropped += len(batch)

    # -- synchronous calls
    def send_now(self, events: list[dict[str, Any]], *, wait: bool = False) -> dict[str, Any]:
        """POST a batch now (no queue) and return the server's answer."""
        body, headers = self._encode(events)
        resp = self._http.post(f"{self.url}/api/v1/events", params={"wait": "true"} if wait else None,
                               content=body, headers=headers)
        if resp.status_code != 202:
            raise self._error(resp)
        return resp.json()

    def decide(self, event: dict[str, Any]) -> dict[str, Any]:
        """Ingest one event and get the decision for its user (POST /api/v1/decide)."""
        if "ts" not in event or "id" not in event:
            event = {**make_event(event["type"]), **event}
        resp = self._http.post(f"{self.url}/api/v1/decide", json=event, headers=self.headers)
        if resp.status_code != 200:
            raise self._error(resp)
        return resp.json()

    def decision(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        resp = self._http.get(f"{self.url}/api/v1/decisions/{entity_type}/{entity_id}", headers=self.headers)
        if resp.status_code != 200:
            raise self._error(resp)
        return resp.json()


class AsyncClient(_Base):
    """asyncio client: `await send(...)` queues; a background task sends batches. `await aclose()` at the end."""

    def __init__(self, url: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(url, api_key, **kwargs)
        self._http = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        self._queue: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def _ensure_task(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def send(self, event: dict[str, Any]) -> None:
        self._ensure_task()
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(event)
        self._idle.clear()
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    async def emit(self, type: str, **kwargs: Any) -> dict[str, Any]:
        ev = make_event(type, **kwargs)
        await self.send(ev)
        return ev

    async def llm_request(self, *, user: str, model: str | None = None, input_tokens: int | None = None,
                          output_tokens: int | None = None, cost_usd: float | None = None,
                          max_tokens: int | None = None, refused: bool | None = None,
                          attrs: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        return await self.emit("llm.request", user=user, attrs=_llm_attrs(
            model, input_tokens, output_tokens, cost_usd, max_tokens, refused, attrs or {}), **fields)

    async def tool_call(self, *, user: str, tool: str, agent: str | None = None, dest_domain: str | None = None,
                        args_bytes: int | None = None, attrs: dict[str, Any] | None = None, **fields: Any
                        ) -> dict[str, Any]:
        return await self.emit("tool.call", user=user, agent=agent,
                               attrs=_tool_attrs(tool, dest_domain, args_bytes, attrs or {}), **fields)

    async def flush(self) -> None:
        self._ensure_task()
        self._wake.set()
        await self._idle.wait()

    async def aclose(self) -> None:
        await self.flush()
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closed:
                    return
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            batch, self._queue = self._queue[:self.batch_size], self._queue[self.batch_size:]
            try:
                await self._post_batch(batch)
            except Exception:
                self.dropped += len(batch)

    async def _post_batch(self, batch: list[dict[str, Any]]) -> None:
        body, headers = self._encode(batch)
        resp: httpx.Response | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = await self._http.post(f"{self.url}/api/v1/events", content=body, headers=headers)
                if self._settle(batch, resp):
                    return
            except httpx.HTTPError:
                resp = None
            if attempt < self.retries:
                await asyncio.sleep(self._backoff(attempt, resp))
        self.dropped += len(batch)

    async def decide(self, event: dict[str, Any]) -> dict[str, Any]:
        if "ts" not in event or "id" not in event:
            event = {**make_event(event["type"]), **event}
        resp = await self._http.post(f"{self.url}/api/v1/decide", json=event, headers=self.headers)
        if resp.status_code != 200:
            raise self._error(resp)
        return resp.json()

    async def decision(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        resp = await self._http.get(f"{self.url}/api/v1/decisions/{entity_type}/{entity_id}", headers=self.headers)
        if resp.status_code != 200:
            raise self._error(resp)
        return resp.json()
