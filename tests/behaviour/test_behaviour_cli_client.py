"""`vallum keys`, `vallum rules test/backtest`, and the Python SDK against a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_behaviour_api import Server, make_config, now_iso

from vallum.api.app import create_app
from vallum.client import AsyncClient, Client, VallumError, make_event

VALLUM = [sys.executable, "-m", "vallum"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VALLUM, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_keys_create_list_revoke(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    r = run("keys", "create", "--name", "ci", "--store", url, cwd=tmp_path)
    assert r.returncode == 0
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("vk_") and " " not in key
    r = run("keys", "create", "--json", "--store", url, cwd=tmp_path)
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(data) >= {"key", "id"} and data["key"].startswith("vk_")
    listed = json.loads(run("keys", "list", "--json", "--store", url, cwd=tmp_path).stdout)
    assert [k["name"] for k in listed] == ["ci", ""] and all(k["active"] for k in listed)
    assert key not in json.dumps(listed)
    assert run("keys", "revoke", data["id"], "--store", url, cwd=tmp_path).returncode == 0
    assert run("keys", "revoke", data["id"], "--store", url, cwd=tmp_path).returncode == 1
    from vallum.storage import open_store

    st = open_store(url)
    assert st.verify_key(key) is not None and st.verify_key(data["key"]) is None


def test_keys_default_store_under_data_dir(tmp_path):
    (tmp_path / "v.yaml").write_text(f"data_dir: {tmp_path / 'dd'}\n")
    r = run("keys", "create", "--config", str(tmp_path / "v.yaml"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "dd" / "vallum.db").exists()


def test_rules_test_command(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("""
rules:
  - id: my.many_failures
    description: five failed logins for one account in ten minutes
    scope: user
    on: auth.login_failed
    when: user.failed_logins_24h >= 5.0
    weight: 30
    examples:
      - name: five failures
        expect: fire
        events:
          - {type: auth.login_failed, at: 0s, every: 30s, repeat: 5, user: bob}
      - name: two failures
        expect: no_fire
        events:
          - {type: auth.login_failed, at: 0s, every: 30s, repeat: 2, user: bob}
""")
    r = run("rules", "test", str(good), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2/2 examples passed" in r.stdout
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(good.read_text().replace("expect: no_fire", "expect: fire"))
    r = run("rules", "test", str(wrong), cwd=tmp_path)
    assert r.returncode == 1 and "FAIL my.many_failures: two failures" in r.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(good.read_text().replace("user.failed_logins_24h >= 5.0", "user.failed_logins_24h >="))
    r = run("rules", "test", str(broken), cwd=tmp_path)
    assert r.returncode == 2 and "column" in r.stdout


def test_builtin_rule_files_pass_rules_test(tmp_path):
    from vallum.behaviour.rules import builtin_rule_files

    pkg = Path(__import__("vallum.behaviour", fromlist=["x"]).__file__).parent / "rules"
    names = [n.split(":", 1)[1] for n, _ in builtin_rule_files()]
    r = run("rules", "test", str(pkg / names[1]), "--json", cwd=tmp_path)
    assert r.returncode == 0
    assert all(x["ok"] for x in json.loads(r.stdout)["examples"])


def test_rules_backtest_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    from vallum.behaviour.events import validate_event
    from vallum.storage import open_store

    st = open_store(url)
    st.insert_events([validate_event({"type": "auth.login_failed", "ts": 1_790_000_000_000 + i * 1000,
                                      "user": f"v{i}", "ip": "45.33.32.156"}) for i in range(30)],
                     key_id=None, received_at=0.0)
    r = run("rules", "backtest", "--rule", "auth.stuffing_ip", "--store", url, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["events_replayed"] == 30 and res["entities"][0]["entity"] == {"type": "ip", "id": "45.33.32.156"}
    assert run("rules", "backtest", "--rule", "no.such", "--store", url, cwd=tmp_path).returncode == 2


@pytest.fixture
def server(tmp_path):
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    app = create_app(cfg)
    _kid, key = app.state.behaviour.store.create_key()
    with Server(app) as srv:
        yield srv, key, app.state.behaviour


def test_sync_client_batches_helpers_and_decide(server):
    srv, key, svc = server
    with Client(srv.url, key, batch_size=50, flush_interval=0.2) as vc:
        for i in range(120):
            vc.llm_request(user=f"u{i % 7}", model="m-large", input_tokens=100 + i, output_tokens=50,
                           cost_usd=0.001, session="s1")
        vc.tool_call(user="u1", agent="agent:support", tool="send_email", dest_domain="mail.example.com")
        vc.send({"type": "nonsense", "ts": now_iso(), "user": "x"})
        vc.flush()
        assert vc.sent == 121 and vc.dropped == 0
        assert len(vc.rejected) == 1 and "unknown event type" in vc.rejected[0]["error"]
        d = vc.decide({"type": "auth.login", "user": "u1", "ip": "81.2.69.142"})
        assert d["entity"] == {"type": "user", "id": "u1"} and d["action"] == "allow"
        assert vc.decision("user", "u1")["action"] == "allow"
        with pytest.raises(VallumError) as err:
            vc.decide({"type": "auth.login", "ts": now_iso()})
        assert err.value.status == 400
    assert svc.store.count_events() == 122


def test_client_retries_until_the_server_is_up(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    cfg.console.listen = f"127.0.0.1:{port}"
    app = create_app(cfg)
    _kid, key = app.state.behaviour.store.create_key()
    vc = Client(f"http://127.0.0.1:{port}", key, flush_interval=0.05, retries=8)
    vc.send(make_event("page.view", user="late"))
    import time

    time.sleep(0.3)  # the first attempts fail: nothing listens yet
    srv = Server(app)
    srv.port, srv.url = port, f"http://127.0.0.1:{port}"
    import uvicorn

    srv.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    import threading

    srv.thread = threading.Thread(target=srv.server.run, daemon=True)
    with srv:
        vc.flush(timeout=20)
        assert vc.sent == 1
        vc.close()


def test_bad_key_is_not_retried(server):
    srv, _key, _svc = server
    with Client(srv.url, "vk_wrong", flush_interval=0.05) as vc:
        vc.send(make_event("page.view", user="x"))
        vc.flush()
        assert vc.sent == 0 and vc.dropped == 1 and "401" in vc.rejected[0]["error"]


def test_async_client(server):
    srv, key, svc = server

    async def main() -> dict:
        async with AsyncClient(srv.url, key, batch_size=10, flush_interval=0.05) as vc:
            for i in range(25):
                await vc.llm_request(user="a1", input_tokens=10 + i, cost_usd=0.0001)
            await vc.tool_call(user="a1", tool="search", agent="agent:x")
            await vc.flush()
            assert vc.sent == 26
            return await vc.decide({"type": "page.view", "user": "a1"})

    d = asyncio.run(main())
    assert d["entity"]["id"] == "a1"
    assert svc.store.count_events() == 27
