"""Console pages and actions through the real app: what each page shows and what each form does."""

from __future__ import annotations

import re
import time

from console_harness import ConsoleEnv, login, seed, seed_drift, seed_inline, stuffing_events
from starlette.testclient import TestClient

from vallum.console import data
from vallum.mcp.pins import FilePinStore


def test_empty_overview_says_what_to_do(client: TestClient, env: ConsoleEnv) -> None:
    login(client, "vic", env.password("vic"))
    html = client.get("/").text
    assert "No data yet" in html and "HTTPS_PROXY=http://127.0.0.1:8888" in html
    assert "/api/v1/events" in html and "curl" in html
    for page, hint in (("/reviews", "The queue is empty"), ("/traffic", "No inline decision yet"),
                       ("/mcp", "vallum mcp wrap"), ("/events", "No events match")):
        assert hint in client.get(page).text, page


def test_overview_with_data(client: TestClient, env: ConsoleEnv) -> None:
    now = time.time()
    seed(client, env, stuffing_events(now))
    seed_inline(env, now)
    login(client, "vic", env.password("vic"))
    html = client.get("/?range=1h").text
    assert "No data yet" not in html
    assert "(46 in range)" in html
    hits = env.store.rule_hit_counts()["auth.stuffing_ip"]
    assert hits > 1
    assert re.search(r'href="/rules/auth.stuffing_ip">auth.stuffing_ip</a></th><td><span class="bar"[^>]*></span>'
                     f"{hits}<", html)
    assert re.search(r"<th scope=\"row\">credential</th><td>1</td>", html)
    assert re.search(r"<th scope=\"row\">ssrf</th><td>1</td>", html)
    assert "IP address 203.0.113.7" in html
    assert "($1.50)" in html  # 6 × 0.25 USD
    panel = client.get("/overview/panels?range=6h")
    assert panel.status_code == 200 and "<html" not in panel.text and "data-chart" in panel.text
    assert 'hx-trigger="every 15s"' in html
    assert 'hx-trigger="every 2s"' in client.get("/?refresh=0").text


def test_overview_series_buckets() -> None:
    preset, start, end, bucket = data.range_bounds("1h", 1_800_000_000.0)
    assert preset == "1h" and bucket == 60 and end - start == 3600 and start <= 1_800_000_000 < end
    assert data.range_bounds("bogus", 0)[0] == data.DEFAULT_RANGE


def test_events_search_and_detail(client: TestClient, env: ConsoleEnv) -> None:
    seed(client, env, stuffing_events(time.time()))
    login(client, "vic", env.password("vic"))
    html = client.get("/events", params={"entity": "ip:203.0.113.7"}).text
    assert html.count("auth.login_failed</code>") == 40 and "llm.request</code>" not in html
    html = client.get("/events", params={"type": "llm.request"}).text
    assert html.count("llm.request</code>") == 6
    html = client.get("/events", params={"entity": "u_1", "q": "m-large"}).text
    assert html.count("llm.request</code>") == 6
    html = client.get("/events", params={"rule": "auth.stuffing_ip"}).text
    assert 0 < html.count("auth.login_failed</code>") < 40
    html = client.get("/events/lf-203.0.113.7-39").text
    assert "victim39" in html and "python-requests/2.31" in html
    assert client.get("/events/nope").status_code == 404


def test_entity_page_and_confirmed_block(client: TestClient, env: ConsoleEnv) -> None:
    seed(client, env, stuffing_events(time.time()))
    token = login(client, "ana", env.password("ana"))
    html = client.get("/entities/ip/203.0.113.7").text
    assert "auth.stuffing_ip" in html and "data-chart" in html
    assert "victim0" in html  # linked users
    assert "<svg" in html and "Block-list" in html
    # first POST asks for confirmation and changes nothing
    r = client.post("/entities/user/u_1", data={"action": "block", "reason": "resold key", "csrf_token": token})
    assert r.status_code == 200 and "Confirm" in r.text and 'name="confirm" value="yes"' in r.text
    assert env.store.list_overrides() == []
    r = client.post("/entities/user/u_1", data={"action": "block", "reason": "resold key", "confirm": "yes",
                                                "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    ov = env.store.list_overrides()
    assert [(o["entity_type"], o["entity_id"], o["action"], o["created_by"]) for o in ov] == \
        [("user", "u_1", "block", "console:ana")]
    assert env.app.state.behaviour.engine.decide("user", "u_1").action == "block"
    assert "block-listed" in client.get("/entities/user/u_1").text
    client.post("/entities/user/u_1", data={"action": "clear", "confirm": "yes", "csrf_token": token})
    assert env.store.list_overrides() == []
    client.post("/entities/user/u_1", data={"action": "review", "confirm": "yes", "reason": "look",
                                            "csrf_token": token})
    assert any(r["entity_id"] == "u_1" for r in env.store.list_reviews())
    assert client.get("/entities/user/nobody").status_code == 404
    assert client.get("/entities/planet/x").status_code == 404


def test_review_queue_assign_resolve_and_bulk(client: TestClient, env: ConsoleEnv) -> None:
    now = time.time()
    seed(client, env, stuffing_events(now) + stuffing_events(now, ip="198.51.100.99"))
    token = login(client, "ana", env.password("ana"))
    rows = env.store.list_reviews()
    assert {r["entity_id"] for r in rows} >= {"203.0.113.7", "198.51.100.99"}
    html = client.get("/reviews").text
    assert "IP address 203.0.113.7" in html
    rid = rows[0]["id"]
    client.post(f"/reviews/{rid}", data={"op": "assign", "assignee": "", "csrf_token": token})
    assert env.store.get_review(rid)["assignee"] == "ana"
    r = client.post(f"/reviews/{rid}", data={"op": "resolve", "resolution": "nonsense", "csrf_token": token})
    assert r.status_code == 400
    client.post(f"/reviews/{rid}", data={"op": "resolve", "resolution": "fraud", "note": "stuffing confirmed",
                                         "csrf_token": token})
    rev = env.store.get_review(rid)
    assert rev["status"] == "resolved" and rev["resolution"] == "fraud"
    assert [(n["author"], n["text"]) for n in rev["notes"]] == [("ana", "stuffing confirmed")]
    others = [r["id"] for r in env.store.list_reviews()]
    assert others
    r = client.post("/reviews/bulk", data={"ids": [str(i) for i in others], "op": "resolve",
                                           "resolution": "benign", "note": "bulk", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    assert env.store.list_reviews() == []
    assert "The queue is empty" in client.get("/reviews").text
    assert client.post("/reviews/bulk", data={"op": "resolve", "csrf_token": token}).status_code == 400


def test_rules_backtest_then_save(client: TestClient, env: ConsoleEnv) -> None:
    seed(client, env, stuffing_events(time.time()))
    token = login(client, "ana", env.password("ana"))
    html = client.get("/rules").text
    assert "auth.stuffing_ip" in html and "Disable" in html
    html = client.get("/rules/auth.stuffing_ip").text
    assert "ip.failed_logins_10m &gt;= 20.0" in html
    r = client.post("/rules/auth.stuffing_ip/backtest", data={"weight": "55", "range": "all", "csrf_token": token})
    assert "would fire on 1 entity" in r.text and "203.0.113.7" in r.text and "weight 55" in r.text
    assert env.store.rule_settings() == {}  # a backtest saves nothing
    r = client.post("/rules/auth.stuffing_ip/backtest", data={"weight": "500", "csrf_token": token})
    assert r.status_code == 400
    r = client.post("/rules/auth.stuffing_ip", data={"weight": "55", "enabled": "1", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    assert env.store.rule_settings()["auth.stuffing_ip"]["weight"] == 55
    assert env.app.state.behaviour.engine.weights["auth.stuffing_ip"] == 55
    client.post("/rules/auth.stuffing_ip", data={"enabled": "0", "back": "list", "csrf_token": token})
    assert "auth.stuffing_ip" in env.app.state.behaviour.engine.disabled
    assert env.store.rule_settings()["auth.stuffing_ip"]["weight"] == 55  # weight kept
    assert client.get("/rules/nope").status_code == 404


def test_inline_traffic_shows_redacted_decisions(client: TestClient, env: ConsoleEnv) -> None:
    seed_inline(env, time.time())
    login(client, "vic", env.password("vic"))
    html = client.get("/traffic").text
    assert "dlp.github_token" in html and "ghp_…[redacted]" in html and "url.ssrf_metadata" in html
    assert "agent=agent:support" in html
    html = client.get("/traffic", params={"transport": "egress.fetch"}).text
    assert "url.ssrf_metadata" in html and "dlp.github_token" not in html


def test_inline_traffic_falls_back_to_the_audit_log(env: ConsoleEnv) -> None:
    seed_inline(env, time.time())
    env.recent.records.clear()
    rows = data.recent_inline(env.recent, env.audit_dir)
    assert [r["findings"][0]["rule"] for r in rows] == ["url.ssrf_metadata", "dlp.github_token"]
    assert rows[0]["ts"] > rows[1]["ts"]


def test_mcp_drift_approve_and_reject(client: TestClient, env: ConsoleEnv) -> None:
    seed_drift(env, "files")
    seed_drift(env, "notes")
    token = login(client, "ana", env.password("ana"))
    html = client.get("/mcp").text
    assert "definition changed" in html and "~/.ssh/id_rsa" in html
    assert re.search(r'<span class="add">\+.*id_rsa', html) and re.search(r'<span class="del">-.*Read a file\.&#34;', html)
    r = client.post("/mcp/decide", data={"server": "files", "tool": "read_file", "op": "approve",
                                         "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    st = FilePinStore(env.pins_dir).state("files")
    assert st["pending"] == {} and "id_rsa" in st["tools"]["read_file"]["definition"]["description"]
    client.post("/mcp/decide", data={"server": "notes", "tool": "read_file", "op": "reject", "csrf_token": token})
    st = FilePinStore(env.pins_dir).state("notes")
    assert st["pending"] == {} and st["tools"]["read_file"]["definition"]["description"] == "Read a file."
    r = client.post("/mcp/decide", data={"server": "files", "tool": "read_file", "op": "approve",
                                         "csrf_token": token})
    assert r.status_code == 404


def test_audit_page_status_and_search(client: TestClient, env: ConsoleEnv) -> None:
    seed_inline(env, time.time())
    login(client, "vic", env.password("vic"))
    html = client.get("/audit").text
    assert ">intact<" in html
    status = data.audit_status(env.audit_dir)
    assert status and status[0]["status"] == "intact" and status[0]["last_checkpoint"]["reason"] == "close"
    assert f"seq {status[0]['last_seq']}" in html
    html = client.get("/audit", params={"rule": "dlp.*"}).text
    assert "dlp.github_token" in html and "url.ssrf_metadata" not in html
    # tampering shows up
    seg = sorted(env.audit_dir.rglob("*.jsonl"))[0]
    seg.write_text(seg.read_text().replace("paste.example", "pasta.example"))
    html = client.get("/audit").text
    assert ">tampered<" in html and "First problem" in html


def test_account_password_change(client: TestClient, env: ConsoleEnv) -> None:
    token = login(client, "vic", env.password("vic"))
    r = client.post("/account/password", data={"current": "wrong", "password": "brand-new-pass-1",
                                               "password2": "brand-new-pass-1", "csrf_token": token})
    assert r.status_code == 400
    r = client.post("/account/password", data={"current": env.password("vic"), "password": "brand-new-pass-1",
                                               "password2": "brand-new-pass-1", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 200  # fresh session cookie
    client.cookies.clear()
    login(client, "vic", "brand-new-pass-1")


def test_hostile_event_data_is_escaped(client: TestClient, env: ConsoleEnv) -> None:
    evil = "<script>alert(1)</script>"
    now = time.time()
    seed(client, env, [{"id": "x1", "type": "llm.request", "ts": int(now * 1000), "user": evil, "ip": "192.0.2.7",
                        "attrs": {"topic": "'\"><img src=x onerror=alert(2)>"}}])
    login(client, "vic", env.password("vic"))
    for path in ("/events", "/events/x1", f"/entities/user/{evil}", "/entities/ip/192.0.2.7",
                 "/events?entity=" + evil):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/events").text


def test_backtest_an_edited_condition(client: TestClient, env: ConsoleEnv) -> None:
    now = time.time()
    seed(client, env, stuffing_events(now) + stuffing_events(now, ip="198.51.100.99", n=12))
    token = login(client, "ana", env.password("ana"))
    base = {"range": "all", "csrf_token": token}
    r = client.post("/rules/auth.stuffing_ip/backtest", data=base)
    assert "would fire on 1 entity" in r.text and "198.51.100.99" not in r.text
    looser = "ip.failed_logins_10m >= 10.0 && ip.failed_users_10m >= 10.0"
    r = client.post("/rules/auth.stuffing_ip/backtest", data={**base, "when": looser})
    assert "would fire on 2 entities" in r.text and "198.51.100.99" in r.text and "edited" in r.text
    r = client.post("/rules/auth.stuffing_ip/backtest", data={**base, "when": "ip.failed_logins_10m >= "})
    assert r.status_code == 400 and "does not compile" in r.text
    assert env.app.state.behaviour.engine.ruleset.rule("auth.stuffing_ip").when != looser  # nothing saved
