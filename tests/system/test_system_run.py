"""`vallum run` as a subprocess: start, proxy a request, audit + event store, SIGTERM, verify."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from system_support import audit_entries, free_port, proxy_client, upstream, wait_health, wait_until, write_config

VALLUM = [sys.executable, "-m", "vallum"]


def _start(cfg_path: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    return subprocess.Popen([*VALLUM, "run", "--config", str(cfg_path)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with upstream() as up:
        cfg = write_config(tmp_path / "vallum.yaml", data, up)
        proxy, api = cfg["proxy"]["listen"], cfg["console"]["listen"]
        proc = _start(tmp_path / "vallum.yaml", tmp_path)
        try:
            wait_health(api, proc=proc)
            with proxy_client(proxy) as c:
                r = c.get(f"http://127.0.0.1:{up}/hello?x=1")
                assert r.status_code == 200 and r.json()["path"] == "/hello?x=1"
                blocked = c.get("http://127.0.0.1:9/")  # loopback, not exempt: SSRF block
                assert blocked.status_code == 403 and blocked.headers["x-vallum-action"] == "block"
            # the decisions reached the audit log (written asynchronously) ...
            wait_until(lambda: any(e.get("destination") == f"http://127.0.0.1:{up}/hello"
                                   for e in audit_entries(data / "audit")))
            # ... and the event store, as guard.verdict events of the principal (the client address)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert f"egress proxy:   http://{proxy}" in out and f"console + API:  http://{api}/" in out
    assert re.search(r"console login:\s+admin / \S+", out)
    key = re.search(r"API key:\s+(\S+)", out)
    assert key is not None
    assert "HTTPS_PROXY" in out and "/fetch?url=" in out and "vallum mcp wrap" in out
    verify = subprocess.run([*VALLUM, "audit", "verify", str(data / "audit")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    entries = audit_entries(data / "audit")
    assert entries[-1]["kind"] == "checkpoint"
    import sqlite3

    with sqlite3.connect(data / "vallum.db") as db:
        rows = db.execute("select type, user_id from events").fetchall()
    assert ("guard.verdict", "ip:127.0.0.1") in rows
    assert len([r for r in rows if r[0] == "guard.verdict"]) >= 2

    # second run: the credentials are not printed again, the key still works
    proc = _start(tmp_path / "vallum.yaml", tmp_path)
    try:
        wait_health(api, proc=proc)
        r = httpx.get(f"http://{api}/api/v1/entities/user/ip:127.0.0.1",
                      headers={"authorization": f"Bearer {key.group(1)}"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGINT)
        out2, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "console login" not in out2 and "API key:" not in out2


def test_port_in_use_and_bad_config_exit_2(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        write_config(tmp_path / "v.yaml", tmp_path / "d", free_port(), proxy={"listen": f"127.0.0.1:{port}"})
        start = time.monotonic()
        r = subprocess.run([*VALLUM, "run", "--config", str(tmp_path / "v.yaml")], capture_output=True, text=True,
                           timeout=60)
    finally:
        taken.close()
    assert r.returncode == 2
    assert f"proxy.listen: cannot listen on 127.0.0.1:{port}" in r.stderr
    assert time.monotonic() - start < 30
    (tmp_path / "bad.yaml").write_text("proxy:\n  listne: 1\n")
    r = subprocess.run([*VALLUM, "run", "--config", str(tmp_path / "bad.yaml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "listne" in r.stderr
