"""`vallum mcp serve`: a Streamable-HTTP MCP endpoint in front of an HTTP or a stdio server.

A raw ASGI app (run by uvicorn). Each downstream client gets a `Downstream`: its `McpSession`
and a channel to the upstream. For an HTTP upstream the channel is an `HttpUpstream` of its own
(so the upstream sees one session per client). For a stdio upstream every client shares one
process through `StdioMux`, which rewrites request ids and progress tokens to unique upstream
values and maps the answers back, so several HTTP clients can use one stdio server at once.

A POST holding requests is answered with an SSE stream (or one JSON body when the client does not
accept SSE) carrying the responses and the notifications that belong to them; a GET opens the
client's standalone stream for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from vallum.decisions import Principal
from vallum.mcp import jsonrpc
from vallum.mcp.http_upstream import HOP_HEADERS, HttpUpstream
from vallum.mcp.jsonrpc import BLOCKED_CODE, as_dict
from vallum.mcp.session import McpSession, ServerContext, id_from_key, id_key
from vallum.mcp.stdio import exit_status, read_lines

_END = object()
MAX_BACKLOG = 1000
MAX_SESSIONS = 10_000


class Downstream:
    """One HTTP client session: inspection state plus where its messages go."""

    def __init__(self, key: str, session: McpSession) -> None:
        self.key = key
        self.session = session
        #: request id key → queue of the POST stream waiting for it
        self.waiting: dict[str, asyncio.Queue[Any]] = {}
        #: progress token (as JSON) → request id key
        self.tokens: dict[str, str] = {}
        self.get_queue: asyncio.Queue[Any] | None = None
        self.backlog: list[bytes] = []
        self.last_used = time.monotonic()
        self.upstream: HttpUpstream | None = None

    def route(self, data: bytes, origin: str | None) -> None:
        """Put a server→client message on the stream it belongs to."""
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        target: str | None = None
        if isinstance(obj, dict):
            if "method" not in obj and "id" in obj:
                target = id_key(obj.get("id"))
            else:
                params = as_dict(obj.get("params"))
                if "progressToken" in params:
                    target = self.tokens.get(json.dumps(params["progressToken"]))
        target = target if target in self.waiting else origin if origin in self.waiting else None
        if target is not None:
            q = self.waiting[target]
            q.put_nowait(data)
            if isinstance(obj, dict) and "method" not in obj and id_key(obj.get("id")) == target:
                self.waiting.pop(target, None)
                q.put_nowait(_END)
            return
        if self.get_queue is not None:
            self.get_queue.put_nowait(data)
        elif self.waiting:
            # no standalone stream: ride on the newest open POST stream
            next(reversed(self.waiting.values())).put_nowait(data)
        elif len(self.backlog) < MAX_BACKLOG:
            self.backlog.append(data)


def _is_response(obj: Any) -> bool:
    return isinstance(obj, dict) and "method" not in obj


async def _replies(queue: asyncio.Queue[Any], remaining: set[str]) -> AsyncIterator[tuple[bytes, Any]]:
    """The messages routed to one POST, until every request in it is answered (`remaining` shrinks)."""
    while remaining:
        item = await queue.get()
        if item is _END:
            continue
        obj = json.loads(item)
        if _is_response(obj):
            remaining.discard(id_key(obj.get("id")))
        yield item, obj


class StdioMux:
    """One stdio server shared by many downstream sessions, with id and token mapping."""

    def __init__(self, cmd: list[str], ctx: ServerContext) -> None:
        self.cmd = cmd
        self.ctx = ctx
        self.proc: asyncio.subprocess.Process | None = None
        self.ids = itertools.count(1)
        self.id_map: dict[str, tuple[Downstream, Any]] = {}
        self.token_map: dict[str, tuple[Downstream, Any]] = {}
        self.server_requests: dict[str, Downstream] = {}
        self.clients: dict[str, Downstream] = {}
        self.init_result: dict[str, Any] | None = None
        self.initialized_sent = False
        self.last_active: Downstream | None = None
        self.reader: asyncio.Task[None] | None = None
        self.write_lock = asyncio.Lock()
        self.exited = asyncio.Event()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            limit=self.ctx.config.max_message_bytes + 1024)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        await read_lines(self.proc.stdout, self._from_server, lambda: None)
        self.exited.set()

    async def _write(self, obj: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        async with self.write_lock:
            if self.proc.stdin.is_closing():
                raise ConnectionError("stdio server has exited")
            self.proc.stdin.write(jsonrpc.dumps(obj) + b"\n")
            await self.proc.stdin.drain()

    async def send(self, ds: Downstream, data: bytes) -> None:
        """Forward one (already inspected) client message with ids/tokens made unique."""
        obj = json.loads(data)
        self.clients[ds.key] = ds
        if isinstance(obj, dict) and "method" in obj:
            method = obj["method"]
            params = as_dict(obj.get("params"))
            if obj.get("id") is not None:
                if method == "initialize" and self.init_result is not None:
                    # the server is already initialized by an earlier client: answer from the cache
                    ds_reply = jsonrpc.dumps(jsonrpc.result_response(obj["id"], self.init_result))
                    self._deliver(ds, ds_reply)
                    return
                up_id = next(self.ids)
                self.id_map[id_key(up_id)] = (ds, obj["id"])
                obj = {**obj, "id": up_id}
                self.last_active = ds
                meta = params.get("_meta") if params and isinstance(params.get("_meta"), dict) else None
                if meta is not None and "progressToken" in meta:
                    up_token = f"vallum-{up_id}"
                    self.token_map[json.dumps(up_token)] = (ds, meta["progressToken"])
                    obj["params"] = {**params, "_meta": {**meta, "progressToken": up_token}}
                if method == "initialize":
                    self._init_id = up_id
            elif method == "notifications/initialized":
                if self.initialized_sent:
                    return
                self.initialized_sent = True
            elif method == "notifications/cancelled" and params is not None:
                for k, (d, orig) in self.id_map.items():
                    if d is ds and orig == params.get("requestId"):
                        obj = {**obj, "params": {**params, "requestId": id_from_key(k)}}
                        break
        await self._write(obj)

    def _deliver(self, ds: Downstream, data: bytes, origin: str | None = None) -> None:
        out = ds.session.server_message(data, time.time())
        for b in out.to_client:
            ds.route(b, origin)

    async def _from_server(self, line: bytes) -> None:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            # unparsable or a batch: give it to the most recent client's session to judge
            if self.last_active is not None:
                self._deliver(self.last_active, line)
            return
        if "method" not in obj and "id" in obj:
            entry = self.id_map.pop(id_key(obj.get("id")), None)
            if entry is None:
                # no client asked for this id: the session check blocks it
                if self.last_active is not None:
                    self._deliver(self.last_active, line)
                return
            ds, orig = entry
            if getattr(self, "_init_id", None) == obj.get("id") and isinstance(obj.get("result"), dict):
                self.init_result = obj["result"]
            self._deliver(ds, jsonrpc.dumps({**obj, "id": orig}))
            for k in [k for k, (d, _t) in self.token_map.items() if d is ds and k == json.dumps(f"vallum-{obj['id']}")]:
                self.token_map.pop(k, None)
            return
        params = as_dict(obj.get("params"))
        if "progressToken" in params:
            entry = self.token_map.get(json.dumps(params["progressToken"]))
            if entry is not None:
                ds, orig_token = entry
                self._deliver(ds, jsonrpc.dumps({**obj, "params": {**params, "progressToken": orig_token}}))
                return
        if obj.get("id") is not None:
            # a server→client request (sampling, elicitation, roots): the client most recently active
            owner = self.last_active or next(iter(self.clients.values()), None)
            if owner is not None:
                self.server_requests[id_key(obj["id"])] = owner
                self._deliver(owner, line)
            return
        if obj.get("method") == "notifications/cancelled" and "requestId" in params:
            entry = self.id_map.get(id_key(params["requestId"]))
            if entry is not None:
                ds, orig = entry
                self._deliver(ds, jsonrpc.dumps({**obj, "params": {**params, "requestId": orig}}))
                return
        for ds in list(self.clients.values()):
            self._deliver(ds, line)

    def forget(self, ds: Downstream) -> None:
        self.clients.pop(ds.key, None)
        for k in [k for k, (d, _o) in self.id_map.items() if d is ds]:
            self.id_map.pop(k, None)
        if self.last_active is ds:
            self.last_active = None

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            code = await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            self.proc.terminate()
            code = await self.proc.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        return exit_status(code)


async def _read_body(receive: Callable[..., Any], limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        body = msg.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not msg.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Callable[..., Any], status: int, body: Any,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class McpHttpApp:
    """The ASGI app of `vallum mcp serve`."""

    def __init__(self, ctx: ServerContext, *, path: str = "/mcp", upstream: str | None = None,
                 headers: dict[str, str] | None = None, mux: StdioMux | None = None,
                 principal_resolver: Callable[[str, list[tuple[bytes, bytes]]], Principal] | None = None) -> None:
        self.ctx = ctx
        #: (client ip, headers) → who is behind a new session (`vallum run`: a trusted sidecar's
        #: X-Vallum-Principal); None = the session and client address only
        self.principal_resolver = principal_resolver
        self.path = path.rstrip("/") or "/"
        self.upstream_url = upstream
        self.upstream_headers = headers or {}
        self.mux = mux
        self.sessions: dict[str, Downstream] = {}
        #: session-less clients (address + name): their shared session state
        self.anon: dict[str, McpSession] = {}
        self.http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ sessions
    def _new_downstream(self, key: str, session: McpSession) -> Downstream:
        ds = Downstream(key, session)
        if self.upstream_url:
            async def deliver(data: bytes, origin: str | None, _ds: Downstream = ds) -> None:
                out = _ds.session.server_message(data, time.time())
                for b in out.to_client:
                    _ds.route(b, origin)
                for b in out.to_server:
                    assert _ds.upstream is not None
                    _ds.upstream.send(b)

            if self.http is None:
                self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
            ds.upstream = HttpUpstream(self.upstream_url, self.upstream_headers, deliver, client=self.http)
        return ds

    def _downstream(self, key: str, principal: Principal) -> tuple[Downstream, bool]:
        """The client's `Downstream`, and whether it lives for this POST only.

        Session-less (2026-07-28) POSTs each get their own (request ids of different clients may
        collide), sharing the call history and principal of the client address + name.
        """
        if key.startswith("anon:"):
            parent = self.anon.get(key)
            if parent is None:
                if len(self.anon) >= MAX_SESSIONS:
                    self.anon.pop(next(iter(self.anon)))
                parent = self.anon[key] = McpSession(self.ctx, principal, session_id=uuid.uuid4().hex[:16])
            session = McpSession(self.ctx, parent.principal, session_id=parent.session_id)
            session.history = parent.history
            return self._new_downstream(uuid.uuid4().hex, session), True
        ds = self.sessions.get(key)
        if ds is None:
            if len(self.sessions) >= MAX_SESSIONS:
                oldest = min(self.sessions.values(), key=lambda d: d.last_used)
                self.sessions.pop(oldest.key, None)
            ds = self.sessions[key] = self._new_downstream(key, McpSession(self.ctx, principal, session_id=key))
        ds.last_used = time.monotonic()
        return ds, False

    async def _forward(self, ds: Downstream, data: bytes, extra: dict[str, str]) -> None:
        if ds.upstream is not None:
            ds.upstream.send(data, extra)
            await asyncio.sleep(0)
        else:
            assert self.mux is not None
            try:
                await self.mux.send(ds, data)
            except (ConnectionError, ValueError) as exc:
                obj = json.loads(data)
                if isinstance(obj, dict) and "method" in obj and obj.get("id") is not None:
                    ds.route(jsonrpc.dumps(jsonrpc.error_response(obj["id"], -32603, f"upstream: {exc}")), None)

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"].rstrip("/") != self.path.rstrip("/") and not (self.path == "/" and scope["path"] == "/"):
            await _send_json(send, 404, {"error": "not found"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not origin_allowed(headers):
            # DNS rebinding: a web page must not drive a local MCP endpoint from the browser
            await _send_json(send, 403, {"error": "origin not allowed"})
            return
        method = scope["method"]
        if method == "POST":
            await self._post(scope, headers, receive, send)
        elif method == "GET":
            await self._get(headers, send)
        elif method == "DELETE":
            ds = self.sessions.pop(headers.get("mcp-session-id", ""), None)
            if ds is not None:
                await self._drop(ds)
            await send({"type": "http.response.start", "status": 204 if ds else 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _send_json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET, POST, DELETE")])

    async def _drop(self, ds: Downstream) -> None:
        if ds.upstream is not None:
            await ds.upstream.close()
        if self.mux is not None:
            self.mux.forget(ds)

    def _session_key(self, headers: dict[str, str], messages: list[Any], scope: dict[str, Any]) -> tuple[str, bool]:
        sid = headers.get("mcp-session-id")
        if sid:
            return sid, False
        if any(isinstance(m, dict) and m.get("method") == "initialize" for m in messages):
            return uuid.uuid4().hex, True
        # 2026-07-28 requests are session-less: one inspection session per client address and name
        client = scope.get("client") or ("?", 0)
        name = ""
        for m in messages:
            meta = (m.get("params") or {}).get("_meta") if isinstance(m, dict) and isinstance(m.get("params"), dict) \
                else None
            if isinstance(meta, dict) and isinstance(meta.get("io.modelcontextprotocol/clientInfo"), dict):
                name = str(meta["io.modelcontextprotocol/clientInfo"].get("name", ""))
        return f"anon:{client[0]}:{name}", False

    async def _post(self, scope: dict[str, Any], headers: dict[str, str], receive: Callable[..., Any],
                    send: Callable[..., Any]) -> None:
        body = await _read_body(receive, self.ctx.config.max_message_bytes)
        if body is None:
            await _send_json(send, 413, jsonrpc.error_response(None, BLOCKED_CODE, "message too large"))
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        messages = parsed if isinstance(parsed, list) else [parsed]
        key, created = self._session_key(headers, messages, scope)
        if not created and headers.get("mcp-session-id") and key not in self.sessions:
            await _send_json(send, 404, jsonrpc.error_response(None, -32600, "unknown or expired session"))
            return
        client = scope.get("client") or (None, None)
        principal = Principal(session=None if key.startswith("anon:") else key, ip=client[0], source="mcp_session")
        if self.principal_resolver is not None:
            known = self.principal_resolver(client[0] or "", list(scope["headers"]))
            if known.is_known:
                principal = dataclasses.replace(known, session=principal.session or known.session)
        ds, ephemeral = self._downstream(key, principal)
        try:
            await self._exchange(ds, key, parsed, body, headers, send)
        finally:
            if ephemeral:
                parent = self.anon.get(key)
                if parent is not None and ds.session.principal.agent and not parent.principal.agent:
                    parent.principal = ds.session.principal
                if self.mux is not None:
                    self.mux.forget(ds)

    async def _exchange(self, ds: Downstream, key: str, parsed: Any, body: bytes, headers: dict[str, str],
                        send: Callable[..., Any]) -> None:
        """Judge and forward the messages of one POST, then stream or return the answers."""
        extra = {k: v for k, v in headers.items() if k not in HOP_HEADERS and k not in ("accept", "content-type")}
        now = time.time()
        # the session judges the raw bytes (duplicate keys, framing) before anything is forwarded
        items = [body] if not isinstance(parsed, list) else [jsonrpc.dumps(m) for m in parsed]
        if isinstance(parsed, list) and jsonrpc_dup(body):
            items = [body]
        request_keys: list[str] = []
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in items:
            try:
                obj = json.loads(item)
            except ValueError:
                obj = None
            out = ds.session.client_message(item, now)
            for m in [obj] if isinstance(obj, dict) else []:
                if "method" in m and m.get("id") is not None:
                    k = id_key(m["id"])
                    request_keys.append(k)
                    ds.waiting[k] = queue
                    params = as_dict(m.get("params"))
                    meta = as_dict(params.get("_meta"))
                    if "progressToken" in meta:
                        ds.tokens[json.dumps(meta["progressToken"])] = k
            for b in out.to_client:
                ds.route(b, request_keys[-1] if request_keys else None)
            for b in out.to_server:
                await self._forward(ds, b, extra)
        sid_header = [(b"mcp-session-id", key.encode())] if not key.startswith("anon:") else []
        if not request_keys:
            await send({"type": "http.response.start", "status": 202, "headers": sid_header})
            await send({"type": "http.response.body", "body": b""})
            return
        remaining = set(request_keys)
        wants_sse = "text/event-stream" in headers.get("accept", "")
        try:
            if not wants_sse:
                replies = [obj async for _, obj in _replies(queue, remaining) if _is_response(obj)]
                payload = replies[0] if len(replies) == 1 and not isinstance(parsed, list) else replies
                await _send_json(send, 200, payload, sid_header)
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                    *sid_header]})
            async for item, _ in _replies(queue, remaining):
                await send({"type": "http.response.body", "body": b"event: message\ndata: " + item + b"\n\n",
                            "more_body": True})
        finally:
            # in both modes, and when the client goes away mid-wait: nothing stays routed to this POST
            for k in request_keys:
                ds.waiting.pop(k, None)
            for t, k in list(ds.tokens.items()):
                if k in request_keys:
                    ds.tokens.pop(t, None)
        await send({"type": "http.response.body", "body": b""})

    async def _get(self, headers: dict[str, str], send: Callable[..., Any]) -> None:
        if "text/event-stream" not in headers.get("accept", ""):
            await _send_json(send, 406, {"error": "GET needs Accept: text/event-stream"})
            return
        ds = self.sessions.get(headers.get("mcp-session-id", ""))
        if ds is None:
            await _send_json(send, 405 if not headers.get("mcp-session-id") else 404,
                             {"error": "no session for a standalone stream"})
            return
        q: asyncio.Queue[Any] = asyncio.Queue()
        for b in ds.backlog:
            q.put_nowait(b)
        ds.backlog.clear()
        ds.get_queue = q
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        try:
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), 15.0)
                except TimeoutError:
                    await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                    continue
                await send({"type": "http.response.body", "body": b"event: message\ndata: " + item + b"\n\n",
                            "more_body": True})
        finally:
            if ds.get_queue is q:
                ds.get_queue = None

    async def close(self) -> None:
        for ds in list(self.sessions.values()):
            await self._drop(ds)
        self.sessions.clear()
        if self.http is not None:
            await self.http.aclose()


def origin_allowed(headers: dict[str, str]) -> bool:
    """No Origin (a non-browser client), a loopback origin, or the endpoint's own host."""
    origin = headers.get("origin")
    if not origin:
        return True
    host = urlsplit(origin).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    own = urlsplit("//" + headers.get("host", "")).hostname or ""
    return bool(own) and host == own


def jsonrpc_dup(body: bytes) -> bool:
    """Whether a body has duplicate keys anywhere (then it is judged whole, and blocked)."""
    try:
        jsonrpc.loads_strict(body)
    except jsonrpc.DuplicateKeyError:
        return True
    except ValueError:
        return False
    return False


async def run_server(ctx: ServerContext, host: str, port: int, *, path: str = "/mcp", upstream: str | None = None,
                     headers: dict[str, str] | None = None, cmd: list[str] | None = None,
                     ready: asyncio.Event | None = None) -> int:
    """Serve until interrupted (or until the stdio server exits); return an exit status."""
    import uvicorn

    mux = StdioMux(cmd, ctx) if cmd else None
    if mux is not None:
        await mux.start()
    app = McpHttpApp(ctx, path=path, upstream=upstream, headers=headers, mux=mux)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    serve_task = asyncio.create_task(server.serve())
    waits: set[asyncio.Task[Any]] = {serve_task}
    if mux is not None:
        waits.add(asyncio.create_task(mux.exited.wait()))
    if ready is not None:
        while not server.started and not serve_task.done():
            await asyncio.sleep(0.01)
        ready.set()
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if not serve_task.done():
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serve_task
    for t in waits:
        t.cancel()
    await app.close()
    return await mux.stop() if mux is not None else 0
