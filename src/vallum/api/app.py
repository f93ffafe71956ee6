"""The HTTP API (INTERFACES §6) as a Starlette app that the console and metrics mount beside.

    app = create_app(config, store=None, sink=None, extra_routes=(...), lifespan_hooks=(...))

`app.state.behaviour` is the `BehaviourService` (store, engine, sink); the console reads it. Every
`/api/` route except `/api/v1/health` needs `Authorization: Bearer <api key>` (or what an
`api_auth` hook accepts); errors are JSON `{"error": …}`, never a stack trace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vallum.api.service import BehaviourService, RateLimited
from vallum.behaviour.events import EventError, format_ts, validate_event
from vallum.behaviour.rules import API_ENTITY_TYPES, RuleFileError, load_rule_source
from vallum.config import Config
from vallum.decisions import DecisionSink
from vallum.storage.store import Store

log = logging.getLogger("vallum.api")
LifespanHook = Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]]
ApiAuth = Callable[[Request], Awaitable[str | None]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ApiGuard:
    """ASGI middleware for /api/: authentication, JSON errors for every failure, no stack traces."""

    def __init__(self, app: ASGIApp, api_auth: ApiAuth | None = None) -> None:
        self.app = app
        self.api_auth = api_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if scope["path"].rstrip("/") != "/api/v1/health":
            key_id = await self._authenticate(request)
            if key_id is None:
                await _err(401, "missing, unknown or revoked API key (Authorization: Bearer <key>)",
                           {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            scope.setdefault("state", {})["key_id"] = key_id
        started = False

        async def send_wrapper(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("API error on %s %s", scope.get("method"), scope["path"])
            if not started:
                await _err(500, "internal error (logged on the server)")(scope, receive, send)

    async def _authenticate(self, request: Request) -> str | None:
        if self.api_auth is not None:
            who = await self.api_auth(request)
            if who:
                return who
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        svc: BehaviourService = request.app.state.behaviour
        now = time.time()
        cached = svc.cached_key(token.strip(), now)
        if cached is not None:
            return cached[0]  # verified within the last second: no thread hop on the hot path
        import anyio

        return await anyio.to_thread.run_sync(svc.verify_key, token.strip(), now)


# ---------------------------------------------------------------------- body parsing
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped if `Content-Encoding: gzip`, at most `limit` bytes."""
    enc = request.headers.get("content-encoding", "identity").lower().strip()
    if enc not in ("identity", "gzip", "x-gzip", ""):
        raise ApiError(415, f"unsupported Content-Encoding {enc!r} (use gzip or none)")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
    if enc in ("gzip", "x-gzip"):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(bytes(raw), limit + 1)
        except zlib.error as exc:
            raise ApiError(400, f"body is not valid gzip: {exc}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise ApiError(413, f"decompressed body larger than {limit} bytes")
        return out
    return bytes(raw)


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def parse_event_payload(body: bytes, content_type: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """(items, rejections): one object, a JSON array, or NDJSON; a bad NDJSON line is one rejection."""
    if not body.strip():
        raise ApiError(400, "empty body: send one event, a JSON array of events, or NDJSON")
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"):
        items: list[Any] = []
        rejected: list[dict[str, Any]] = []
        idx = 0
        for lineno, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except UnicodeDecodeError:
                items.append(_Bad(f"line {lineno}: not valid UTF-8"))
            except json.JSONDecodeError as exc:
                items.append(_Bad(f"line {lineno}: invalid JSON: {exc.msg} at column {exc.colno}"))
            idx += 1
        return items, rejected
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, _json_error(exc)) from None
    if isinstance(data, list):
        return data, []
    if isinstance(data, dict):
        return [data], []
    raise ApiError(400, "expected an event object, a JSON array of events, or NDJSON")


class _Bad:
    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


# ---------------------------------------------------------------------- routes
def _svc(request: Request) -> BehaviourService:
    return request.app.state.behaviour


def _cfg(request: Request) -> Config:
    return request.app.state.config


async def health(request: Request) -> Response:
    svc = _svc(request)
    eng = svc.engine
    return JSONResponse({
        "status": "ok" if svc.ready else "starting",
        "pending_events": svc.pending_events,
        "store": svc.store.dialect,
        "events_processed": eng.events_processed,
        "entities": len(eng.entities),
        "rules": sum(1 for r in eng.ruleset.rules if r.enabled),
        "rule_problems": len(eng.ruleset.problems),
        "engine_clock": format_ts(eng.clock) if eng.clock else None,
        "uptime_s": round(time.time() - svc.started_at, 1),
    })


async def post_events(request: Request) -> Response:
    svc = _svc(request)
    bcfg = _cfg(request).behaviour
    body = await read_body(request, bcfg.max_body_bytes)
    items, _ = parse_event_payload(body, request.headers.get("content-type", "application/json"))
    if len(items) > bcfg.max_batch_events:
        raise ApiError(413, f"{len(items)} events in one request; at most {bcfg.max_batch_events} "
                            "(behaviour.max_batch_events) - split the batch")
    key_id = request.scope.get("state", {}).get("key_id", "")
    now = time.time()
    events = []
    rejected = []
    for i, obj in enumerate(items):
        if isinstance(obj, _Bad):
            rejected.append({"index": i, "error": obj.error})
            continue
        try:
            events.append(validate_event(obj, now=now, max_future_s=bcfg.max_future_skew_s,
                                         max_past_s=bcfg.max_event_age_days * 86400.0))
        except EventError as exc:
            rej: dict[str, Any] = {"index": i, "error": str(exc)}
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                rej["id"] = obj["id"][:256]
            rejected.append(rej)
    if events:
        try:
            svc.check_rate(key_id, len(events), now)
        except RateLimited as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}) from None
    wait = request.query_params.get("wait", "").lower() in ("1", "true", "yes")
    res = await svc.submit(events, key_id=key_id, wait=wait)
    dup = sum(1 for f in res.fresh if not f)
    out: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
    if dup:
        out["duplicates"] = dup
    if wait:
        out["scored"] = True
    return JSONResponse(out, status_code=202)


async def post_decide(request: Request) -> Response:
    svc = _svc(request)
    bcfg = _cfg(request).behaviour
    body = await read_body(request, min(bcfg.max_body_bytes, 1024 * 1024))
    try:
        obj = json.loads(body) if body.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, _json_error(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "expected one event object")
    try:
        ev = validate_event(obj, now=time.time(), max_future_s=bcfg.max_future_skew_s,
                            max_past_s=bcfg.max_event_age_days * 86400.0)
    except EventError as exc:
        raise ApiError(400, str(exc)) from None
    key_id = request.scope.get("state", {}).get("key_id", "")
    try:
        svc.check_rate(key_id, 1, time.time())
    except RateLimited as exc:
        raise ApiError(429, str(exc), {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}) from None
    d = await svc.decide_event(ev, key_id=key_id)
    return JSONResponse(d.to_dict())


def _entity_path(request: Request) -> tuple[str, str]:
    kind = request.path_params["entity_type"]
    eid = request.path_params["entity_id"]
    if kind not in API_ENTITY_TYPES:
        raise ApiError(400, f"unknown entity type {kind!r}; expected one of {', '.join(API_ENTITY_TYPES)}")
    return kind, eid


async def get_decision(request: Request) -> Response:
    kind, eid = _entity_path(request)
    return JSONResponse(_svc(request).engine.decide(kind, eid).to_dict())


async def get_entity(request: Request) -> Response:
    kind, eid = _entity_path(request)
    svc = _svc(request)
    view = svc.engine.entity_view(kind, eid)
    if view is None:
        raise ApiError(404, f"no {kind} {eid!r} has been seen")
    limit = _int_param(request, "events", 25, 1, 200)
    ids = view.pop("recent_event_ids")[:limit]
    events = await svc.call(svc.store.get_events, ids)
    decision = svc.engine.decide(kind, eid).to_dict()
    for k in ("first_seen", "last_seen"):
        view[k] = format_ts(view[k])
    for h in view["score_history"]:
        h["ts"] = format_ts(h["ts"])
    return JSONResponse({"entity": view, "decision": decision, "links": view.pop("links"),
                         "recent_events": events, "score_history": view.pop("score_history")})


async def get_cluster(request: Request) -> Response:
    user = request.path_params["user"]
    svc = _svc(request)
    members = svc.engine.cluster(user)
    return JSONResponse({"user": user, "cluster": members, "size": len(members),
                         "decisions": {u: svc.engine.current_action("user", u) for u in members[:200]}})


async def post_scan(request: Request) -> Response:
    from vallum.detection.model import KINDS
    from vallum.detection.pipeline import ScanInputError, get_inspector

    body = await read_body(request, _cfg(request).detection.max_input_bytes + 1024 * 1024)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, _json_error(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8") from None
    single = isinstance(data, dict)
    items = [data] if single else data
    if not isinstance(items, list):
        raise ApiError(400, "expected a scan input object or a JSON array of them")
    import anyio

    inspector = await anyio.to_thread.run_sync(get_inspector, _cfg(request))

    def run() -> list[dict[str, Any]]:
        out = []
        for i, obj in enumerate(items):
            if not isinstance(obj, dict):
                out.append({"id": None, "error": f"item {i}: expected an object"})
                continue
            rid = obj.get("id")
            kind = obj.get("kind", "text")
            if kind not in KINDS:
                out.append({"id": rid, "error": f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}"})
                continue
            if "content" not in obj:
                out.append({"id": rid, "error": "missing 'content'"})
                continue
            try:
                out.append(inspector.scan(obj["content"], kind, id=rid).to_dict())
            except ScanInputError as exc:
                out.append({"id": rid, "error": str(exc)})
        return out

    results = await anyio.to_thread.run_sync(run)
    if single:
        if "error" in results[0]:
            raise ApiError(400, results[0]["error"])
        return JSONResponse(results[0])
    return JSONResponse(results)


async def list_rules(request: Request) -> Response:
    svc = _svc(request)
    eng = svc.engine
    counts = await svc.call(svc.store.rule_hit_counts)
    rules = []
    for r in eng.ruleset.rules:
        d = r.to_dict()
        d["enabled"] = r.enabled and r.id not in eng.disabled
        d["weight"] = eng.weights.get(r.id, r.weight)
        d["hits"] = counts.get(r.id, 0)
        d["last_error"] = eng.rule_errors.get(r.id)
        rules.append(d)
    features = [{"name": f.name, "entity": f.entity, "agg": f.agg, "on": sorted(f.on), "window_s": f.window,
                 "field": f.field, "source": f.source} for f in eng.ruleset.features]
    return JSONResponse({"rules": rules, "features": features,
                         "problems": [p.to_dict() for p in eng.ruleset.problems]})


async def patch_rule(request: Request) -> Response:
    svc = _svc(request)
    rid = request.path_params["rule_id"]
    if svc.engine.ruleset.rule(rid) is None:
        raise ApiError(404, f"no rule {rid!r}")
    obj = await _json_object(request)
    enabled = obj.get("enabled")
    weight = obj.get("weight")
    if enabled is not None and not isinstance(enabled, bool):
        raise ApiError(400, "enabled must be true or false")
    bad_weight = isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100
    if weight is not None and bad_weight:
        raise ApiError(400, "weight must be a number 0..100")
    await svc.call(svc.set_rule_setting_sync, rid, enabled=enabled, weight=weight)
    rule = svc.engine.ruleset.rule(rid)
    return JSONResponse({"rule": rid, "enabled": rid not in svc.engine.disabled,
                         "weight": svc.engine.weights.get(rid, rule.weight if rule else 0.0)})


async def post_backtest(request: Request) -> Response:
    """Body: {"rule_id": "…"} or {"source": "<rule file YAML>", "rule_id": optional}, optional since/until."""
    from vallum.behaviour.events import event_from_stored, parse_ts
    from vallum.behaviour.testing import backtest

    svc = _svc(request)
    obj = await _json_object(request)
    extra = None
    if "source" in obj:
        try:
            rs = load_rule_source(str(obj["source"]), "<backtest>")
        except RuleFileError as exc:
            raise ApiError(400, str(exc)) from None
        if rs.problems:
            return JSONResponse({"error": "rule problems", "problems": [p.to_dict() for p in rs.problems]},
                                status_code=400)
        if not rs.rules:
            raise ApiError(400, "the source holds no rule")
        rule = rs.rule(obj["rule_id"]) if obj.get("rule_id") else rs.rules[0]
        if rule is None:
            raise ApiError(404, f"no rule {obj['rule_id']!r} in the source")
        extra = rs
    else:
        rule = svc.engine.ruleset.rule(str(obj.get("rule_id", "")))
        if rule is None:
            raise ApiError(404, f"no rule {obj.get('rule_id')!r}")
    try:
        since = int(parse_ts(obj["since"]) * 1000) if obj.get("since") is not None else None
        until = int(parse_ts(obj["until"]) * 1000) if obj.get("until") is not None else None
    except EventError as exc:
        raise ApiError(400, str(exc)) from None
    base = svc.engine.ruleset

    def run() -> dict[str, Any]:
        evs = (event_from_stored(d) for d in svc.store.iter_events(since_ms=since, until_ms=until))
        return backtest(rule, base, evs, extra_features=extra).to_dict()

    import anyio

    return JSONResponse(await anyio.to_thread.run_sync(run))


async def list_overrides(request: Request) -> Response:
    svc = _svc(request)
    return JSONResponse({"overrides": await svc.call(svc.store.list_overrides)})


async def put_override(request: Request) -> Response:
    kind, eid = _entity_path(request)
    obj = await _json_object(request)
    action = obj.get("action")
    if action not in ("allow", "block"):
        raise ApiError(400, "action must be 'allow' (allow-list) or 'block' (block-list)")
    exp = obj.get("expires_in_s")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= 0):
        raise ApiError(400, "expires_in_s must be a positive number of seconds")
    svc = _svc(request)
    d = await svc.call(svc.set_override_sync, kind, eid, action, reason=str(obj.get("reason", ""))[:1000],
                       created_by=str(obj.get("by", request.scope.get("state", {}).get("key_id", "")))[:200],
                       expires_in_s=exp)
    return JSONResponse(d.to_dict())


async def delete_override(request: Request) -> Response:
    kind, eid = _entity_path(request)
    svc = _svc(request)
    found = await svc.call(svc.remove_override_sync, kind, eid)
    if not found:
        raise ApiError(404, f"no override for {kind} {eid!r}")
    return JSONResponse(svc.engine.decide(kind, eid).to_dict())


async def list_reviews(request: Request) -> Response:
    svc = _svc(request)
    status = request.query_params.get("status", "open")
    rows = await svc.call(svc.store.list_reviews, status=None if status == "all" else status,
                          assignee=request.query_params.get("assignee"),
                          limit=_int_param(request, "limit", 200, 1, 1000))
    return JSONResponse({"reviews": rows})


async def get_review(request: Request) -> Response:
    svc = _svc(request)
    row = await svc.call(svc.store.get_review, _review_id(request))
    if row is None:
        raise ApiError(404, "no such review")
    row["decision"] = svc.engine.decide(row["entity_type"], row["entity_id"]).to_dict()
    return JSONResponse(row)


async def update_review(request: Request) -> Response:
    """Body: {"assignee": "…"} and/or {"status": "resolved", "resolution": "fraud|benign|…", "note": "…"}."""
    svc = _svc(request)
    rid = _review_id(request)
    obj = await _json_object(request)
    status = obj.get("status")
    if status is not None and status not in ("open", "resolved"):
        raise ApiError(400, "status must be open or resolved")
    values = {k: obj[k] for k in ("assignee", "status", "resolution") if k in obj}
    for k, v in values.items():
        if v is not None and not isinstance(v, str):
            raise ApiError(400, f"{k} must be a string")
    if not await svc.call(svc.store.update_review, rid, now=time.time(), **values):
        raise ApiError(404, "no such review")
    if obj.get("note"):
        await svc.call(svc.store.add_review_note, rid, str(obj.get("by", "api")), str(obj["note"])[:10000],
                       now=time.time())
    return JSONResponse(await svc.call(svc.store.get_review, rid))


async def add_review_note(request: Request) -> Response:
    svc = _svc(request)
    rid = _review_id(request)
    obj = await _json_object(request)
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "text must be a non-empty string")
    if await svc.call(svc.store.get_review, rid) is None:
        raise ApiError(404, "no such review")
    nid = await svc.call(svc.store.add_review_note, rid, str(obj.get("author", "api"))[:200], text[:10000],
                         now=time.time())
    return JSONResponse({"id": nid}, status_code=201)


async def search_events(request: Request) -> Response:
    from vallum.behaviour.events import parse_ts

    svc = _svc(request)
    q = request.query_params
    try:
        since = int(parse_ts(q["since"]) * 1000) if "since" in q else None
        until = int(parse_ts(q["until"]) * 1000) if "until" in q else None
    except EventError as exc:
        raise ApiError(400, str(exc)) from None
    rows = await svc.call(svc.store.search_events, type=q.get("type"), user=q.get("user"), since_ms=since,
                          until_ms=until, limit=_int_param(request, "limit", 100, 1, 1000))
    return JSONResponse({"events": rows})


async def top_entities(request: Request) -> Response:
    svc = _svc(request)
    rows = svc.engine.top_entities(limit=_int_param(request, "limit", 50, 1, 500),
                                   min_score=float(request.query_params.get("min_score", 0) or 0))
    return JSONResponse({"entities": [d.to_dict() for d in rows]})


async def delete_user(request: Request) -> Response:
    svc = _svc(request)
    user = request.path_params["user"]
    counts = await svc.call(svc.delete_user_sync, user)
    return JSONResponse({"user": user, "deleted": counts})


def _review_id(request: Request) -> int:
    try:
        return int(request.path_params["review_id"])
    except ValueError:
        raise ApiError(400, "review id must be an integer") from None


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    v = request.query_params.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    return max(lo, min(hi, n))


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_body(request, 1024 * 1024)
    try:
        obj = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, _json_error(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "expected a JSON object")
    return obj


def api_routes() -> list[BaseRoute]:
    """The /api/v1 routes (all but health need a key; the guard middleware checks it)."""
    return [
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/api/v1/events", post_events, methods=["POST"]),
        Route("/api/v1/events", search_events, methods=["GET"]),
        Route("/api/v1/decide", post_decide, methods=["POST"]),
        Route("/api/v1/scan", post_scan, methods=["POST"]),
        Route("/api/v1/decisions/{entity_type}/{entity_id:path}", get_decision, methods=["GET"]),
        Route("/api/v1/entities/{entity_type}/{entity_id:path}", get_entity, methods=["GET"]),
        Route("/api/v1/users/{user:path}/cluster", get_cluster, methods=["GET"]),
        Route("/api/v1/users/{user:path}", delete_user, methods=["DELETE"]),
        Route("/api/v1/top", top_entities, methods=["GET"]),
        Route("/api/v1/rules", list_rules, methods=["GET"]),
        Route("/api/v1/rules/backtest", post_backtest, methods=["POST"]),
        Route("/api/v1/rules/{rule_id}", patch_rule, methods=["PATCH", "POST"]),
        Route("/api/v1/overrides", list_overrides, methods=["GET"]),
        Route("/api/v1/overrides/{entity_type}/{entity_id:path}", put_override, methods=["PUT", "POST"]),
        Route("/api/v1/overrides/{entity_type}/{entity_id:path}", delete_override, methods=["DELETE"]),
        Route("/api/v1/reviews", list_reviews, methods=["GET"]),
        Route("/api/v1/reviews/{review_id}", get_review, methods=["GET"]),
        Route("/api/v1/reviews/{review_id}", update_review, methods=["PATCH", "POST"]),
        Route("/api/v1/reviews/{review_id}/notes", add_review_note, methods=["POST"]),
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _err(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        msg = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return _err(exc.status_code, msg, getattr(exc, "headers", None))
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def create_app(
    config: Config | None = None,
    *,
    store: Store | None = None,
    sink: DecisionSink | None = None,
    service: BehaviourService | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan_hooks: Sequence[LifespanHook] = (),
    middleware: Sequence[Middleware] = (),
    api_auth: ApiAuth | None = None,
) -> Starlette:
    """The API app. `extra_routes` (console pages, `/metrics`) are served beside /api/v1.

    `lifespan_hooks` are async context-manager factories entered after the behaviour service has
    started (and left before it stops); each receives the app. `api_auth` lets the console accept
    its session cookie on /api/ routes: return an identity string, or None to fall back to keys.
    """
    config = config or Config()
    svc = service or BehaviourService(config, store=store, sink=sink)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.start()
        async with contextlib.AsyncExitStack() as stack:
            for hook in lifespan_hooks:
                await stack.enter_async_context(hook(app))
            yield
        await svc.stop()

    app = Starlette(
        routes=[*api_routes(), *extra_routes],
        middleware=[Middleware(ApiGuard, api_auth=api_auth), *middleware],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.behaviour = svc
    app.state.config = config
    return app


__all__ = ["ApiError", "create_app", "parse_event_payload", "read_body"]
