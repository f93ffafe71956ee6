"""Console access control: login, sessions, roles and CSRF on every page and form."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from console_harness import ConsoleEnv, csrf_of, login, seed, stuffing_events
from starlette.testclient import TestClient

from vallum.console import UserStore, ensure_admin
from vallum.console.auth import console_users

VIEWER_PAGES = ["/", "/overview/panels?range=1h", "/events", "/events/lf-203.0.113.7-0", "/entities",
                "/entities/ip/203.0.113.7", "/reviews", "/reviews/1", "/rules", "/rules/auth.stuffing_ip",
                "/traffic", "/mcp", "/audit", "/account"]
ADMIN_PAGES = ["/users"]
#: every state-changing form, with the least role it needs and a body that would act
FORMS = [
    ("/logout", "viewer", {}),
    ("/account/password", "viewer", {"current": "x", "password": "new-password-123", "password2": "new-password-123"}),
    ("/entities/ip/203.0.113.7", "analyst", {"action": "block", "confirm": "yes", "reason": "test"}),
    ("/reviews/1", "analyst", {"op": "resolve", "resolution": "benign", "note": "n"}),
    ("/reviews/bulk", "analyst", {"ids": "1", "op": "resolve", "resolution": "benign"}),
    ("/rules/auth.stuffing_ip", "analyst", {"weight": "5", "enabled": "0"}),
    ("/rules/auth.stuffing_ip/backtest", "analyst", {"weight": "5", "range": "all"}),
    ("/mcp/decide", "analyst", {"server": "files", "tool": "read_file", "op": "approve"}),
    ("/users", "admin", {"username": "eve", "password": "eve-password-1", "role": "admin"}),
    ("/users/vic", "admin", {"op": "role", "role": "admin"}),
]
RANK = {"viewer": 0, "analyst": 1, "admin": 2}
USER_OF_ROLE = {"viewer": "vic", "analyst": "ana", "admin": "admin"}


@pytest.fixture
def seeded(client: TestClient, env: ConsoleEnv) -> TestClient:
    import time

    seed(client, env, stuffing_events(time.time()))
    return client


def _unchanged(env: ConsoleEnv) -> None:
    """None of the FORMS bodies took effect."""
    assert env.store.list_overrides() == []
    assert all(r["status"] == "open" for r in env.store.list_reviews(status=None))
    assert env.store.rule_settings() == {}
    users = {u.username: u.role for u in UserStore(env.store).list_users()}
    assert "eve" not in users and users["vic"] == "viewer"


def test_anonymous_pages_redirect_to_login(seeded: TestClient) -> None:
    for path in VIEWER_PAGES + ADMIN_PAGES:
        r = seeded.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), path
        assert "vallum" not in r.text or "<main" not in r.text  # no page content leaks with the redirect


def test_anonymous_forms_are_refused(seeded: TestClient, env: ConsoleEnv) -> None:
    assert env.store.list_reviews(), "the seed opens a review"
    for path, _role, body in FORMS:
        r = seeded.post(path, data=body, follow_redirects=False)
        assert r.status_code == 401, path
    _unchanged(env)


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_under_privileged_users_are_refused(seeded: TestClient, env: ConsoleEnv, role: str) -> None:
    user = USER_OF_ROLE[role]
    token = login(seeded, user, env.password(user))
    for path in ADMIN_PAGES:
        assert seeded.get(path).status_code == 403
    for path in VIEWER_PAGES:
        assert seeded.get(path).status_code == 200, path
    for path, need, body in FORMS:
        if RANK[need] > RANK[role]:
            r = seeded.post(path, data={**body, "csrf_token": token}, follow_redirects=False)
            assert r.status_code == 403, path
            assert "role" in r.text
    _unchanged(env)


def test_every_form_needs_the_csrf_token(seeded: TestClient, env: ConsoleEnv) -> None:
    login(seeded, "admin", env.admin_password)
    for path, _role, body in FORMS:
        for extra in ({}, {"csrf_token": "forged"}):
            r = seeded.post(path, data={**body, **extra}, follow_redirects=False)
            assert r.status_code == 403, (path, extra)
            assert "CSRF" in r.text
        r = seeded.post(path, data=body, headers={"X-CSRF-Token": "forged"}, follow_redirects=False)
        assert r.status_code == 403
    _unchanged(env)
    # the session is still alive: /logout without a token did nothing
    assert seeded.get("/", follow_redirects=False).status_code == 200


def test_csrf_header_is_accepted_for_htmx(seeded: TestClient, env: ConsoleEnv) -> None:
    token = login(seeded, "ana", env.password("ana"))
    r = seeded.post("/rules/auth.stuffing_ip/backtest", data={"range": "all"},
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 200
    assert "would fire on 1 entity" in r.text


def test_login_form_needs_csrf(client: TestClient, env: ConsoleEnv) -> None:
    r = client.post("/login", data={"username": "admin", "password": env.admin_password}, follow_redirects=False)
    assert r.status_code == 403
    assert "vallum_session" not in r.headers.get("set-cookie", "")


def test_session_cookie_flags(client: TestClient, env: ConsoleEnv) -> None:
    r = client.get("/login")
    r = client.post("/login", data={"username": "admin", "password": env.admin_password,
                                    "csrf_token": csrf_of(r.text)}, follow_redirects=False)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("vallum_session="))
    flags = [p.strip().lower() for p in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags
    value = cookie.split(";")[0].split("=", 1)[1]
    assert "." in value and len(value) > 60  # token + HMAC


def test_session_cookie_is_secure_over_tls(env: ConsoleEnv) -> None:
    with TestClient(env.app, base_url="https://testserver") as c:
        r = c.get("/login")
        r = c.post("/login", data={"username": "admin", "password": env.admin_password,
                                   "csrf_token": csrf_of(r.text)}, follow_redirects=False)
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("vallum_session="))
        assert "secure" in [p.strip().lower() for p in cookie.split(";")]


def test_forged_or_altered_cookie_is_rejected(client: TestClient, env: ConsoleEnv) -> None:
    login(client, "admin", env.admin_password)
    good = client.cookies["vallum_session"]
    token, mac = good.rsplit(".", 1)
    for bad in (token + "." + ("0" * len(mac)), "x" + good[1:], token, "garbage"):
        client.cookies.clear()
        client.cookies.set("vallum_session", bad)
        assert client.get("/", follow_redirects=False).status_code == 303, bad
    client.cookies.clear()
    client.cookies.set("vallum_session", good)
    assert client.get("/", follow_redirects=False).status_code == 200


def test_logout_ends_the_session_on_the_server(client: TestClient, env: ConsoleEnv) -> None:
    token = login(client, "admin", env.admin_password)
    cookie = client.cookies["vallum_session"]
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    client.cookies.set("vallum_session", cookie)  # replaying the old cookie
    assert client.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_and_throttle(client: TestClient, env: ConsoleEnv) -> None:
    tok = csrf_of(client.get("/login").text)
    for _ in range(5):
        r = client.post("/login", data={"username": "ana", "password": "wrong-password", "csrf_token": tok})
        assert r.status_code == 401
        assert "Wrong username or password" in r.text
    r = client.post("/login", data={"username": "ana", "password": env.password("ana"), "csrf_token": tok})
    assert r.status_code == 429


def test_unknown_user_gets_the_same_answer(client: TestClient) -> None:
    tok = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": "nobody", "password": "whatever-123", "csrf_token": tok})
    assert r.status_code == 401 and "Wrong username or password" in r.text


def test_no_open_redirect_after_login(client: TestClient, env: ConsoleEnv) -> None:
    for target, want in (("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/rules?x=1", "/rules?x=1")):
        client.cookies.clear()
        tok = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"username": "admin", "password": env.admin_password, "csrf_token": tok,
                                        "next": target}, follow_redirects=False)
        assert r.headers["location"] == want


def test_ensure_admin_once_and_argon2(env: ConsoleEnv) -> None:
    assert ensure_admin(env.store) is None
    with env.store.engine.connect() as c:
        hashes = [r[0] for r in c.execute(sa.select(console_users.c.password_hash))]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert env.admin_password not in " ".join(hashes)


def test_ensure_admin_from_a_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    creds = ensure_admin(tmp_path / "d", password="a-long-password-1")
    assert creds is not None and creds.username == "admin" and creds.password == "a-long-password-1"
    assert ensure_admin(tmp_path / "d") is None
    assert UserStore(tmp_path / "d").authenticate("admin", "a-long-password-1") is not None


def test_disabling_a_user_ends_its_sessions(env: ConsoleEnv) -> None:
    with TestClient(env.app) as vic, TestClient(env.app) as admin:
        login(vic, "vic", env.password("vic"))
        assert vic.get("/", follow_redirects=False).status_code == 200
        token = login(admin, "admin", env.admin_password)
        r = admin.post("/users/vic", data={"op": "disable", "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303
        assert vic.get("/", follow_redirects=False).status_code == 303
        tok = csrf_of(vic.get("/login").text)
        r = vic.post("/login", data={"username": "vic", "password": env.password("vic"), "csrf_token": tok})
        assert r.status_code == 401


def test_admin_manages_users_but_not_the_last_admin(client: TestClient, env: ConsoleEnv) -> None:
    token = login(client, "admin", env.admin_password)
    r = client.post("/users", data={"username": "eve", "password": "short", "role": "viewer", "csrf_token": token})
    assert r.status_code == 400 and "at least 10" in r.text
    r = client.post("/users", data={"username": "eve", "password": "eve-password-1", "role": "analyst",
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert UserStore(env.store).get_user("eve").role == "analyst"  # type: ignore[union-attr]
    r = client.post("/users/admin", data={"op": "role", "role": "viewer", "csrf_token": token})
    assert r.status_code == 400 and "last active admin" in r.text
    assert UserStore(env.store).get_user("admin").role == "admin"  # type: ignore[union-attr]


def test_static_assets_need_no_login_and_pages_send_security_headers(client: TestClient, env: ConsoleEnv) -> None:
    r = client.get("/static/vendor/htmx.min.js")
    assert r.status_code == 200 and len(r.content) > 10_000
    assert client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    r = client.get("/login")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    login(client, "vic", env.password("vic"))
    assert "frame-ancestors 'none'" in client.get("/").headers["content-security-policy"]


def test_api_still_wants_a_key_with_a_console_session(client: TestClient, env: ConsoleEnv) -> None:
    login(client, "admin", env.admin_password)
    assert client.get("/api/v1/rules").status_code == 401
