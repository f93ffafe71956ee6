"""Hot reload: validated first, invalid refused (old kept), in-flight requests finish under the old
configuration, weakening changes logged; SIGHUP and file polling; `vallum proxy` end to end."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml
from egress_support import INJECTION, SECRET, route

from vallum.config import parse_config
from vallum.egress.reload import weakenings


def test_weakenings_listed():
    old = parse_config({"mode": "strict", "egress": {"allowlist": ["a.example.com"], "blocklist": ["x.example"],
                                                     "rate_limit_per_minute": 10}})
    new = parse_config({"mode": "audit", "detection": {"disable": ["inj.*"]},
                        "egress": {"allowlist": ["a.example.com", "b.example.com"], "allow_private": ["10.0.0.0/8"],
                                   "rate_limit_per_minute": 0}})
    w = " | ".join(weakenings(old, new))
    for part in ("mode downgraded from strict to audit", "detector inj.* disabled", "allowlist widened: b.example.com",
                 "blocklist narrowed", "allow_private widened: 10.0.0.0/8", "rate limit raised or switched off"):
        assert part in w
    assert weakenings(new, old) == [] or all("mode downgraded" not in x for x in weakenings(new, old))
    assert weakenings(old, old) == []


def write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data))


def test_reload_from_file_valid_invalid_and_logged(harness, tmp_path, caplog):
    up = harness.upstream()
    cfg = tmp_path / "v.yaml"
    base = {"egress": {"rate_limit_per_minute": 0, "allow_private": ["127.0.0.1"]}}
    write(cfg, base)
    p = harness.proxy(base, config_path=cfg)
    url = f"http://127.0.0.1:{up.port}/x?token={SECRET}"
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False) as c:
        assert c.get(url).status_code == 403
        caplog.set_level(logging.INFO, logger="vallum.egress")
        write(cfg, {**base, "mode": "audit"})
        assert p.reload_from_file() is True
        assert any("weakens security: mode downgraded from balanced to audit" in r.getMessage() for r in caplog.records)
        r = c.get(url)
        assert r.status_code == 200, r.text  # audit: recorded, not blocked
        cfg.write_text("mode: balanced\negress:\n  no_such_key: 1\n")
        assert p.reload_from_file() is False
        assert any("reload refused" in r.getMessage() and "no_such_key" in r.getMessage() for r in caplog.records)
        assert str(p.config.mode) == "audit"  # the old configuration stays
        assert p.stats["reloads_refused"] == 1


def test_file_change_is_polled(harness, tmp_path):
    cfg = tmp_path / "v.yaml"
    base = {"egress": {"rate_limit_per_minute": 0, "allow_private": ["127.0.0.1"], "reload_poll_seconds": 0.1}}
    write(cfg, base)
    p = harness.proxy(base, config_path=cfg)
    write(cfg, {**base, "mode": "strict"})
    deadline = time.time() + 5
    while str(p.config.mode) != "strict" and time.time() < deadline:
        time.sleep(0.05)
    assert str(p.config.mode) == "strict"


def test_in_flight_request_finishes_on_old_config(harness, tmp_path):
    async def slow_injection(seen):
        await asyncio.sleep(0.6)
        return 200, [("content-type", "text/html")], f"<p>{INJECTION}</p>"

    up = harness.upstream({"/slow": slow_injection})
    p = harness.proxy()
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, timeout=10) as c, \
            ThreadPoolExecutor(1) as pool:
        fut = pool.submit(c.get, f"http://127.0.0.1:{up.port}/slow")
        time.sleep(0.3)
        p.reload(parse_config({"mode": "audit", "egress": {"rate_limit_per_minute": 0, "allow_private": ["127.0.0.1"]}}))
        r = fut.result(10)
    assert r.status_code == 403  # the request started under balanced: its response is still blocked
    with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, timeout=10) as c:
        assert c.get(f"http://127.0.0.1:{up.port}/slow").status_code == 200  # new requests: audit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_proxy_serves_and_reloads_on_sighup(harness, tmp_path):
    up = harness.upstream({"/page": route(200, "text/plain", "via cli")})
    cfg = tmp_path / "v.yaml"
    base = {"data_dir": str(tmp_path / "data"), "egress": {"rate_limit_per_minute": 0,
                                                           "allow_private": ["127.0.0.1"], "reload_poll_seconds": 0}}
    write(cfg, base)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["VALLUM_REGEX_ENGINE"] = os.environ.get("VALLUM_TEST_ENGINE", "re")
    boot = "from vallum.cli.main import main; main()"  # the console script's entry point
    proc = subprocess.Popen([sys.executable, "-c", boot, "proxy", "--listen", f"127.0.0.1:{port}", "--config",
                             str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=20) as c:
            assert c.get(f"http://127.0.0.1:{up.port}/page").text == "via cli"
            assert c.get(f"http://127.0.0.1:{up.port}/page?t={SECRET}").status_code == 403
            write(cfg, {**base, "mode": "audit"})
            proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 30
            while time.time() < deadline:
                if c.get(f"http://127.0.0.1:{up.port}/page?t={SECRET}").status_code == 200:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("SIGHUP reload did not apply")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "weakens security: mode downgraded" in err


def test_cli_proxy_with_two_workers(harness, tmp_path):
    up = harness.upstream({"/page": route(200, "text/plain", "multi")})
    cfg = tmp_path / "v.yaml"
    write(cfg, {"data_dir": str(tmp_path / "data"), "proxy": {"workers": 2},
                "egress": {"rate_limit_per_minute": 0, "allow_private": ["127.0.0.1"], "reload_poll_seconds": 0}})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["VALLUM_REGEX_ENGINE"] = os.environ.get("VALLUM_TEST_ENGINE", "re")
    boot = "from vallum.cli.main import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", boot, "proxy", "--listen", f"127.0.0.1:{port}", "--config",
                             str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        codes = []
        for _ in range(12):  # new connections: the kernel spreads them over both workers
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as c:
                codes.append(c.get(f"http://127.0.0.1:{up.port}/page").status_code)
        assert codes == [200] * 12
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
