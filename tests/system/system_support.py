"""Helpers for the system tests: free ports, a loopback upstream, configs, waiting."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict[str, tuple[str, str]] = {}

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        page = self.pages.get(self.path.split("?", 1)[0])
        if page is not None:
            ctype, text = page
            out = text.encode()
        else:
            ctype = "application/json"
            out = json.dumps({"path": self.path, "method": self.command, "received": len(body),
                              "principal_header": self.headers.get("x-vallum-principal")}).encode()
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def upstream(pages: dict[str, tuple[str, str]] | None = None) -> Iterator[int]:
    """A loopback HTTP server (JSON echo, plus fixed `pages`: path → (content type, text))."""
    handler = type("H", (_Handler,), {"pages": dict(pages or {})})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def write_config(path: Path, data_dir: Path, up_port: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "data_dir": str(data_dir),
        "proxy": {"listen": f"127.0.0.1:{free_port()}"},
        "console": {"listen": f"127.0.0.1:{free_port()}"},
        "egress": {"allow_private": [f"127.0.0.1:{up_port}"]},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return cfg


def wait_health(api: str, timeout: float = 30.0, proc: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"vallum exited early with {proc.returncode}")
        try:
            r = httpx.get(f"http://{api}/api/v1/health", timeout=2.0)
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no health from {api}: {last}")


def wait_until(pred: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def proxy_client(proxy: str, **kw: Any) -> httpx.Client:
    return httpx.Client(proxy=f"http://{proxy}", trust_env=False, timeout=30.0, **kw)


def audit_entries(audit_dir: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(audit_dir.rglob("audit-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


class StackThread:
    """A `vallum.runtime.Stack` running in its own event loop thread (for sync tests)."""

    def __init__(self, config: Any) -> None:
        import asyncio

        from vallum.runtime.stack import Stack

        self.config = config
        self.loop = asyncio.new_event_loop()
        self.stack = Stack(config)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> StackThread:
        import asyncio

        self.thread.start()
        self.services = asyncio.run_coroutine_threadsafe(self.stack.start(), self.loop).result(120)
        return self

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def flush(self) -> None:
        """Deliver queued behaviour events and wait until they are scored."""
        self.call(self.services.feed.flush())
        self.call(self.services.behaviour.flush())

    @property
    def proxy(self) -> str:
        return str(self.stack.listen["proxy"])

    @property
    def api(self) -> str:
        return str(self.stack.listen["console"])

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call(self.stack.stop(), 120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def make_config(data_dir: Path, up_port: int, **extra: Any) -> Any:
    from vallum.config.schema import Config

    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "proxy": {"listen": "127.0.0.1:0"},
        "console": {"listen": "127.0.0.1:0"},
        "egress": {"allow_private": [f"127.0.0.1:{up_port}"]},
        "identity": {"trusted_header_cidrs": ["127.0.0.1/32"]},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return Config.model_validate(raw)
