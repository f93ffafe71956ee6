"""`Store`: every read and write of the behaviour layer, over SQLAlchemy Core (SQLite or PostgreSQL).

Synchronous on purpose: the API runs it on one worker thread, which also serialises writes (SQLite
has one writer) and keeps ingestion ordered. The same code and the same test suite serve both.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from vallum.storage import tables as t

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
KEY_PREFIX = "vk_"
#: the compact JSON the store keeps (one encoder, not one per row: same output as
#: json.dumps(obj, separators=(",", ":")))
_compact = json.JSONEncoder(separators=(",", ":")).encode


class StoreError(RuntimeError):
    """The store cannot be opened or used (bad URL, unreachable server, failed migration)."""


def normalize_url(url: str) -> str:
    """Map user-facing URLs to SQLAlchemy driver URLs (`postgresql://` → psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def hash_key(key: str) -> str:
    """API keys are 256-bit random tokens, so one SHA-256 is enough (no slow hash needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at,
                "active": self.revoked_at is None}


class Store:
    """The behaviour store. Open it with `open_store(url)` (which migrates)."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = normalize_url(url)
        self.dialect = "postgresql" if self.url.startswith("postgresql") else "sqlite"
        try:
            self.engine: Engine = self._make_engine(pool_size)
        except Exception as exc:
            raise StoreError(f"cannot open store {_redact_url(url)}: {exc}") from None
        # statements of the ingestion hot path, built once (SQLAlchemy then reuses their compilation)
        self._ins_event = self._insert(t.events).on_conflict_do_nothing(index_elements=["event_id"])
        self._ins_event_one = self._insert(t.events).on_conflict_do_nothing(
            index_elements=["event_id"]).returning(t.events.c.event_id)
        self._sel_ids = sa.select(t.events.c.event_id).where(
            t.events.c.event_id.in_(sa.bindparam("ids", expanding=True)))

    # ------------------------------------------------------------------ setup
    def _make_engine(self, pool_size: int) -> Engine:
        if self.dialect == "sqlite":
            path = self.url.split("sqlite:///", 1)[-1] if self.url.startswith("sqlite:///") else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            eng = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})

            @sa.event.listens_for(eng, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return eng
        return sa.create_engine(self.url, pool_size=pool_size, pool_pre_ping=True)

    def migrate(self) -> None:
        """Apply the packaged alembic migrations up to head."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        # Several processes may open a fresh store at once (`vallum serve` and `vallum keys create`).
        # PostgreSQL serialises them with an advisory lock; for SQLite the loser of the race fails
        # on an object the winner just created, and on retry finds the schema at head.
        attempts = 5
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    if self.dialect == "postgresql":
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7461616756)")
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                return
            except Exception as exc:
                if attempt == attempts - 1:
                    raise StoreError(f"cannot migrate store {_redact_url(self.url)}: {exc}") from None
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # ------------------------------------------------------------------ API keys
    def create_key(self, name: str = "", *, now: float | None = None) -> tuple[str, str]:
        """Create an API key. Returns (id, key); only the key's hash is stored."""
        kid = secrets.token_hex(6)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(t.api_keys.insert().values(id=kid, name=name, key_hash=hash_key(key), prefix=key[:10],
                                                 created_at=now if now is not None else time.time()))
        return kid, key

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.api_keys).order_by(t.api_keys.c.created_at)).mappings().all()
        return [ApiKey(r["id"], r["name"], r["prefix"], r["created_at"], r["revoked_at"], r["last_used_at"])
                for r in rows]

    def revoke_key(self, key_id: str, *, now: float | None = None) -> bool:
        """Revoke by id (or by the key itself). True when a live key was revoked."""
        cond = t.api_keys.c.id == key_id
        if key_id.startswith(KEY_PREFIX):
            cond = t.api_keys.c.key_hash == hash_key(key_id)
        with self.engine.begin() as c:
            res = c.execute(t.api_keys.update().where(cond, t.api_keys.c.revoked_at.is_(None))
                            .values(revoked_at=now if now is not None else time.time()))
        return res.rowcount > 0

    def verify_key(self, key: str) -> str | None:
        """The id of the live key `key`, or None (unknown or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.api_keys.c.id, t.api_keys.c.revoked_at)
                            .where(t.api_keys.c.key_hash == hash_key(key))).first()
        if row is None or row.revoked_at is not None:
            return None
        return str(row.id)

    # ------------------------------------------------------------------ events
    def insert_events(self, events: Sequence[Any], *, key_id: str | None, received_at: float) -> list[bool]:
        """Insert validated events durably (committed on return).

        Returns, per event, whether it was new (False: an event with that id is already stored or
        appeared earlier in the batch — idempotency on `id`).
        """
        if not events:
            return []
        rows = [{"event_id": e.id, "ts_ms": e.ts_ms, "type": e.type, "user_id": e.user,
                 "body": _compact(e.to_dict()), "received_at": received_at,
                 "key_id": key_id} for e in events]
        if len(rows) == 1:
            # one event (POST /decide): RETURNING yields a row only when it was inserted
            with self.engine.begin() as c:
                return [c.execute(self._ins_event_one, rows[0]).first() is not None]
        existing: set[str] = set()
        with self.engine.begin() as c:
            for chunk in _chunks(list({r["event_id"] for r in rows}), 500):
                existing.update(r[0] for r in c.execute(self._sel_ids, {"ids": chunk}))
            fresh: list[bool] = []
            new_rows: list[dict[str, Any]] = []
            seen = existing
            for r in rows:
                if r["event_id"] in seen:
                    fresh.append(False)
                    continue
                seen.add(r["event_id"])
                fresh.append(True)
                new_rows.append(r)
            if new_rows:
                # ON CONFLICT DO NOTHING guards against another replica inserting the same id meanwhile
                c.execute(self._ins_event, new_rows)
        return fresh

    def iter_events(self, *, since_ms: int | None = None, until_ms: int | None = None,
                    batch: int = 5000) -> Iterator[dict[str, Any]]:
        """Every stored event in event-time order (ties by arrival), as canonical dicts."""
        last: tuple[int, int] = (-1, -1) if since_ms is None else (since_ms, -1)
        while True:
            q = sa.select(t.events.c.seq, t.events.c.ts_ms, t.events.c.body).where(
                sa.or_(t.events.c.ts_ms > last[0], sa.and_(t.events.c.ts_ms == last[0], t.events.c.seq > last[1])))
            if until_ms is not None:
                q = q.where(t.events.c.ts_ms <= until_ms)
            q = q.order_by(t.events.c.ts_ms, t.events.c.seq).limit(batch)
            with self.engine.connect() as c:
                rows = c.execute(q).all()
            if not rows:
                return
            for r in rows:
                yield json.loads(r.body)
            last = (rows[-1].ts_ms, rows[-1].seq)

    def get_events(self, event_ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(event_ids)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(ids, 500):
                for r in c.execute(sa.select(t.events.c.event_id, t.events.c.body)
                                   .where(t.events.c.event_id.in_(chunk))):
                    out[r.event_id] = json.loads(r.body)
        return [out[i] for i in ids if i in out]

    def user_events(self, user: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.events.c.body).where(t.events.c.user_id == user)
                             .order_by(t.events.c.ts_ms.desc()).limit(limit)).all()
        return [json.loads(r.body) for r in rows]

    def count_events(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one())

    def search_events(self, *, type: str | None = None, user: str | None = None, since_ms: int | None = None,
                      until_ms: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; the console's event list."""
        q = sa.select(t.events.c.body)
        if type:
            q = q.where(t.events.c.type == type)
        if user:
            q = q.where(t.events.c.user_id == user)
        if since_ms is not None:
            q = q.where(t.events.c.ts_ms >= since_ms)
        if until_ms is not None:
            q = q.where(t.events.c.ts_ms <= until_ms)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(t.events.c.ts_ms.desc()).limit(limit)).all()
        return [json.loads(r.body) for r in rows]

    def purge_events_before(self, ts_ms: int) -> int:
        """Retention: delete events (and derived rows) older than `ts_ms`. Returns events deleted."""
        with self.engine.begin() as c:
            n = c.execute(t.events.delete().where(t.events.c.ts_ms < ts_ms)).rowcount
            c.execute(t.score_history.delete().where(t.score_history.c.ts < ts_ms / 1000.0))
            c.execute(t.rule_hits.delete().where(t.rule_hits.c.ts < ts_ms / 1000.0))
        return int(n or 0)

    def delete_user(self, user: str) -> dict[str, int]:
        """GDPR erasure: the user's events and every row about the user as an entity."""
        counts: dict[str, int] = {}
        with self.engine.begin() as c:
            counts["events"] = int(c.execute(t.events.delete().where(t.events.c.user_id == user)).rowcount or 0)
            for name, table in (("decisions", t.decisions), ("score_history", t.score_history),
                                ("rule_hits", t.rule_hits), ("overrides", t.overrides)):
                counts[name] = int(c.execute(table.delete().where(
                    table.c.entity_type == "user", table.c.entity_id == user)).rowcount or 0)
            review_ids = [r[0] for r in c.execute(sa.select(t.reviews.c.id).where(
                t.reviews.c.entity_type == "user", t.reviews.c.entity_id == user))]
            if review_ids:
                c.execute(t.review_notes.delete().where(t.review_notes.c.review_id.in_(review_ids)))
                c.execute(t.reviews.delete().where(t.reviews.c.id.in_(review_ids)))
            counts["reviews"] = len(review_ids)
        return counts

    def bare_insert(self, rows: list[dict[str, Any]]) -> None:
        """A plain executemany into `events` (the benchmark's ceiling)."""
        with self.engine.begin() as c:
            c.execute(t.events.insert(), rows)

    # ------------------------------------------------------------------ decisions
    def save_decisions(self, decisions: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]],
                       hits: Sequence[dict[str, Any]]) -> None:
        """Upsert current decisions, append score history and rule hits, in one transaction."""
        if not (decisions or history or hits):
            return
        with self.engine.begin() as c:
            if decisions:
                rows = [{**d, "reasons": _compact(d["reasons"])} for d in decisions]
                stmt = self._insert(t.decisions)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["entity_type", "entity_id"],
                    set_={k: getattr(stmt.excluded, k) for k in ("action", "score", "reasons", "as_of")})
                c.execute(stmt, rows)
            if history:
                c.execute(t.score_history.insert(), list(history))
            if hits:
                c.execute(t.rule_hits.insert(), list(hits))

    def get_decision(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.decisions).where(t.decisions.c.entity_type == entity_type,
                                                       t.decisions.c.entity_id == entity_id)).mappings().first()
        if r is None:
            return None
        return {**r, "reasons": json.loads(r["reasons"])}

    def list_decisions(self, *, min_score: float = 0.0, action: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(t.decisions).where(t.decisions.c.score >= min_score)
        if action:
            q = q.where(t.decisions.c.action == action)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(t.decisions.c.score.desc()).limit(limit)).mappings().all()
        return [{**r, "reasons": json.loads(r["reasons"])} for r in rows]

    def score_history_for(self, entity_type: str, entity_id: str, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.score_history.c.ts, t.score_history.c.score, t.score_history.c.action)
                             .where(t.score_history.c.entity_type == entity_type,
                                    t.score_history.c.entity_id == entity_id)
                             .order_by(t.score_history.c.ts.desc(), t.score_history.c.id.desc())
                             .limit(limit)).mappings().all()
        return [dict(r) for r in reversed(rows)]

    def rule_hit_counts(self, *, since: float | None = None) -> dict[str, int]:
        q = sa.select(t.rule_hits.c.rule, sa.func.count()).group_by(t.rule_hits.c.rule)
        if since is not None:
            q = q.where(t.rule_hits.c.ts >= since)
        with self.engine.connect() as c:
            return {r[0]: int(r[1]) for r in c.execute(q)}

    def clear_derived(self) -> None:
        """Drop decisions, score history and rule hits (they are rebuilt by a replay)."""
        with self.engine.begin() as c:
            for table in (t.decisions, t.score_history, t.rule_hits):
                c.execute(table.delete())

    # ------------------------------------------------------------------ overrides
    def set_override(self, entity_type: str, entity_id: str, action: str, *, reason: str = "",
                     created_by: str = "", now: float, expires_at: float | None = None) -> None:
        row = {"entity_type": entity_type, "entity_id": entity_id, "action": action, "reason": reason,
               "created_by": created_by, "created_at": now, "expires_at": expires_at}
        stmt = self._insert(t.overrides)
        stmt = stmt.on_conflict_do_update(index_elements=["entity_type", "entity_id"],
                                          set_={k: getattr(stmt.excluded, k) for k in row if k not in
                                                ("entity_type", "entity_id")})
        with self.engine.begin() as c:
            c.execute(stmt, [row])

    def delete_override(self, entity_type: str, entity_id: str) -> bool:
        with self.engine.begin() as c:
            n = c.execute(t.overrides.delete().where(t.overrides.c.entity_type == entity_type,
                                                     t.overrides.c.entity_id == entity_id)).rowcount
        return bool(n)

    def list_overrides(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(sa.select(t.overrides)).mappings()]

    # ------------------------------------------------------------------ review queue
    def open_review(self, entity_type: str, entity_id: str, *, action: str, score: float, now: float) -> int:
        """Open a review item unless one is already open for the entity; returns its id."""
        with self.engine.begin() as c:
            r = c.execute(sa.select(t.reviews.c.id).where(
                t.reviews.c.entity_type == entity_type, t.reviews.c.entity_id == entity_id,
                t.reviews.c.status == "open")).first()
            if r is not None:
                c.execute(t.reviews.update().where(t.reviews.c.id == r.id)
                          .values(action=action, score=score, updated_at=now))
                return int(r.id)
            res = c.execute(t.reviews.insert().values(entity_type=entity_type, entity_id=entity_id, status="open",
                                                      action=action, score=score, created_at=now, updated_at=now))
            pk = res.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    def list_reviews(self, *, status: str | None = "open", assignee: str | None = None,
                     limit: int = 200) -> list[dict[str, Any]]:
        q = sa.select(t.reviews)
        if status:
            q = q.where(t.reviews.c.status == status)
        if assignee:
            q = q.where(t.reviews.c.assignee == assignee)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q.order_by(t.reviews.c.score.desc(), t.reviews.c.id)
                                               .limit(limit)).mappings()]

    def get_review(self, review_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.reviews).where(t.reviews.c.id == review_id)).mappings().first()
            if r is None:
                return None
            notes = [dict(n) for n in c.execute(sa.select(t.review_notes).where(
                t.review_notes.c.review_id == review_id).order_by(t.review_notes.c.id)).mappings()]
        return {**r, "notes": notes}

    def update_review(self, review_id: int, *, now: float, **values: Any) -> bool:
        allowed = {k: v for k, v in values.items() if k in ("status", "assignee", "resolution")}
        with self.engine.begin() as c:
            n = c.execute(t.reviews.update().where(t.reviews.c.id == review_id)
                          .values(updated_at=now, **allowed)).rowcount
        return bool(n)

    def add_review_note(self, review_id: int, author: str, text: str, *, now: float) -> int:
        with self.engine.begin() as c:
            res = c.execute(t.review_notes.insert().values(review_id=review_id, author=author, text=text,
                                                           created_at=now))
            pk = res.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    # ------------------------------------------------------------------ rule settings
    def rule_settings(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            return {r["rule_id"]: dict(r) for r in c.execute(sa.select(t.rule_settings)).mappings()}

    def set_rule_setting(self, rule_id: str, *, enabled: bool, weight: float | None, now: float) -> None:
        stmt = self._insert(t.rule_settings)
        stmt = stmt.on_conflict_do_update(index_elements=["rule_id"],
                                          set_={"enabled": stmt.excluded.enabled, "weight": stmt.excluded.weight,
                                                "updated_at": stmt.excluded.updated_at})
        with self.engine.begin() as c:
            c.execute(stmt, [{"rule_id": rule_id, "enabled": enabled, "weight": weight, "updated_at": now}])

    def connection(self) -> Connection:
        return self.engine.connect()


def open_store(url: str, *, migrate: bool = True, pool_size: int = 5) -> Store:
    """Open (and by default migrate) the store at `url`."""
    store = Store(url, pool_size=pool_size)
    if migrate:
        store.migrate()
    return store


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _redact_url(url: str) -> str:
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
