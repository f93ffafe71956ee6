"""The console's pages and forms (Starlette routes rendered with Jinja2).

Every route except `/login` and `/static/…` goes through `Console.guard`: a live session is
required (pages redirect to the login form; other methods get 401), the user's role must reach the
route's minimum, and every non-GET request must carry the session's CSRF token. Pages read through
`vallum.console.data`; actions go through the `BehaviourService` (so the engine and the store stay
consistent) and the MCP pin store.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from vallum.behaviour.events import format_ts
from vallum.behaviour.rules import API_ENTITY_TYPES
from vallum.console import data
from vallum.console.auth import ROLES, AuthError, LoginThrottle, Session, UserStore, csrf_ok

log = logging.getLogger("vallum.console")
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vallum_session"
LOGIN_CSRF_COOKIE = "vallum_login_csrf"
Handler = Callable[[Request], Awaitable[Response]]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ENTITY_LABELS = {"user": "User", "session": "Session", "conversation": "Conversation", "ip": "IP address",
                 "device": "Device", "api_key": "API key", "agent": "Agent", "domain": "Domain",
                 "email_domain": "Email domain"}
RESOLUTIONS = ("fraud", "abuse", "benign", "false_positive", "duplicate")


def _fmt_ts(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ").replace("Z", " UTC")
    return datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class Console:
    """State shared by the console's routes."""

    def __init__(self, config: Any, *, store: Any = None, service: Any = None, audit_dir: Path | None = None,
                 recent_decisions: data.RecentSource = None, pins_dir: Path | None = None,
                 users: UserStore | None = None) -> None:
        self.config = config
        self._store = store
        self._service = service
        self.audit_dir = Path(audit_dir) if audit_dir else None
        self.recent_decisions = recent_decisions
        self.pins_dir = Path(pins_dir) if pins_dir else None
        self._users = users
        self.throttle = LoginThrottle()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["ts"] = _fmt_ts
        env.filters["pretty"] = _pretty
        env.filters["q"] = lambda s: quote(str(s), safe="")
        env.globals["entity_labels"] = ENTITY_LABELS
        env.globals["ranges"] = list(data.RANGES)

    # ------------------------------------------------------------------ wiring
    def service(self, request: Request) -> Any:
        return self._service if self._service is not None else request.app.state.behaviour

    def store(self, request: Request) -> Any:
        return self._store if self._store is not None else self.service(request).store

    def users(self, request: Request) -> UserStore:
        if self._users is None:
            self._users = UserStore(self.store(request))
        return self._users

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def render(self, request: Request, name: str, ctx: dict[str, Any] | None = None, status: int = 200) -> Response:
        sess: Session | None = getattr(request.state, "session", None)
        context = {"user": sess.user if sess else None, "csrf": sess.csrf if sess else "",
                   "path": request.url.path, **(ctx or {})}
        resp = self.templates.TemplateResponse(request, name, context, status_code=status)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    def error(self, request: Request, status: int, message: str) -> Response:
        if request.headers.get("hx-request"):
            resp: Response = HTMLResponse(f'<p class="error" role="alert">{_esc(message)}</p>', status_code=status)
            resp.headers.update(SECURITY_HEADERS)
            return resp
        return self.render(request, "error.html", {"status": status, "message": message}, status=status)

    # ------------------------------------------------------------------ access control
    def guard(self, role: str = "viewer") -> Callable[[Handler], Handler]:
        """Login, role and (for non-GET) CSRF checks around a handler."""
        assert role in ROLES

        def deco(fn: Handler) -> Handler:
            @functools.wraps(fn)
            async def endpoint(request: Request) -> Response:
                users = await self.run(self.users, request)
                sess = await self.run(users.session, request.cookies.get(SESSION_COOKIE))
                if sess is None:
                    if request.method in ("GET", "HEAD"):
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        resp: Response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
                        if request.headers.get("hx-request"):
                            resp.headers["HX-Redirect"] = "/login"
                        return resp
                    return self.error(request, 401, "login required")
                request.state.session = sess
                if not sess.user.can(role):
                    return self.error(request, 403, f"this needs the {role} role (you are {sess.user.role})")
                if request.method not in ("GET", "HEAD"):
                    form = await request.form()
                    token = request.headers.get("x-csrf-token") or form.get("csrf_token")
                    if not csrf_ok(sess.csrf, token if isinstance(token, str) else None):
                        return self.error(request, 403, "missing or wrong CSRF token: reload the page and retry")
                return await fn(request)

            return endpoint

        return deco

    def set_session_cookie(self, request: Request, resp: Response, value: str) -> None:
        resp.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


def _esc(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def _safe_next(target: str | None) -> str:
    """Only local paths: an open redirect after login would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _float(v: Any, default: float | None = None) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def build_routes(c: Console) -> list[BaseRoute]:
    """The console's routes over the shared `Console` state."""

    # ------------------------------------------------------------------ login
    async def login_form(request: Request) -> Response:
        import secrets

        token = secrets.token_urlsafe(24)
        nxt = _safe_next(request.query_params.get("next"))
        resp = c.render(request, "login.html", {"login_csrf": token, "next": nxt, "error": None})
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.url.scheme == "https")
        return resp

    async def login_submit(request: Request) -> Response:
        form = await request.form()
        cookie_tok = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not cookie_tok or not csrf_ok(cookie_tok, str(form.get("csrf_token", ""))):
            return c.error(request, 403, "missing or wrong CSRF token: reload the login page and retry")
        username = str(form.get("username", "")).strip()[:64]
        password = str(form.get("password", ""))[:1024]
        nxt = _safe_next(str(form.get("next", "/")))
        now = time.time()
        client = request.client.host if request.client else "?"
        keys = [f"u:{username.lower()}", f"ip:{client}"]
        users = await c.run(c.users, request)
        if c.throttle.blocked(keys, now):
            return c.render(request, "login.html", {"login_csrf": cookie_tok, "next": nxt,
                                                    "error": "Too many failed attempts; wait a few minutes."},
                            status=429)
        user = await c.run(users.authenticate, username, password)
        if user is None:
            c.throttle.fail(keys, now)
            log.warning("console login failed for %r from %s", username, client)
            return c.render(request, "login.html", {"login_csrf": cookie_tok, "next": nxt,
                                                    "error": "Wrong username or password."}, status=401)
        c.throttle.clear(keys)
        cookie, _csrf = await c.run(users.create_session, user.username)
        resp = RedirectResponse(nxt, status_code=303)
        c.set_session_cookie(request, resp, cookie)
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        log.info("console login: %s (%s)", user.username, user.role)
        return resp

    @c.guard("viewer")
    async def logout(request: Request) -> Response:
        users = await c.run(c.users, request)
        await c.run(users.end_session, request.cookies.get(SESSION_COOKIE, ""))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # ------------------------------------------------------------------ overview
    def overview_ctx(request: Request) -> dict[str, Any]:
        store = c.store(request)
        svc = c.service(request)
        preset, start, end, bucket = data.range_bounds(request.query_params.get("range", data.DEFAULT_RANGE),
                                                       time.time())
        inline = data.recent_inline(c.recent_decisions, c.audit_dir)
        ev = data.events_series(store, start, end, bucket)
        sp = data.spend_series(store, start, end, bucket)
        top = [d.to_dict() for d in svc.engine.top_entities(limit=10, min_score=1.0)]
        return {
            "range": preset, "bucket": bucket, "start": start, "end": end,
            "events": ev, "spend": sp,
            "chart_events": {"x": ev["x"], "series": [{"label": "events / min", "values": ev["y"]}]},
            "chart_spend": {"x": sp["x"], "series": [{"label": "cost (USD)", "values": sp["cost"]}]},
            "chart_tokens": {"x": sp["x"], "series": [{"label": "input tokens", "values": sp["tokens_in"]},
                                                       {"label": "output tokens", "values": sp["tokens_out"]}]},
            "by_action": data.decisions_by_action(store),
            "changes": data.decision_changes_by_action(store, start, end),
            "top_rules": data.top_rules(store, start, end),
            "blocks": data.inline_blocks_by_category(inline, start, end),
            "top_entities": top,
            "total_events": store.count_events(),
            "now_iso": format_ts(time.time()),
            "listen": getattr(getattr(c.config, "console", None), "listen", "127.0.0.1:8080"),
            "proxy_listen": getattr(getattr(c.config, "proxy", None), "listen", "127.0.0.1:8888"),
        }

    @c.guard("viewer")
    async def overview(request: Request) -> Response:
        ctx = await c.run(overview_ctx, request)
        wanted = _float(request.query_params.get("refresh"), 15.0)
        ctx["refresh"] = int(min(3600.0, max(2.0, 15.0 if wanted is None else wanted)))
        return c.render(request, "overview.html", ctx)

    @c.guard("viewer")
    async def overview_panels(request: Request) -> Response:
        return c.render(request, "_overview_panels.html", await c.run(overview_ctx, request))

    # ------------------------------------------------------------------ events
    @c.guard("viewer")
    async def events(request: Request) -> Response:
        q = request.query_params
        preset = q.get("range", "")
        since = until = None
        if preset in data.RANGES:
            _, since, until, _ = data.range_bounds(preset, time.time())
        f = {"type": q.get("type", "").strip(), "entity": q.get("entity", "").strip(),
             "rule": q.get("rule", "").strip(), "text": q.get("q", "").strip()[:200]}
        store = c.store(request)
        rows = await c.run(data.search_events, store, type=f["type"], entity=f["entity"], rule=f["rule"],
                           text=f["text"], since=since, until=until, limit=200)
        types = await c.run(data.event_types, store)
        return c.render(request, "events.html", {"rows": rows, "f": f, "range": preset, "types": types})

    @c.guard("viewer")
    async def event_detail(request: Request) -> Response:
        eid = request.path_params["event_id"]
        store = c.store(request)
        ev = await c.run(data.get_event, store, eid)
        if ev is None:
            return c.error(request, 404, f"no stored event {eid!r}")
        hits = await c.run(data.event_hits, store, eid)
        return c.render(request, "event.html", {"ev": ev, "hits": hits})

    # ------------------------------------------------------------------ entities
    def _entity_params(request: Request) -> tuple[str, str] | None:
        kind = request.path_params["entity_type"]
        if kind not in API_ENTITY_TYPES:
            return None
        return kind, request.path_params["entity_id"]

    @c.guard("viewer")
    async def entity_search(request: Request) -> Response:
        kind = request.query_params.get("type", "user")
        eid = request.query_params.get("id", "").strip()
        if eid and kind in API_ENTITY_TYPES:
            return RedirectResponse(f"/entities/{kind}/{quote(eid, safe='')}", status_code=303)
        svc = c.service(request)
        top = [d.to_dict() for d in svc.engine.top_entities(limit=50, min_score=0.0)]
        return c.render(request, "entities.html", {"top": top, "types": API_ENTITY_TYPES})

    def entity_ctx(request: Request, kind: str, eid: str) -> dict[str, Any] | None:
        svc = c.service(request)
        store = c.store(request)
        view = svc.engine.entity_view(kind, eid)
        decision = svc.engine.decide(kind, eid)
        hist = store.score_history_for(kind, eid, limit=500)
        if view is None and not hist:
            return None
        recent_ids = (view or {}).get("recent_event_ids", [])
        timeline = store.user_events(eid, limit=50) if kind == "user" else store.get_events(recent_ids[:50])
        if kind != "user":
            timeline.sort(key=lambda e: e.get("ts", ""), reverse=True)
        links = (view or {}).get("links", {})
        reviews = [r for r in store.list_reviews(status=None, limit=1000)
                   if r["entity_type"] == kind and r["entity_id"] == eid]
        override = next((o for o in store.list_overrides() if o["entity_type"] == kind and o["entity_id"] == eid), None)
        return {
            "kind": kind, "eid": eid, "view": view, "decision": decision.to_dict(), "override": override,
            "hits": data.entity_hits(store, kind, eid),
            "chart_score": {"x": [h["ts"] for h in hist], "series": [{"label": "score", "values":
                                                                      [h["score"] for h in hist]}],
                            "ymax": 100},
            "history": hist[-20:],
            "timeline": timeline, "links": links,
            "linked_users": (view or {}).get("linked_users", []),
            "graph": link_graph(kind, eid, links),
            "reviews": reviews,
        }

    @c.guard("viewer")
    async def entity(request: Request) -> Response:
        p = _entity_params(request)
        if p is None:
            return c.error(request, 404, f"unknown entity type; expected one of {', '.join(API_ENTITY_TYPES)}")
        ctx = await c.run(entity_ctx, request, *p)
        if ctx is None:
            return c.error(request, 404, f"no {p[0]} {p[1]!r} has been seen")
        return c.render(request, "entity.html", ctx)

    @c.guard("analyst")
    async def entity_action(request: Request) -> Response:
        p = _entity_params(request)
        if p is None:
            return c.error(request, 404, "unknown entity type")
        kind, eid = p
        form = await request.form()
        action = str(form.get("action", ""))
        reason = str(form.get("reason", ""))[:1000]
        if action not in ("allow", "block", "clear", "review"):
            return c.error(request, 400, "action must be allow, block, clear or review")
        if form.get("confirm") != "yes":
            return c.render(request, "confirm.html", {"kind": kind, "eid": eid, "action": action, "reason": reason})
        svc = c.service(request)
        who = request.state.session.user.username
        if action in ("allow", "block"):
            await svc.call(svc.set_override_sync, kind, eid, action, reason=reason or f"console: {action}-list",
                           created_by=f"console:{who}")
        elif action == "clear":
            await svc.call(svc.remove_override_sync, kind, eid)
        else:
            d = svc.engine.decide(kind, eid)
            rid = await svc.call(svc.store.open_review, kind, eid, action=d.action, score=d.score, now=time.time())
            if reason:
                await svc.call(svc.store.add_review_note, rid, who, reason, now=time.time())
        log.info("console: %s set %s on %s:%s", who, action, kind, eid)
        return RedirectResponse(f"/entities/{kind}/{quote(eid, safe='')}?done={action}", status_code=303)

    # ------------------------------------------------------------------ review queue
    @c.guard("viewer")
    async def reviews(request: Request) -> Response:
        status = request.query_params.get("status", "open")
        assignee = request.query_params.get("assignee", "").strip() or None
        store = c.store(request)
        rows = await c.run(store.list_reviews, status=None if status == "all" else status, assignee=assignee,
                           limit=500)
        thresholds = getattr(getattr(c.config, "behaviour", None), "thresholds", None)
        return c.render(request, "reviews.html", {"rows": rows, "status": status, "assignee": assignee or "",
                                                  "thresholds": thresholds, "resolutions": RESOLUTIONS})

    @c.guard("viewer")
    async def review_detail(request: Request) -> Response:
        try:
            rid = int(request.path_params["review_id"])
        except ValueError:
            return c.error(request, 404, "no such review")
        store = c.store(request)
        row = await c.run(store.get_review, rid)
        if row is None:
            return c.error(request, 404, "no such review")
        svc = c.service(request)
        return c.render(request, "review.html", {"r": row, "resolutions": RESOLUTIONS,
                                                 "decision": svc.engine.decide(row["entity_type"],
                                                                               row["entity_id"]).to_dict()})

    async def _apply_review(request: Request, rid: int, form: Any) -> str | None:
        svc = c.service(request)
        who = request.state.session.user.username
        op = str(form.get("op", ""))
        note = str(form.get("note", "")).strip()[:10000]
        now = time.time()
        if op == "assign":
            assignee = str(form.get("assignee", "")).strip()[:200] or who
            ok = await svc.call(svc.store.update_review, rid, now=now, assignee=assignee)
        elif op == "resolve":
            resolution = str(form.get("resolution", ""))
            if resolution not in RESOLUTIONS:
                return f"resolution must be one of {', '.join(RESOLUTIONS)}"
            ok = await svc.call(svc.store.update_review, rid, now=now, status="resolved", resolution=resolution)
        elif op == "reopen":
            ok = await svc.call(svc.store.update_review, rid, now=now, status="open", resolution=None)
        elif op == "note":
            if not note:
                return "write a note first"
            ok = await svc.call(svc.store.get_review, rid) is not None
        else:
            return "unknown operation"
        if not ok:
            return "no such review"
        if note:
            await svc.call(svc.store.add_review_note, rid, who, note, now=now)
        return None

    @c.guard("analyst")
    async def review_update(request: Request) -> Response:
        try:
            rid = int(request.path_params["review_id"])
        except ValueError:
            return c.error(request, 404, "no such review")
        err = await _apply_review(request, rid, await request.form())
        if err:
            return c.error(request, 400, err)
        return RedirectResponse(f"/reviews/{rid}", status_code=303)

    @c.guard("analyst")
    async def reviews_bulk(request: Request) -> Response:
        form = await request.form()
        ids = []
        for v in form.getlist("ids"):
            try:
                ids.append(int(str(v)))
            except ValueError:
                continue
        if not ids:
            return c.error(request, 400, "select at least one review item")
        for rid in ids:
            err = await _apply_review(request, rid, form)
            if err:
                return c.error(request, 400, f"review {rid}: {err}")
        return RedirectResponse(f"/reviews?done={len(ids)}", status_code=303)

    # ------------------------------------------------------------------ rules
    def rules_ctx(request: Request) -> dict[str, Any]:
        svc = c.service(request)
        eng = svc.engine
        counts = c.store(request).rule_hit_counts()
        rows = []
        for r in eng.ruleset.rules:
            rows.append({"id": r.id, "description": r.description, "scope": r.scope, "severity": r.severity,
                         "weight": eng.weights.get(r.id, r.weight), "default_weight": r.weight,
                         "enabled": r.enabled and r.id not in eng.disabled, "hits": counts.get(r.id, 0),
                         "error": eng.rule_errors.get(r.id), "tags": r.tags})
        return {"rules": rows, "problems": [p.to_dict() for p in eng.ruleset.problems]}

    @c.guard("viewer")
    async def rules(request: Request) -> Response:
        return c.render(request, "rules.html", await c.run(rules_ctx, request))

    @c.guard("viewer")
    async def rule_detail(request: Request) -> Response:
        svc = c.service(request)
        rule = svc.engine.ruleset.rule(request.path_params["rule_id"])
        if rule is None:
            return c.error(request, 404, "no such rule")
        counts = await c.run(c.store(request).rule_hit_counts)
        return c.render(request, "rule.html", {
            "r": rule, "weight": svc.engine.weights.get(rule.id, rule.weight),
            "enabled": rule.enabled and rule.id not in svc.engine.disabled, "hits": counts.get(rule.id, 0),
            "error": svc.engine.rule_errors.get(rule.id)})

    def _weight(form: Any) -> float | str | None:
        raw = str(form.get("weight", "")).strip()
        if raw == "":
            return None
        w = _float(raw)
        if w is None or not 0 <= w <= 100:
            return "weight must be a number from 0 to 100"
        return w

    @c.guard("analyst")
    async def rule_save(request: Request) -> Response:
        svc = c.service(request)
        rid = request.path_params["rule_id"]
        if svc.engine.ruleset.rule(rid) is None:
            return c.error(request, 404, "no such rule")
        form = await request.form()
        w = _weight(form)
        if isinstance(w, str):
            return c.error(request, 400, w)
        enabled = form.get("enabled")
        en = None if enabled is None else str(enabled) in ("1", "true", "on", "yes")
        await svc.call(svc.set_rule_setting_sync, rid, enabled=en, weight=w)
        log.info("console: %s changed rule %s (enabled=%s weight=%s)", request.state.session.user.username,
                 rid, en, w)
        back = str(form.get("back", ""))
        return RedirectResponse("/rules" if back == "list" else f"/rules/{rid}?saved=1", status_code=303)

    @c.guard("analyst")
    async def rule_backtest(request: Request) -> Response:
        from vallum.behaviour.events import event_from_stored
        from vallum.behaviour.testing import backtest

        svc = c.service(request)
        rule = svc.engine.ruleset.rule(request.path_params["rule_id"])
        if rule is None:
            return c.error(request, 404, "no such rule")
        form = await request.form()
        w = _weight(form)
        if isinstance(w, str):
            return c.error(request, 400, w)
        preset = str(form.get("range", "30d"))
        since = None
        if preset in data.RANGES:
            since = data.range_bounds(preset, time.time())[1]
        store = c.store(request)
        when = str(form.get("when", "")).strip()
        candidate = rule
        if when and when != rule.when.strip():
            candidate_or_err = edited_rule(rule, when)
            if isinstance(candidate_or_err, str):
                return c.error(request, 400, candidate_or_err)
            candidate = candidate_or_err

        def run() -> dict[str, Any]:
            evs = (event_from_stored(d) for d in store.iter_events(
                since_ms=int(since * 1000) if since is not None else None))
            return backtest(candidate, svc.engine.ruleset, evs).to_dict()

        res = await c.run(run)
        cur = svc.engine.weights.get(rule.id, rule.weight)
        return c.render(request, "_backtest.html", {"res": res, "r": rule, "weight": w if w is not None else cur,
                                                    "current_weight": cur, "range": preset,
                                                    "edited": candidate is not rule, "when": candidate.when})

    # ------------------------------------------------------------------ inline traffic and MCP
    @c.guard("viewer")
    async def traffic(request: Request) -> Response:
        q = request.query_params
        rows = await c.run(data.recent_inline, c.recent_decisions, c.audit_dir)
        action = q.get("action", "")
        transport = q.get("transport", "")
        if action:
            rows = [r for r in rows if r.get("action") == action]
        if transport:
            rows = [r for r in rows if str(r.get("transport", "")).startswith(transport)]
        return c.render(request, "traffic.html", {"rows": rows[:300], "action": action, "transport": transport,
                                                  "proxy_listen": getattr(getattr(c.config, "proxy", None),
                                                                          "listen", "127.0.0.1:8888")})

    @c.guard("viewer")
    async def mcp(request: Request) -> Response:
        servers = await c.run(data.mcp_servers, c.pins_dir)
        return c.render(request, "mcp.html", {"servers": servers, "pins_dir": c.pins_dir})

    @c.guard("analyst")
    async def mcp_decide(request: Request) -> Response:
        if c.pins_dir is None:
            return c.error(request, 404, "no MCP pin folder is configured")
        form = await request.form()
        server = str(form.get("server", ""))
        tool = str(form.get("tool", ""))
        op = str(form.get("op", ""))
        if op not in ("approve", "reject"):
            return c.error(request, 400, "op must be approve or reject")
        try:
            if op == "approve":
                ok = await c.run(data.approve_tool, c.pins_dir, server, tool)
            else:
                ok = await c.run(data.reject_tool, c.pins_dir, server, tool)
        except ValueError as exc:
            return c.error(request, 409, str(exc))
        if not ok:
            return c.error(request, 404, f"nothing pending for {server}/{tool}")
        log.info("console: %s %sd MCP tool %s/%s", request.state.session.user.username, op, server, tool)
        return RedirectResponse(f"/mcp?done={op}", status_code=303)

    # ------------------------------------------------------------------ audit
    @c.guard("viewer")
    async def audit(request: Request) -> Response:
        q = request.query_params
        f = {k: q.get(k, "").strip()[:200] for k in ("rule", "principal", "action", "kind", "q", "range")}
        since = data.range_bounds(f["range"], time.time())[1] if f["range"] in data.RANGES else None
        status = await c.run(data.audit_status, c.audit_dir)
        entries = await c.run(data.audit_search, c.audit_dir, rule=f["rule"], principal=f["principal"],
                              action=f["action"], kind=f["kind"], since=since, text=f["q"])
        return c.render(request, "audit.html", {"status": status, "entries": entries, "f": f,
                                                "audit_dir": c.audit_dir})

    # ------------------------------------------------------------------ users and account
    @c.guard("admin")
    async def users_page(request: Request) -> Response:
        users = await c.run(c.users, request)
        return c.render(request, "users.html", {"users": await c.run(users.list_users), "roles": ROLES,
                                                "error": None})

    @c.guard("admin")
    async def users_create(request: Request) -> Response:
        users = await c.run(c.users, request)
        form = await request.form()
        try:
            await c.run(users.create_user, str(form.get("username", "")).strip(), str(form.get("password", "")),
                        str(form.get("role", "")))
        except AuthError as exc:
            return c.render(request, "users.html", {"users": await c.run(users.list_users), "roles": ROLES,
                                                    "error": str(exc)}, status=400)
        return RedirectResponse("/users?done=created", status_code=303)

    @c.guard("admin")
    async def users_update(request: Request) -> Response:
        users = await c.run(c.users, request)
        name = request.path_params["username"]
        form = await request.form()
        op = str(form.get("op", ""))
        try:
            if op == "role":
                await c.run(users.set_role, name, str(form.get("role", "")))
            elif op in ("disable", "enable"):
                await c.run(users.set_disabled, name, op == "disable")
            elif op == "password":
                await c.run(users.set_password, name, str(form.get("password", "")))
            else:
                raise AuthError("unknown operation")
        except AuthError as exc:
            return c.render(request, "users.html", {"users": await c.run(users.list_users), "roles": ROLES,
                                                    "error": str(exc)}, status=400)
        return RedirectResponse(f"/users?done={op}", status_code=303)

    @c.guard("viewer")
    async def account(request: Request) -> Response:
        return c.render(request, "account.html", {"error": None, "done": request.query_params.get("done")})

    @c.guard("viewer")
    async def account_password(request: Request) -> Response:
        users = await c.run(c.users, request)
        form = await request.form()
        me = request.state.session.user.username
        if await c.run(users.authenticate, me, str(form.get("current", ""))) is None:
            return c.render(request, "account.html", {"error": "The current password is wrong.", "done": None},
                            status=400)
        if str(form.get("password", "")) != str(form.get("password2", "")):
            return c.render(request, "account.html", {"error": "The new passwords differ.", "done": None},
                            status=400)
        try:
            await c.run(users.set_password, me, str(form.get("password", "")))
        except AuthError as exc:
            return c.render(request, "account.html", {"error": str(exc), "done": None}, status=400)
        cookie, _ = await c.run(users.create_session, me)
        resp = RedirectResponse("/account?done=1", status_code=303)
        c.set_session_cookie(request, resp, cookie)
        return resp

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview, methods=["GET"]),
        Route("/overview/panels", overview_panels, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/events/{event_id:path}", event_detail, methods=["GET"]),
        Route("/entities", entity_search, methods=["GET"]),
        Route("/entities/{entity_type}/{entity_id:path}", entity, methods=["GET"]),
        Route("/entities/{entity_type}/{entity_id:path}", entity_action, methods=["POST"]),
        Route("/reviews", reviews, methods=["GET"]),
        Route("/reviews/bulk", reviews_bulk, methods=["POST"]),
        Route("/reviews/{review_id}", review_detail, methods=["GET"]),
        Route("/reviews/{review_id}", review_update, methods=["POST"]),
        Route("/rules", rules, methods=["GET"]),
        Route("/rules/{rule_id}", rule_detail, methods=["GET"]),
        Route("/rules/{rule_id}", rule_save, methods=["POST"]),
        Route("/rules/{rule_id}/backtest", rule_backtest, methods=["POST"]),
        Route("/traffic", traffic, methods=["GET"]),
        Route("/mcp", mcp, methods=["GET"]),
        Route("/mcp/decide", mcp_decide, methods=["POST"]),
        Route("/audit", audit, methods=["GET"]),
        Route("/users", users_page, methods=["GET"]),
        Route("/users", users_create, methods=["POST"]),
        Route("/users/{username}", users_update, methods=["POST"]),
        Route("/account", account, methods=["GET"]),
        Route("/account/password", account_password, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="console-static"),
    ]


def edited_rule(rule: Any, when: str) -> Any:
    """A copy of `rule` with another CEL condition (for a backtest only), or the problem as text."""
    import yaml

    from vallum.behaviour.rules import load_rule_source

    item: dict[str, Any] = {"id": rule.id, "description": rule.description, "when": when, "scope": rule.scope,
                            "weight": rule.weight, "severity": rule.severity, "evidence": list(rule.evidence)}
    if rule.on:
        item["on"] = sorted(rule.on)
    doc = {"version": 1, "rules": [item]}
    try:
        rs = load_rule_source(yaml.safe_dump(doc, sort_keys=False), "<console>")
    except ValueError as exc:
        return f"the edited expression does not load: {exc}"
    if rs.problems or not rs.rules:
        return "the edited expression does not compile: " + "; ".join(str(p) for p in rs.problems)
    return rs.rules[0]


def link_graph(kind: str, eid: str, links: dict[str, Iterable[str]], limit: int = 24) -> dict[str, Any]:
    """A radial layout (SVG coordinates) of an entity and its linked entities, drawn server-side."""
    import math

    nodes = [{"kind": k, "id": i} for k, ids in sorted(links.items()) for i in list(ids)[:limit]][:limit]
    cx, cy, r = 300.0, 170.0, 130.0
    out = []
    for n, node in enumerate(nodes):
        a = 2 * math.pi * n / max(1, len(nodes)) - math.pi / 2
        out.append({**node, "x": round(cx + r * math.cos(a), 1), "y": round(cy + r * 0.9 * math.sin(a), 1),
                    "label": (node["id"][:18] + "…") if len(node["id"]) > 19 else node["id"]})
    return {"center": {"kind": kind, "id": eid, "x": cx, "y": cy}, "nodes": out, "width": 600, "height": 340}
