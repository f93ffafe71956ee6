"""INTERFACES §1 `vallum run [--config F]`: every service with embedded defaults, addresses and
first-login credentials printed once; the same store for `vallum keys create --config F`."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import samples as S
from acc_support import Daemon, Upstream, free_port, vallum, write_yaml


def _wait_health(base: str, d: Daemon, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert d.proc.poll() is None, d.stderr
        try:
            r = httpx.get(f"{base}/api/v1/health", timeout=2, trust_env=False)
            # the banner follows the services' start: wait for it too
            if r.status_code == 200 and r.json().get("status") == "ok" and "\n" in d.stdout:
                time.sleep(0.3)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no healthy API at {base}\n{d.stdout}\n{d.stderr}")


def test_run_serves_proxy_and_api_prints_credentials_once(tmp_path: Path, upstream: Upstream) -> None:
    data = tmp_path / "data"
    pp, cp = free_port(), free_port()
    cfg = write_yaml(tmp_path / "vallum.yaml", {
        "data_dir": str(data), "proxy": {"listen": f"127.0.0.1:{pp}"}, "console": {"listen": f"127.0.0.1:{cp}"},
        "egress": {"allow_private": [f"127.0.0.1:{upstream.port}"]}})
    d = Daemon(["run", "--config", str(cfg)], cp, tmp_path, cwd=tmp_path)
    try:
        _wait_health(f"http://127.0.0.1:{cp}", d)
        out = d.stdout
        assert f"127.0.0.1:{pp}" in out and f"127.0.0.1:{cp}" in out, out
        assert "password" in out.lower() or "token" in out.lower() or "login" in out.lower(), out
        with httpx.Client(proxy=f"http://127.0.0.1:{pp}", timeout=30, trust_env=False) as c:
            assert c.get(upstream.url("/through-run")).status_code == 200
            r = c.get(upstream.url(f"/x?token={S.GITHUB}"))
            assert r.status_code == 403 and r.headers["x-vallum-action"] == "block"
        # a key created with the same config works against the running API
        p = vallum("keys", "create", "--config", str(cfg), cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        key = p.stdout.decode().splitlines()[-1]
        api = httpx.Client(base_url=f"http://127.0.0.1:{cp}", timeout=30, trust_env=False)
        r = api.post("/api/v1/scan", headers={"Authorization": f"Bearer {key}"},
                     json={"id": "r", "kind": "inbound", "content": S.INJECTION})
        assert r.status_code == 200 and r.json()["action"] == "block", r.text
        assert api.post("/api/v1/scan", json={"kind": "text", "content": "x"}).status_code == 401
        assert api.get("/metrics").status_code == 200
        # accepted events are durable: the next start (below) still has them
        ev = {"type": "llm.request", "ts": int(time.time() * 1000) - 60_000, "id": "evt-durable-1", "user": "u_durable",
              "attrs": {"gen_ai.request.model": "m-large", "cost_usd": 0.01}}
        r = api.post("/api/v1/events", headers={"Authorization": f"Bearer {key}"}, json=[ev])
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    finally:
        code = d.stop(signal.SIGTERM)
    assert code == 0, d.stderr
    first = d.stdout
    p = vallum("audit", "verify", str(data / "audit"))
    assert p.returncode == 0, (p.stdout + p.stderr).decode()
    # second start on the same data: the credentials are not printed again
    (tmp_path / "again").mkdir()
    d2 = Daemon(["run", "--config", str(cfg)], cp, tmp_path / "again", cwd=tmp_path)
    try:
        _wait_health(f"http://127.0.0.1:{cp}", d2)
        time.sleep(0.5)
        again = d2.stdout
        r = httpx.get(f"http://127.0.0.1:{cp}/api/v1/entities/user/u_durable", headers={"Authorization": f"Bearer {key}"},
                      timeout=30, trust_env=False)
        assert r.status_code == 200 and "evt-durable-1" in r.text, r.text
    finally:
        d2.stop(signal.SIGTERM)
    secrets = [w for w in first.split() if len(w) >= 12 and any(ch.isdigit() for ch in w) and "/" not in w
               and ":" not in w]
    assert secrets, first
    for s in secrets:
        assert s not in again, (s, again)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_run_embedded_defaults(tmp_path: Path) -> None:
    if not (_port_free(8888) and _port_free(8080)):
        pytest.skip("127.0.0.1:8888 or :8080 is in use on this machine; the defaults cannot be checked")
    d = Daemon(["run"], 8080, tmp_path, cwd=tmp_path)
    try:
        _wait_health("http://127.0.0.1:8080", d)
        with socket.create_connection(("127.0.0.1", 8888), timeout=5):
            pass
        assert "127.0.0.1:8888" in d.stdout and "127.0.0.1:8080" in d.stdout
        assert (tmp_path / "vallum-data").is_dir()
        assert any((tmp_path / "vallum-data").rglob("*.db")) or any((tmp_path / "vallum-data").rglob("*.sqlite*"))
    finally:
        assert d.stop(signal.SIGTERM) == 0, d.stderr
