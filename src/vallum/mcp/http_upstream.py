"""Streamable-HTTP client side of the proxy (`vallum mcp bridge`, `serve --upstream`).

`HttpUpstream` POSTs each client→server message to the MCP endpoint and hands every message the
server sends back — a JSON body, or the events of an SSE response — to a callback, tagged with
the request it answers. After a legacy `initialize` it opens the standalone GET stream for
server-initiated messages. It keeps the server's `Mcp-Session-Id`, stamps the per-message
routing headers of protocol 2026-07-28 (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) and
adds the user's headers (e.g. `Authorization`) to every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from vallum.mcp import jsonrpc
from vallum.mcp.jsonrpc import as_dict
from vallum.mcp.session import McpSession, id_key
from vallum.mcp.stdio import LineWriter, StreamLineWriter, read_lines

PROTOCOL_META_KEY = "io.modelcontextprotocol/protocolVersion"
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
#: headers never copied from a downstream request to the upstream one
HOP_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade",
                         "te", "trailer", "proxy-authorization", "proxy-connection", "accept-encoding",
                         "mcp-session-id", "last-event-id", "x-vallum-principal"})

#: (message bytes, id key of the request whose POST carried it, or None for the GET stream)
Deliver = Callable[[bytes, str | None], Awaitable[None]]


def parse_headers(items: list[str]) -> dict[str, str]:
    """`['Authorization: Bearer x', …]` → dict; raises ValueError naming a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n") or "\n" in value or "\r" in value:
            raise ValueError(f"header must look like 'Name: value', got {item!r}")
        out[name.strip()] = value.strip()
    return out


def default_name_for_url(url: str) -> str:
    """A server name from its URL: host[_port]."""
    parts = urlsplit(url)
    host = parts.hostname or "server"
    return f"{host}_{parts.port}" if parts.port else host


def _encode_header_value(value: str) -> str:
    try:
        from mcp.shared.inbound import encode_header_value

        return encode_header_value(value)
    except ImportError:  # pragma: no cover - older SDK
        return value


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str, str]]:
    """Parse an SSE stream into (event, data, id) tuples (WHATWG event-stream rules)."""
    event, eid = "", ""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield event or "message", "\n".join(data), eid
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            eid = value
    if data:
        yield event or "message", "\n".join(data), eid


class HttpUpstream:
    """One MCP session with a Streamable-HTTP server."""

    def __init__(self, url: str, headers: dict[str, str], deliver: Deliver, *,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.headers = dict(headers)
        self.deliver = deliver
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        self._own_client = client is None
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._get_task: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ sending
    def _headers_for(self, obj: Any, extra: dict[str, str] | None) -> dict[str, str]:
        h = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        h.update(extra or {})
        h.update(self.headers)
        if self.session_id:
            h["mcp-session-id"] = self.session_id
        version = None
        if isinstance(obj, dict):
            params = as_dict(obj.get("params"))
            meta = as_dict(params.get("_meta"))
            version = meta.get(PROTOCOL_META_KEY) if isinstance(meta.get(PROTOCOL_META_KEY), str) else None
            method = obj.get("method")
            if version and isinstance(method, str):
                h["mcp-method"] = method
                key = NAME_BEARING.get(method)
                if key and isinstance(params.get(key), str):
                    h["mcp-name"] = _encode_header_value(params[key])
        version = version or self.protocol_version
        if version:
            h["mcp-protocol-version"] = version
        return h

    def send(self, data: bytes, extra_headers: dict[str, str] | None = None) -> asyncio.Task[None]:
        """POST one message (in the background); its replies go to `deliver`."""
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        task = asyncio.create_task(self._post(data, obj, extra_headers))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if isinstance(obj, dict) and "method" in obj and obj.get("id") is not None:
            self._in_flight[id_key(obj["id"])] = task
        if isinstance(obj, dict) and obj.get("method") == "notifications/cancelled":
            # 2026-07-28: cancelling is closing the response stream
            params = as_dict(obj.get("params"))
            t = self._in_flight.get(id_key(params.get("requestId")))
            if t is not None and self.protocol_version is None:
                t.cancel()
        return task

    async def _post(self, data: bytes, obj: Any, extra: dict[str, str] | None) -> None:
        rid = obj.get("id") if isinstance(obj, dict) and "method" in obj else None
        origin = id_key(rid) if rid is not None else None
        try:
            async with self.client.stream("POST", self.url, content=data,
                                          headers=self._headers_for(obj, extra)) as resp:
                sid = resp.headers.get("mcp-session-id")
                if sid:
                    self.session_id = sid
                ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if resp.status_code == 202 or (rid is None and resp.status_code < 300):
                    await resp.aclose()
                    return
                if ctype == "text/event-stream" and resp.status_code < 300:
                    async for _ev, payload, _eid in sse_events(resp.aiter_lines()):
                        await self._deliver_payload(payload.encode(), origin)
                    return
                body = await resp.aread()
                if ctype == "application/json" and body.strip():
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict | list):
                        if resp.status_code >= 400 and isinstance(parsed, dict) and "error" in parsed \
                                and rid is not None:
                            parsed["id"] = rid
                            body = jsonrpc.dumps(parsed)
                        await self._deliver_payload(body, origin)
                        return
                if rid is not None:
                    await self._fail(rid, f"upstream answered HTTP {resp.status_code}", origin)
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as exc:
            if rid is not None:
                await self._fail(rid, f"upstream unreachable: {type(exc).__name__}", origin)
        finally:
            if origin is not None and self._in_flight.get(origin) is asyncio.current_task():
                self._in_flight.pop(origin, None)

    async def _fail(self, rid: Any, message: str, origin: str | None) -> None:
        await self.deliver(jsonrpc.dumps(jsonrpc.error_response(rid, -32603, message)), origin)

    async def _deliver_payload(self, payload: bytes, origin: str | None) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            await self.deliver(payload, origin)
            return
        for item in obj if isinstance(obj, list) else [obj]:
            self._learn(item)
            await self.deliver(payload if not isinstance(obj, list) else jsonrpc.dumps(item), origin)

    def _learn(self, item: Any) -> None:
        """After a legacy initialize result: remember the version, open the GET stream."""
        if isinstance(item, dict) and isinstance(item.get("result"), dict):
            pv = item["result"].get("protocolVersion")
            if isinstance(pv, str) and "capabilities" in item["result"] and "serverInfo" in item["result"]:
                self.protocol_version = pv
                if self._get_task is None:
                    self._get_task = asyncio.create_task(self._get_stream())

    async def _get_stream(self) -> None:
        """The standalone SSE stream for server-initiated messages (optional for servers)."""
        await asyncio.sleep(0.05)  # after notifications/initialized has been sent
        last_id = ""
        for _attempt in range(3):
            headers = self._headers_for(None, None)
            headers["accept"] = "text/event-stream"
            if last_id:
                headers["last-event-id"] = last_id
            try:
                async with self.client.stream("GET", self.url, headers=headers) as resp:
                    if resp.status_code != 200:
                        return
                    async for _ev, payload, eid in sse_events(resp.aiter_lines()):
                        last_id = eid or last_id
                        await self._deliver_payload(payload.encode(), None)
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            return

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the POSTs in flight (bounded)."""
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*list(self.tasks), return_exceptions=True), timeout)

    async def close(self) -> None:
        """Stop streams, end the upstream session (DELETE), close the HTTP client."""
        for t in [*self.tasks, *( [self._get_task] if self._get_task else [])]:
            t.cancel()
        for t in [*self.tasks, *([self._get_task] if self._get_task else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.session_id:
            with contextlib.suppress(httpx.HTTPError):
                await self.client.delete(self.url, headers=self._headers_for(None, None), timeout=2.0)
        if self._own_client:
            await self.client.aclose()


async def bridge_stdio_to_http(url: str, headers: dict[str, str], session: McpSession, *,
                               client_in: asyncio.StreamReader, client_out: LineWriter | StreamLineWriter,
                               clock: Callable[[], float] = time.time) -> int:
    """Relay a stdio client to a Streamable-HTTP server until the client closes stdin."""
    write_lock = asyncio.Lock()

    async def from_server(data: bytes, origin: str | None) -> None:
        async with write_lock:
            out = session.server_message(data, clock())
            for b in out.to_client:
                client_out.write_line(b)
            for b in out.to_server:
                upstream.send(b)

    upstream = HttpUpstream(url, headers, from_server)

    async def from_client(line: bytes) -> None:
        out = session.client_message(line, clock())
        for b in out.to_client:
            client_out.write_line(b)
        for b in out.to_server:
            upstream.send(b)
            await asyncio.sleep(0)  # start the POST now: keeps the client's order on the wire

    def oversize() -> None:
        f = session.inspector.finding("mcp.protocol.too_large", "protocol", "high",
                                      "client message over mcp.max_message_bytes dropped")
        session._record(clock(), "request", [f] if f else [])

    try:
        await read_lines(client_in, from_client, oversize)
        await upstream.drain()
    finally:
        await upstream.close()
    return 0
