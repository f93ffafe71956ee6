"""INTERFACES §1 `vallum serve` + `vallum keys create`, §6 HTTP API, §7 events."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import samples as S
from acc_support import ApiServer, Daemon, free_port, vallum, vallum_all, write_yaml

ENTITY_TYPES = ["user", "session", "conversation", "ip", "device", "api_key", "agent", "domain"]
T0 = int(time.time() * 1000) - 3_600_000  # an hour ago, in epoch milliseconds


def _ev(i: int, user: str = "u_acc1", **kw: Any) -> dict[str, Any]:
    ev = {"type": "llm.request", "ts": T0 + i * 1000, "id": f"evt-acc-{user}-{i}", "user": user,
          "session": f"s_{user}", "conversation": "c1", "agent": "agent:support", "ip": "192.0.2.44",
          "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "accept_language": "en-GB",
          "attrs": {"gen_ai.request.model": "m-large", "gen_ai.usage.input_tokens": 180,
                    "gen_ai.usage.output_tokens": 640, "cost_usd": 0.012, "refused": False}}
    ev.update(kw)
    return ev


def _is_json_error(r: httpx.Response) -> None:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in r.text


# ------------------------------------------------------------------ keys
def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    vallum("keys", "list", "--store", store, cwd=tmp_path)  # creates the store before two writers race
    p, pj = vallum_all((("keys", "create", "--name", "ci", "--store", store), {"cwd": tmp_path}),
                       (("keys", "create", "--json", "--store", store), {"cwd": tmp_path}))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines and lines[-1] == lines[-1].strip() and len(lines[-1]) >= 20 and " " not in lines[-1]
    assert pj.returncode == 0
    obj = json.loads(pj.stdout)
    assert isinstance(obj["key"], str) and obj["key"] and "id" in obj
    assert obj["key"] != lines[-1]


# ------------------------------------------------------------------ authentication
AUTH_ROUTES = [
    ("POST", "/api/v1/scan"), ("POST", "/api/v1/events"), ("POST", "/api/v1/events?wait=true"),
    ("GET", "/api/v1/decisions/user/u_acc1"), ("POST", "/api/v1/decide"), ("GET", "/api/v1/entities/user/u_acc1"),
    ("GET", "/api/v1/does-not-exist"), ("GET", "/api/v2/anything"),
]


@pytest.mark.parametrize("method,path", AUTH_ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer vk_wrong_key_0000000000000000", "Basic dXNlcjpwYXNz", "Bearer"])
def test_every_api_route_rejects_missing_or_wrong_key(api_server: ApiServer, method: str, path: str,
                                                      auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    r = api_server.client.request(method, path, headers=headers, content=b'{"kind":"text","content":"x"}')
    assert r.status_code == 401, (method, path, r.status_code, r.text)
    _is_json_error(r)


def test_health_needs_no_key(api_server: ApiServer) -> None:
    r = api_server.client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and isinstance(body["pending_events"], int)


def test_metrics_prometheus_text(api_server: ApiServer) -> None:
    r = api_server.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert re.search(r"^# TYPE \w+ (counter|gauge|histogram|summary|untyped)$", r.text, re.M), r.text[:500]


# ------------------------------------------------------------------ scan
def test_scan_single_and_array(api_server: ApiServer) -> None:
    r = api_server.post("/api/v1/scan", json={"id": "c1", "kind": "outbound", "content": f"key {S.GITHUB}"})
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["id"] == "c1" and v["action"] == "block"
    assert any(f["category"] == "credential" for f in v["findings"])
    assert S.GITHUB not in r.text
    items = [
        {"id": "a", "kind": "inbound", "content": S.INJECTION},
        {"id": "b", "kind": "url", "content": "http://169.254.169.254/latest/meta-data/"},
        {"id": "c", "kind": "text", "content": S.BENIGN_RETRY},
        {"id": "d", "kind": "mcp", "content": {"messages": [S.rpc_list_result(1, [S.POISONED_TOOL])]}},
        {"id": "e", "kind": "http_request", "content": {"method": "GET", "url": "https://api.example.com/",
                                                        "headers": {"X-Api-Key": S.STRIPE}, "body": ""}},
        {"id": "f", "kind": "nope", "content": "x"},
    ]
    r = api_server.post("/api/v1/scan", json=items)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [v["id"] for v in out] == ["a", "b", "c", "d", "e", "f"]
    assert [v.get("action") for v in out[:5]] == ["block", "block", "allow", "block", "block"]
    assert "error" in out[5]


def test_scan_matches_the_cli(api_server: ApiServer, tmp_path: Path) -> None:
    item = {"id": "same", "kind": "http_response", "content": {"url": "https://x.example.com/", "status": 200,
                                                                "headers": {"Content-Type": "text/html"},
                                                                "body": S.HIDDEN_HTML}}
    r = api_server.post("/api/v1/scan", json=item)
    p = vallum("scan", "--batch", input=json.dumps(item) + "\n", cwd=tmp_path)
    assert r.json() == json.loads(p.stdout)


def test_unknown_route_and_method_are_json_errors(api_server: ApiServer) -> None:
    r = api_server.get("/api/v1/no-such-route")
    assert r.status_code == 404
    _is_json_error(r)
    r = api_server.get("/api/v1/scan")
    assert r.status_code == 405
    _is_json_error(r)
    r = api_server.post("/api/v1/events", content=b"x" * 10, headers={"Content-Encoding": "br"})
    assert 400 <= r.status_code < 500
    _is_json_error(r)


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b'"just a string"'])
def test_scan_bad_body_is_a_json_400(api_server: ApiServer, body: bytes) -> None:
    r = api_server.post("/api/v1/scan", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    _is_json_error(r)


# ------------------------------------------------------------------ events
def test_events_single(api_server: ApiServer) -> None:
    r = api_server.post("/api/v1/events", json=_ev(0))
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1 and r.json()["rejected"] == []


def test_events_array_with_rejected_indexes(api_server: ApiServer) -> None:
    batch = [
        _ev(1),
        {"type": "llm.request", "user": "u_acc1"},                      # no ts
        _ev(2, type="made.up"),                                          # not core, not x.
        _ev(3, type="x.acme.widget"),                                    # custom types begin with x.
        {"type": "auth.login_failed", "ts": "2026-11-22T04:00:00Z", "ip": "198.51.100.7"},  # no user: fine
        {"type": "page.view", "ts": T0},                                 # no user
        "not an object",
        _ev(4, ts="2026-11-22T04:10:00.250Z"),                          # RFC 3339
    ]
    r = api_server.post("/api/v1/events", json=batch)
    assert r.status_code == 202, r.text
    body = r.json()
    rejected = {x["index"]: x for x in body["rejected"]}
    assert set(rejected) == {1, 2, 5, 6}, body
    assert all(isinstance(x["error"], str) and x["error"] for x in body["rejected"])
    assert body["accepted"] == 4


def test_events_ndjson_and_gzip(api_server: ApiServer) -> None:
    lines = [json.dumps(_ev(10, "u_nd")).encode(), b"this is not json", json.dumps(_ev(11, "u_nd")).encode(),
             b'{"type": "page.view", "ts": 1763665331250, "user": "caf\xe9"}']
    nd = b"\n".join(lines) + b"\n"
    r = api_server.post("/api/v1/events", content=nd, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2 and [x["index"] for x in r.json()["rejected"]] == [1, 3]
    gz = gzip.compress("\n".join([json.dumps(_ev(12, "u_gz")), json.dumps(_ev(13, "u_gz"))]).encode())
    r = api_server.post("/api/v1/events?wait=true", content=gz,
                        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2 and r.json()["rejected"] == []
    gz = gzip.compress(json.dumps([_ev(14, "u_gz"), _ev(15, "u_gz")]).encode())
    r = api_server.post("/api/v1/events", content=gz,
                        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 202 and r.json()["accepted"] == 2


def test_events_malformed_body_is_a_json_400(api_server: ApiServer) -> None:
    r = api_server.post("/api/v1/events", content=b'[{"type": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    _is_json_error(r)


def test_wait_true_scores_before_answering_then_decisions_and_entities(api_server: ApiServer) -> None:
    user = "u_wait_" + str(int(time.time()))
    evs = [_ev(i, user) for i in range(5)]
    r = api_server.post("/api/v1/events?wait=true", json=evs)
    assert r.status_code == 202 and r.json()["accepted"] == 5, r.text
    # scored already: the entity exists without waiting
    r = api_server.get(f"/api/v1/entities/user/{user}")
    assert r.status_code == 200, r.text
    ent = r.json()
    assert "entity" in ent
    blob = json.dumps(ent)
    assert "evt-acc-" + user in blob  # recent events
    assert any(k in ent for k in ("links", "linked", "linked_entities"))
    assert any(k in ent for k in ("score_history", "history"))
    r = api_server.get(f"/api/v1/decisions/user/{user}")
    assert r.status_code == 200
    _check_decision(r.json())
    # idempotent on id: resending is not a new event
    r = api_server.post("/api/v1/events?wait=true", json=evs)
    assert r.status_code == 202 and r.json()["rejected"] == []
    r = api_server.get(f"/api/v1/entities/user/{user}")
    assert r.text.count(f'"evt-acc-{user}-3"') == 1, r.text


def _check_decision(d: dict[str, Any]) -> None:
    assert {"entity", "action", "score", "reasons", "as_of"} <= set(d), d
    assert d["action"] in ("allow", "review", "challenge", "block")
    assert 0 <= d["score"] <= 100
    for reason in d["reasons"]:
        assert {"rule", "weight", "detail"} <= set(reason), reason


@pytest.mark.parametrize("etype", ENTITY_TYPES)
def test_decisions_for_every_entity_type(api_server: ApiServer, etype: str) -> None:
    r = api_server.get(f"/api/v1/decisions/{etype}/never-seen-{etype}")
    assert r.status_code == 200, r.text
    d = r.json()
    _check_decision(d)
    assert d["action"] == "allow"


def test_unknown_entity_type_is_a_json_error(api_server: ApiServer) -> None:
    r = api_server.get("/api/v1/decisions/planet/mars")
    assert 400 <= r.status_code < 500
    _is_json_error(r)
    r = api_server.get("/api/v1/entities/user/nobody-ever-" + str(time.time()))
    assert r.status_code == 404
    _is_json_error(r)


def test_decide_returns_the_users_decision(api_server: ApiServer) -> None:
    user = "u_decide_" + str(int(time.time()))
    r = api_server.post("/api/v1/decide", json=_ev(0, user))
    assert r.status_code == 200, r.text
    d = r.json()
    _check_decision(d)
    assert user in json.dumps(d["entity"])
    r = api_server.post("/api/v1/decide", json={"type": "llm.request", "user": user})  # no ts
    assert r.status_code == 400
    _is_json_error(r)


def test_decide_moves_with_risky_events(api_server: ApiServer) -> None:
    """A block override is the decision the API reports for the entity."""
    r = api_server.client.put("/api/v1/overrides/user/u_blocked_acc", headers=api_server.auth(),
                              json={"action": "block", "reason": "acceptance"})
    if r.status_code == 404:
        pytest.skip("no override route (not part of INTERFACES)")
    r = api_server.post("/api/v1/decide", json=_ev(0, "u_blocked_acc"))
    assert r.status_code == 200 and r.json()["action"] == "block"


def test_keys_from_the_same_config_pair_with_serve(tmp_path: Path) -> None:
    """No --store: `keys create --config F` and `serve --config F` use the same store (data_dir)."""
    data = tmp_path / "data"
    cfg = write_yaml(tmp_path / "vallum.yaml", {"data_dir": str(data)})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    p = vallum("keys", "create", "--config", str(cfg), cwd=elsewhere)
    assert p.returncode == 0, p.stderr
    key = p.stdout.decode().splitlines()[-1]
    port = free_port()
    d = Daemon(["serve", "--listen", f"127.0.0.1:{port}", "--config", str(cfg)], port, tmp_path, cwd=tmp_path)
    try:
        d.wait_ready()
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
        r = c.post("/api/v1/scan", headers={"Authorization": f"Bearer {key}"},
                   json={"kind": "text", "content": "hello"})
        assert r.status_code == 200, r.text
        assert r.json()["action"] == "allow"
        r = c.post("/api/v1/scan", headers={"Authorization": f"Bearer {key}x"},
                   json={"kind": "text", "content": "hello"})
        assert r.status_code == 401
    finally:
        d.stop()


def test_keys_and_serve_pair_on_postgresql(tmp_path: Path) -> None:
    """`store.url: postgresql://…`: keys created with `--store URL` work on `serve --store URL`."""
    import socket
    import uuid

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg
    except (OSError, ImportError):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test')")
    schema = "acc_" + uuid.uuid4().hex[:10]
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True,
                             connect_timeout=3) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 refused the test user: {exc}")
    url = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    cfg = write_yaml(tmp_path / "vallum.yaml", {"data_dir": str(tmp_path / "data")})
    port = free_port()
    d = None
    try:
        p = vallum("keys", "create", "--store", url, "--config", str(cfg), cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        key = p.stdout.decode().splitlines()[-1]
        d = Daemon(["serve", "--listen", f"127.0.0.1:{port}", "--store", url, "--config", str(cfg)], port,
                   tmp_path, cwd=tmp_path)
        d.wait_ready()
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
        r = c.post("/api/v1/events?wait=true", headers={"Authorization": f"Bearer {key}"},
                   json=[_ev(0, "u_pg"), {"type": "llm.request"}])
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1 and [x["index"] for x in r.json()["rejected"]] == [1]
        r = c.get("/api/v1/decisions/user/u_pg", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        _check_decision(r.json())
        assert c.get("/api/v1/decisions/user/u_pg", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        if d is not None:
            d.stop()
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_two_processes_opening_a_fresh_store_at_once(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'fresh.db'}"
    results = vallum_all(*[(("keys", "create", "--store", store), {"cwd": tmp_path}) for _ in range(3)])
    assert [p.returncode for p in results] == [0, 0, 0], [p.stderr[-300:] for p in results]


def test_revoked_key_gets_401(api_server: ApiServer) -> None:
    p = vallum("keys", "create", "--json", "--name", "short-lived", "--store", api_server.store,
               "--config", str(api_server.cfg))
    created = json.loads(p.stdout)
    ok = api_server.post("/api/v1/scan", headers=api_server.auth(created["key"]), json={"kind": "text", "content": "hi"})
    assert ok.status_code == 200
    p = vallum("keys", "revoke", str(created["id"]), "--store", api_server.store, "--config", str(api_server.cfg))
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 10
    while True:
        r = api_server.post("/api/v1/scan", headers=api_server.auth(created["key"]),
                            json={"kind": "text", "content": "hi"})
        if r.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 401
    _is_json_error(r)
    assert api_server.post("/api/v1/scan", json={"kind": "text", "content": "hi"}).status_code == 200  # others unaffected
