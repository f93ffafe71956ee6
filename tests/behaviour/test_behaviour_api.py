"""End to end through the HTTP API with a real uvicorn server on 127.0.0.1 (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vallum.api.app import create_app
from vallum.config import Config
from vallum.decisions import MemorySink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso(delta_s: float = 0.0) -> str:
    return iso(datetime.now(tz=UTC) + timedelta(seconds=delta_s))


def make_config(tmp_path, store_url, **behaviour) -> Config:
    cfg = Config(data_dir=str(tmp_path / "data"))
    cfg.store.url = store_url
    for k, v in behaviour.items():
        setattr(cfg.behaviour, k, v)
    return cfg


@pytest.fixture
def api(tmp_path, store_url):
    cfg = make_config(tmp_path, store_url, rate_limit_per_key_per_minute=100_000)
    sink = MemorySink()
    app = create_app(cfg, sink=sink)
    svc = app.state.behaviour
    _kid, key = svc.store.create_key("test")
    with Server(app) as srv:
        client = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                              trust_env=False)
        yield srv, client, svc, key, sink
        client.close()


def test_health_needs_no_key(api):
    srv, _c, _svc, _k, _s = api
    r = httpx.get(f"{srv.url}/api/v1/health", trust_env=False)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["pending_events"] == 0 and body["rules"] >= 30


ROUTES = [("POST", "/api/v1/events"), ("POST", "/api/v1/decide"), ("POST", "/api/v1/scan"),
          ("GET", "/api/v1/decisions/user/u1"), ("GET", "/api/v1/entities/user/u1"), ("GET", "/api/v1/rules"),
          ("GET", "/api/v1/reviews"), ("PUT", "/api/v1/overrides/user/u1"), ("DELETE", "/api/v1/users/u1"),
          ("POST", "/api/v1/rules/backtest"), ("GET", "/api/v1/no-such-route")]


def test_every_api_route_needs_a_valid_key(api):
    srv, client, _svc, _k, _s = api
    for method, path in ROUTES:
        for auth in (None, "Bearer wrong", "Basic abc", "Bearer vk_forged", "Bearer"):
            headers = {"Authorization": auth} if auth else {}
            r = httpx.request(method, srv.url + path, headers=headers, content=b"{}", trust_env=False)
            assert r.status_code == 401, (method, path, auth)
            assert r.json()["error"].startswith("missing, unknown or revoked")
            assert r.headers["WWW-Authenticate"] == "Bearer"
    # with the key, the unknown route is a JSON 404, not a 401
    r = client.get("/api/v1/no-such-route")
    assert r.status_code == 404 and r.json() == {"error": "not found"}


def test_revoked_key_is_refused(api):
    _srv, client, svc, key, _s = api
    assert client.get("/api/v1/decisions/user/u1").status_code == 200
    svc.store.revoke_key(key)
    time.sleep(1.1)  # the server caches a key check for one second
    r = client.get("/api/v1/decisions/user/u1")
    assert r.status_code == 401


def test_events_single_array_ndjson_gzip_and_idempotency(api):
    _srv, client, svc, _k, _s = api
    e1 = {"type": "auth.login", "ts": now_iso(), "user": "u1", "ip": "81.2.69.142", "id": "e1"}
    r = client.post("/api/v1/events", json=e1)
    assert r.status_code == 202 and r.json() == {"accepted": 1, "rejected": []}
    batch = [{"type": "page.view", "ts": now_iso(), "user": "u1", "id": f"a{i}"} for i in range(3)]
    assert client.post("/api/v1/events", json=batch).json()["accepted"] == 3
    nd = "\n".join(json.dumps({"type": "page.view", "ts": now_iso(), "user": "u2", "id": f"n{i}"})
                   for i in range(4)) + "\n\n"
    r = client.post("/api/v1/events", content=gzip.compress(nd.encode()),
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
    assert r.status_code == 202 and r.json()["accepted"] == 4
    r = client.post("/api/v1/events?wait=true", json=[e1, batch[0]])
    assert r.json()["duplicates"] == 2 and r.json()["scored"] is True
    assert svc.store.count_events() == 8
    r = client.post("/api/v1/events?wait=true", json=[])
    assert r.status_code == 202 and r.json() == {"accepted": 0, "rejected": [], "scored": True}


def test_bad_events_are_rejected_one_by_one_and_the_rest_kept(api):
    _srv, client, svc, _k, _s = api
    items = [
        {"type": "page.view", "ts": now_iso(), "user": "ok1", "id": "ok1"},
        {"type": "nonsense", "ts": now_iso(), "user": "u"},
        {"type": "page.view", "ts": now_iso(86400), "user": "u", "id": "future"},
        {"type": "page.view", "ts": "1990-01-01T00:00:00Z", "user": "u"},
        {"type": "llm.request", "ts": now_iso(), "user": "u", "attrs": {"cost_usd": "lots"}},
        "not an object",
        {"type": "page.view", "ts": now_iso(), "user": 12},
        {"type": "page.view", "ts": now_iso(), "user": "ok2", "id": "ok2"},
    ]
    r = client.post("/api/v1/events?wait=true", json=items)
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2
    rej = {x["index"]: x["error"] for x in body["rejected"]}
    assert sorted(rej) == [1, 2, 3, 4, 5, 6]
    assert "unknown event type" in rej[1] and "future" in rej[2] and "older than" in rej[3]
    assert "cost_usd must be a number" in rej[4] and "JSON object" in rej[5] and "user must be a string" in rej[6]
    assert body["rejected"][1]["id"] == "future"
    assert {e["id"] for e in svc.store.iter_events()} == {"ok1", "ok2"}


def test_malformed_bodies_get_clear_errors(api):
    _srv, client, _svc, _k, _s = api
    r = client.post("/api/v1/events", content=b'{"type": "page.view", ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid JSON")
    r = client.post("/api/v1/events", content=b"")
    assert r.status_code == 400 and "empty body" in r.json()["error"]
    r = client.post("/api/v1/events", content=b"42")
    assert r.status_code == 400
    r = client.post("/api/v1/events", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]
    r = client.post("/api/v1/events", content=b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    nd = b'{"type":"page.view","ts":0,"user":"x","id":"nd1"}\n{broken\n'
    r = client.post("/api/v1/events", content=nd, headers={"Content-Type": "application/x-ndjson"})
    body = r.json()
    assert body["accepted"] == 0  # epoch 0 is far in the past
    assert [x["index"] for x in body["rejected"]] == [0, 1] and "invalid JSON" in body["rejected"][1]["error"]
    assert client.get("/api/v1/decisions/planet/mars").status_code == 400


def test_huge_batches_are_refused_whole(tmp_path, store_url):
    cfg = make_config(tmp_path, store_url, max_batch_events=50, max_body_bytes=64 * 1024)
    app = create_app(cfg)
    _kid, key = app.state.behaviour.store.create_key()
    with Server(app) as srv:
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{srv.url}/api/v1/events", headers=h, trust_env=False,
                       json=[{"type": "page.view", "ts": now_iso(), "user": "u"}] * 51)
        assert r.status_code == 413 and "at most 50" in r.json()["error"]
        bomb = gzip.compress(b"[" + b" " * (1024 * 1024) + b"]")
        r = httpx.post(f"{srv.url}/api/v1/events", headers={**h, "Content-Encoding": "gzip"}, content=bomb,
                       trust_env=False)
        assert r.status_code == 413 and "decompressed" in r.json()["error"]


def test_rate_limit_per_key(tmp_path, store_url):
    cfg = make_config(tmp_path, store_url, rate_limit_per_key_per_minute=10)
    app = create_app(cfg)
    _kid, key = app.state.behaviour.store.create_key()
    with Server(app) as srv:
        h = {"Authorization": f"Bearer {key}"}
        ok = httpx.post(f"{srv.url}/api/v1/events", headers=h, trust_env=False,
                        json=[{"type": "page.view", "ts": now_iso(), "user": "u"}] * 8)
        assert ok.status_code == 202
        r = httpx.post(f"{srv.url}/api/v1/events", headers=h, trust_env=False,
                       json=[{"type": "page.view", "ts": now_iso(), "user": "u"}] * 8)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "rate limit" in r.json()["error"]


def test_decide_and_decisions_and_entities(api):
    _srv, client, _svc, _k, sink = api
    for i in range(25):
        client.post("/api/v1/events", json={"type": "auth.login_failed", "ts": now_iso(-100 + i),
                                             "user": f"victim{i}", "ip": "45.33.32.156"})
    r = client.post("/api/v1/decide", json={"type": "auth.login", "ts": now_iso(), "user": "carol",
                                             "ip": "45.33.32.156", "user_agent": "python-requests/2.31"})
    assert r.status_code == 200
    d = r.json()
    assert d["entity"] == {"type": "user", "id": "carol"}
    assert d["action"] in ("challenge", "block") and d["score"] >= 60
    assert any(x["rule"] == "auth.compromised_after_stuffing" for x in d["reasons"])
    assert set(d["reasons"][0]) >= {"rule", "weight", "detail"} and d["as_of"].endswith("Z")
    ipd = client.get("/api/v1/decisions/ip/45.33.32.156").json()
    assert ipd["action"] == "block" and ipd["reasons"][0]["rule"] in ("auth.stuffing_ip", "auth.spraying_ip")
    assert client.get("/api/v1/decisions/user/nobody").json()["action"] == "allow"
    ent = client.get("/api/v1/entities/ip/45.33.32.156").json()
    assert len(ent["links"]["user"]) == 26 and ent["entity"]["attrs"]["country"] == "US"
    assert ent["recent_events"] and ent["score_history"] and ent["decision"]["action"] == "block"
    assert client.get("/api/v1/entities/user/nobody").status_code == 404
    # behavioural decisions reach the decision sink with transport "behaviour"
    assert any(r.transport == "behaviour" and r.action == "block" for r in sink.records)
    reviews = client.get("/api/v1/reviews").json()["reviews"]
    assert {(r["entity_type"], r["entity_id"]) for r in reviews} >= {("ip", "45.33.32.156"), ("user", "carol")}


def test_bad_decide_input(api):
    _srv, client, _svc, _k, _s = api
    assert client.post("/api/v1/decide", json=[{"type": "auth.login"}]).status_code == 400
    r = client.post("/api/v1/decide", json={"type": "auth.login", "ts": now_iso()})
    assert r.status_code == 400 and "user" in r.json()["error"]


def test_overrides_reviews_rules_and_gdpr(api):
    _srv, client, svc, _k, _s = api
    client.post("/api/v1/events?wait=true", json=[
        {"type": "llm.request", "ts": now_iso(), "user": "eve", "session": "s-eve", "api_key": "k-eve"}])
    r = client.put("/api/v1/overrides/user/eve", json={"action": "block", "reason": "chargeback fraud"})
    assert r.status_code == 200 and r.json()["action"] == "block"
    assert client.get("/api/v1/decisions/api_key/k-eve").json()["action"] == "block"
    assert client.put("/api/v1/overrides/user/eve", json={"action": "maybe"}).status_code == 400
    assert client.get("/api/v1/overrides").json()["overrides"][0]["entity_id"] == "eve"
    assert client.delete("/api/v1/overrides/user/eve").json()["action"] == "allow"
    assert client.delete("/api/v1/overrides/user/eve").status_code == 404
    # review queue
    svc.store.open_review("user", "eve", action="review", score=45.0, now=1.0)
    [rev] = client.get("/api/v1/reviews").json()["reviews"]
    r = client.patch(f"/api/v1/reviews/{rev['id']}", json={"assignee": "ana"})
    assert r.json()["assignee"] == "ana"
    assert client.post(f"/api/v1/reviews/{rev['id']}/notes", json={"text": "checked"}).status_code == 201
    r = client.patch(f"/api/v1/reviews/{rev['id']}", json={"status": "resolved", "resolution": "benign"})
    assert r.json()["status"] == "resolved" and [n["text"] for n in r.json()["notes"]] == ["checked"]
    assert client.get("/api/v1/reviews").json()["reviews"] == []
    assert client.get("/api/v1/reviews/999999").status_code == 404
    # rules: list, disable, backtest
    rules = client.get("/api/v1/rules").json()
    assert rules["problems"] == [] and any(r["id"] == "auth.stuffing_ip" for r in rules["rules"])
    r = client.patch("/api/v1/rules/auth.stuffing_ip", json={"enabled": False, "weight": 70})
    assert r.json() == {"rule": "auth.stuffing_ip", "enabled": False, "weight": 70}
    assert client.patch("/api/v1/rules/nope", json={}).status_code == 404
    src = "rules:\n  - {id: x.any_llm, description: d, scope: user, on: llm.request, when: 'true'}\n"
    bt = client.post("/api/v1/rules/backtest", json={"source": src}).json()
    assert bt["would_fire_on"] == 1 and bt["entities"][0]["entity"] == {"type": "user", "id": "eve"}
    bad = client.post("/api/v1/rules/backtest", json={"source": src.replace("'true'", "'true &&'")})
    assert bad.status_code == 400 and bad.json()["problems"][0]["column"]
    # GDPR erasure
    r = client.delete("/api/v1/users/eve")
    assert r.json()["deleted"]["events"] == 1
    assert client.get("/api/v1/entities/user/eve").status_code == 404
    assert svc.store.user_events("eve") == []


def test_state_survives_a_restart_by_replay(tmp_path, store_url):
    cfg = make_config(tmp_path, store_url)
    app = create_app(cfg)
    _kid, key = app.state.behaviour.store.create_key()
    h = {"Authorization": f"Bearer {key}"}
    with Server(app) as srv:
        evs = [{"type": "auth.login_failed", "ts": now_iso(-60 + i), "user": f"v{i}", "ip": "45.33.32.156"}
               for i in range(30)]
        assert httpx.post(f"{srv.url}/api/v1/events?wait=true", json=evs, headers=h,
                          trust_env=False).status_code == 202
        before = httpx.get(f"{srv.url}/api/v1/decisions/ip/45.33.32.156", headers=h, trust_env=False).json()
    app2 = create_app(cfg)
    with Server(app2) as srv:
        after = httpx.get(f"{srv.url}/api/v1/decisions/ip/45.33.32.156", headers=h, trust_env=False).json()
    assert before["action"] == "block" and after == before


def test_webhook_fires_when_a_decision_changes(tmp_path, store_url):
    received: list[dict] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({})

    from starlette.applications import Starlette

    with Server(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_srv:
        cfg = make_config(tmp_path, store_url, webhook_url=f"{hook_srv.url}/hook")
        app = create_app(cfg)
        _kid, key = app.state.behaviour.store.create_key()
        with Server(app) as srv:
            for i in range(3):  # three critical inline blocks: allow → review
                r = httpx.post(f"{srv.url}/api/v1/decide", headers={"Authorization": f"Bearer {key}"},
                               trust_env=False,
                               json={"type": "guard.verdict", "ts": now_iso(i * 0.01), "user": "w",
                                     "attrs": {"action": "block", "severity": "critical", "category": "credential"}})
                assert r.status_code == 200
            assert r.json()["action"] != "allow"
            deadline = time.time() + 10
            while not received and time.time() < deadline:
                time.sleep(0.05)
    assert received and received[0]["event"] == "decision.changed"
    assert received[0]["entity"] == {"type": "user", "id": "w"} and received[0]["previous"] == "allow"


def test_scan_route(api, monkeypatch):
    from vallum.detection import pipeline
    from vallum.detection.model import Verdict

    class FakeInspector:
        def scan(self, content, kind, id=None):
            if kind == "url" and not isinstance(content, str | dict):
                raise pipeline.ScanInputError("url content must be a string or an object")
            return Verdict.from_findings([], id=id)

    # the real inspector compiles the whole detection rule set; this checks the route's contract
    monkeypatch.setattr(pipeline, "get_inspector", lambda cfg=None, engine=None: FakeInspector())
    _srv, client, _svc, _k, _s = api
    r = client.post("/api/v1/scan", json={"id": "c1", "kind": "text", "content": "hello"})
    assert r.status_code == 200 and r.json() == {"id": "c1", "action": "allow", "findings": []}
    r = client.post("/api/v1/scan", json=[{"id": "a", "content": "x"}, {"id": "b", "kind": "nope", "content": "x"},
                                          {"id": "c", "kind": "url", "content": 5}, {"id": "d"}])
    out = r.json()
    assert out[0]["action"] == "allow" and "unknown kind" in out[1]["error"]
    assert "url content" in out[2]["error"] and "missing 'content'" in out[3]["error"]
    assert client.post("/api/v1/scan", json={"kind": "nope", "content": "x"}).status_code == 400


def test_scan_route_with_the_real_inspector(api, store_url):
    if "postgresql" in store_url:
        pytest.skip("the scan route does not touch the store; once is enough")
    _srv, client, _svc, _k, _s = api
    r = client.post("/api/v1/scan", json=[
        {"id": "a", "kind": "text", "content": "hello world"},
        {"id": "b", "kind": "url", "content": "http://169.254.169.254/latest/meta-data/"}])
    assert r.status_code == 200
    a, b = r.json()
    assert a["id"] == "a" and a["action"] == "allow" and a["findings"] == []
    assert b["id"] == "b" and b["action"] == "block" and b["findings"]
