"""Read models for the console pages: aggregations over the store, the audit log, the recent
inline decisions and the MCP pins. Synchronous functions (the routes run them in a thread); no
HTTP here, so each is testable with plain values.
"""

from __future__ import annotations

import difflib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vallum.storage import tables as t
from vallum.storage.store import Store

#: preset → (seconds, bucket seconds)
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "24h": (86400, 900),
    "7d": (7 * 86400, 3600),
    "30d": (30 * 86400, 6 * 3600),
}
DEFAULT_RANGE = "24h"
INLINE_CATEGORIES = ("credential", "pii", "injection", "tool_poisoning", "tool_drift", "tool_policy", "ssrf",
                     "url", "entropy", "rate_limit", "protocol", "behaviour")
#: cap on rows read to draw spend/token series (a console view, not an accounting report)
SERIES_ROW_CAP = 200_000


def range_bounds(preset: str, now: float) -> tuple[str, float, float, int]:
    """(preset actually used, start, end, bucket seconds)."""
    if preset not in RANGES:
        preset = DEFAULT_RANGE
    span, bucket = RANGES[preset]
    end = (int(now) // bucket + 1) * bucket
    return preset, end - span, float(end), bucket


def _buckets(start: float, end: float, bucket: int) -> list[float]:
    return [start + i * bucket for i in range(int((end - start) // bucket))]


def events_series(store: Store, start: float, end: float, bucket: int) -> dict[str, Any]:
    """Event counts per bucket, reported as events per minute."""
    bms = bucket * 1000
    b = t.events.c.ts_ms // bms
    q = (sa.select(b.label("b"), sa.func.count()).where(t.events.c.ts_ms >= int(start * 1000),
                                                        t.events.c.ts_ms < int(end * 1000)).group_by("b"))
    with store.engine.connect() as c:
        counts = {int(r[0]): int(r[1]) for r in c.execute(q)}
    xs = _buckets(start, end, bucket)
    per_min = [round(counts.get(int(x * 1000) // bms, 0) * 60.0 / bucket, 3) for x in xs]
    return {"x": xs, "y": per_min, "total": sum(counts.values())}


def spend_series(store: Store, start: float, end: float, bucket: int) -> dict[str, Any]:
    """cost_usd and input/output tokens per bucket, from llm.* events in the range."""
    xs = _buckets(start, end, bucket)
    cost = [0.0] * len(xs)
    tin = [0] * len(xs)
    tout = [0] * len(xs)
    q = (sa.select(t.events.c.ts_ms, t.events.c.body)
         .where(t.events.c.ts_ms >= int(start * 1000), t.events.c.ts_ms < int(end * 1000),
                t.events.c.type.in_(("llm.request", "llm.response", "billing.charge")))
         .limit(SERIES_ROW_CAP))
    with store.engine.connect() as c:
        for ts_ms, body in c.execute(q):
            i = int((ts_ms / 1000.0 - start) // bucket)
            if not 0 <= i < len(xs):
                continue
            attrs = json.loads(body).get("attrs") or {}
            cost[i] += _num(attrs.get("cost_usd"))
            tin[i] += int(_num(attrs.get("gen_ai.usage.input_tokens")))
            tout[i] += int(_num(attrs.get("gen_ai.usage.output_tokens")))
    return {"x": xs, "cost": [round(v, 6) for v in cost], "tokens_in": tin, "tokens_out": tout,
            "total_cost": round(sum(cost), 4), "total_tokens": sum(tin) + sum(tout)}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def decisions_by_action(store: Store) -> dict[str, int]:
    """Current decisions per action (every scored entity)."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.decisions.c.action, sa.func.count()).group_by(t.decisions.c.action)).all()
    out = {"allow": 0, "review": 0, "challenge": 0, "block": 0}
    out.update({r[0]: int(r[1]) for r in rows})
    return out


def decision_changes_by_action(store: Store, start: float, end: float) -> dict[str, int]:
    """Score/decision changes recorded in the range, per resulting action."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.score_history.c.action, sa.func.count())
                         .where(t.score_history.c.ts >= start, t.score_history.c.ts < end)
                         .group_by(t.score_history.c.action)).all()
    return {r[0]: int(r[1]) for r in rows}


def top_rules(store: Store, start: float, end: float, limit: int = 10) -> list[tuple[str, int]]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.rule_hits.c.rule, sa.func.count().label("n"))
                         .where(t.rule_hits.c.ts >= start, t.rule_hits.c.ts < end)
                         .group_by(t.rule_hits.c.rule).order_by(sa.desc("n"), t.rule_hits.c.rule)
                         .limit(limit)).all()
    return [(r[0], int(r[1])) for r in rows]


def entity_hits(store: Store, entity_type: str, entity_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Rule hits on one entity, newest first (rule, weight, evidence, event id)."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.rule_hits).where(t.rule_hits.c.entity_type == entity_type,
                                                      t.rule_hits.c.entity_id == entity_id)
                         .order_by(t.rule_hits.c.ts.desc(), t.rule_hits.c.id.desc()).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def event_hits(store: Store, event_id: str) -> list[dict[str, Any]]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.rule_hits).where(t.rule_hits.c.event_id == event_id)
                         .order_by(t.rule_hits.c.id)).mappings().all()
    return [dict(r) for r in rows]


def get_event(store: Store, event_id: str) -> dict[str, Any] | None:
    found = store.get_events([event_id])
    return found[0] if found else None


ENTITY_FIELDS = ("user", "session", "conversation", "api_key", "agent", "ip")


def search_events(store: Store, *, type: str = "", entity: str = "", rule: str = "", text: str = "",
                  since: float | None = None, until: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first. `entity` is `kind:id` (user, session, conversation, api_key, agent, ip) or a
    bare user id; `rule` keeps events on which that rule fired; `text` is a substring of the event."""
    q = sa.select(t.events.c.body)
    if type:
        q = q.where(t.events.c.type == type)
    if entity:
        kind, sep, eid = entity.partition(":")
        if sep and kind in ENTITY_FIELDS:
            if kind == "user":
                q = q.where(t.events.c.user_id == eid)
            else:
                # the body is compact canonical JSON, so `"ip":"…"` is how the field is spelt
                q = q.where(t.events.c.body.contains(f'"{kind}":{json.dumps(eid)}', autoescape=True))
        else:
            q = q.where(t.events.c.user_id == entity)
    if rule:
        q = q.where(t.events.c.event_id.in_(sa.select(t.rule_hits.c.event_id).where(t.rule_hits.c.rule == rule)))
    if text:
        q = q.where(t.events.c.body.contains(text, autoescape=True))
    if since is not None:
        q = q.where(t.events.c.ts_ms >= int(since * 1000))
    if until is not None:
        q = q.where(t.events.c.ts_ms <= int(until * 1000))
    with store.engine.connect() as c:
        rows = c.execute(q.order_by(t.events.c.ts_ms.desc(), t.events.c.seq.desc()).limit(limit)).all()
    return [json.loads(r.body) for r in rows]


def event_types(store: Store) -> list[str]:
    with store.engine.connect() as c:
        return [r[0] for r in c.execute(sa.select(t.events.c.type).distinct().order_by(t.events.c.type).limit(200))]


def events_for_ids(store: Store, ids: Iterable[str]) -> list[dict[str, Any]]:
    return store.get_events(list(ids))


# ---------------------------------------------------------------------- inline decisions
RecentSource = Callable[[], Iterable[Any]] | Iterable[Any] | None


def _record_dict(rec: Any) -> dict[str, Any] | None:
    if isinstance(rec, dict):
        return rec
    to_dict = getattr(rec, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def _ts_of(d: dict[str, Any]) -> float | None:
    ts = d.get("ts")
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        from vallum.audit.show import entry_time

        return entry_time(d)
    return None


def recent_inline(recent: RecentSource, audit_dir: Path | None, *, limit: int = 2000,
                  audit_scan_cap: int = 50_000) -> list[dict[str, Any]]:
    """Recent inline decisions (proxy, MCP, scan; not behaviour changes), newest first.

    From the in-memory recent-decisions source when it holds any, else from the audit log's
    decision entries (the last `audit_scan_cap` read). Each dict has `ts` as epoch seconds.
    """
    out: list[dict[str, Any]] = []
    items = recent() if callable(recent) else recent
    if items is not None:
        records = getattr(items, "records", items)
        for rec in list(records):
            d = _record_dict(rec)
            if d is not None and d.get("transport") != "behaviour":
                out.append(d)
    if not out and audit_dir is not None and Path(audit_dir).exists():
        out = _audit_decisions(Path(audit_dir), audit_scan_cap)
    rows = []
    for d in out:
        ts = _ts_of(d)
        rows.append({**d, "ts": ts or 0.0})
    rows.sort(key=lambda d: -d["ts"])
    return rows[:limit]


_decisions_cache: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}


def _audit_decisions(audit_dir: Path, cap: int) -> list[dict[str, Any]]:
    """The last `cap` inline decision entries of the audit log (re-read only when its files change:
    the overview polls every few seconds)."""
    from collections import deque

    from vallum.audit.show import iter_entries

    sig = _tree_signature(audit_dir)
    hit = _decisions_cache.get(str(audit_dir))
    if hit is not None and hit[0] == sig:
        return hit[1]
    tail: deque[dict[str, Any]] = deque(maxlen=cap)
    try:
        for _f, e in iter_entries(audit_dir):
            if e.get("kind") == "decision" and e.get("transport") != "behaviour":
                tail.append(e)
    except OSError:
        pass
    out = list(tail)
    _decisions_cache.clear()  # one audit folder per process in practice; keep memory bounded
    _decisions_cache[str(audit_dir)] = (sig, out)
    return out


def inline_blocks_by_category(rows: list[dict[str, Any]], start: float, end: float) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for d in rows:
        if d.get("action") != "block" or not start <= d["ts"] < end:
            continue
        cats = {f.get("category") for f in d.get("findings") or [] if isinstance(f, dict)}
        for cat in cats or {"other"}:
            counts[str(cat)] += 1
    return dict(counts.most_common())


# ---------------------------------------------------------------------- MCP pins
@dataclass(slots=True)
class PendingTool:
    server: str
    name: str
    reason: str
    seen_at: float | None
    diff: str
    new: bool


def mcp_servers(pins_dir: Path | None) -> list[dict[str, Any]]:
    """Every server with pins: its pinned tools and its pending changes (with a unified diff)."""
    if pins_dir is None:
        return []
    from vallum.mcp.pins import FilePinStore

    ps = FilePinStore(pins_dir)
    out: list[dict[str, Any]] = []
    for server in ps.servers():
        try:
            st = ps.state(server)
        except ValueError as exc:
            out.append({"server": server, "error": str(exc), "tools": [], "pending": []})
            continue
        tools = [{"name": n, "fingerprint": p.get("fingerprint", ""), "approved_at": p.get("approved_at"),
                  "description": (p.get("definition") or {}).get("description", "")}
                 for n, p in sorted(st.get("tools", {}).items())]
        pending = []
        for n, p in sorted(st.get("pending", {}).items()):
            old = st.get("tools", {}).get(n)
            pending.append(PendingTool(server, n, str(p.get("reason", "")), p.get("seen_at"),
                                       tool_diff(old.get("definition") if old else None, p.get("definition") or {}),
                                       old is None))
        out.append({"server": server, "tools": tools, "pending": pending})
    return out


def tool_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    a = json.dumps(old, indent=2, sort_keys=True, ensure_ascii=False).splitlines() if old is not None else []
    b = json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "pinned", "pending", lineterm="", n=3))


def approve_tool(pins_dir: Path, server: str, name: str, now: float | None = None) -> bool:
    """Accept a pending definition (what `vallum mcp approve --server S NAME` does)."""
    from vallum.mcp.pins import FilePinStore

    return bool(FilePinStore(pins_dir).approve(server, [name], time.time() if now is None else now))


def reject_tool(pins_dir: Path, server: str, name: str) -> bool:
    """Drop a pending definition; the pin stays and the proxy keeps withholding the changed tool."""
    from vallum.mcp.pins import FilePinStore

    ps = FilePinStore(pins_dir)
    ps.reload(server)
    st = ps.state(server)
    if name not in st.get("pending", {}):
        return False
    del st["pending"][name]
    ps.save(server)
    return True


# ---------------------------------------------------------------------- audit
_verify_cache: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}


def _tree_signature(audit_dir: Path) -> tuple[Any, ...]:
    sig = []
    for p in sorted(audit_dir.rglob("*")):
        try:
            s = p.stat()
        except OSError:
            continue
        sig.append((str(p), s.st_size, s.st_mtime_ns))
    return tuple(sig)


def audit_status(audit_dir: Path | None) -> list[dict[str, Any]]:
    """`verify_tree` of the audit folder, one report per log directory (cached until files change)."""
    if audit_dir is None or not Path(audit_dir).exists():
        return []
    from vallum.audit.verify import verify_tree

    d = Path(audit_dir)
    sig = _tree_signature(d)
    hit = _verify_cache.get(str(d))
    if hit is not None and hit[0] == sig:
        return hit[1]
    out = []
    for path, rep in verify_tree(d):
        rd = rep.to_dict()
        rd["path"] = str(path)
        rd["last_checkpoint"] = _last_checkpoint(path)
        out.append(rd)
    _verify_cache[str(d)] = (sig, out)
    return out


def _last_checkpoint(path: Path) -> dict[str, Any] | None:
    from vallum.audit.show import iter_entries

    last = None
    try:
        for _f, e in iter_entries(path):
            if e.get("kind") in ("checkpoint", "rotate"):
                last = e
    except OSError:
        return None
    if last is None:
        return None
    return {"seq": last.get("seq"), "ts": last.get("ts"), "reason": last.get("reason"), "kind": last.get("kind")}


def audit_search(audit_dir: Path | None, *, rule: str = "", principal: str = "", action: str = "", kind: str = "",
                 since: float | None = None, text: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Matching entries, newest first."""
    if audit_dir is None or not Path(audit_dir).exists():
        return []
    from collections import deque

    from vallum.audit.show import EntryFilter, iter_entries

    flt = EntryFilter(since=since, rule=rule or None, principal=principal or None, action=action or None,
                      kind=kind or None)
    keep: deque[dict[str, Any]] = deque(maxlen=limit)
    for f, e in iter_entries(audit_dir):
        if flt.matches(e) and (not text or text in json.dumps(e, ensure_ascii=False)):
            keep.append({**e, "_file": f})
    return list(reversed(keep))
