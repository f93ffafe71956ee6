"""The store on SQLite and PostgreSQL: one suite for both (PostgreSQL skips when unreachable)."""

from __future__ import annotations

import pytest

from vallum.behaviour.events import validate_event
from vallum.storage.store import hash_key, normalize_url


def ev(i: int, user: str = "u1", eid: str | None = None, ts_ms: int = 1_790_000_000_000):
    return validate_event({"type": "llm.request", "ts": ts_ms + i, "user": user, "id": eid or f"e{i}"})


def test_migrated_schema_matches_the_table_definitions(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vallum.storage.tables import metadata

    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op(store):
    store.migrate()
    store.migrate()
    assert store.count_events() == 0


def test_api_keys_are_stored_hashed_and_revocable(store):
    kid, key = store.create_key("ci")
    assert key.startswith("vk_") and len(key) > 40
    assert store.verify_key(key) == kid
    assert store.verify_key(key + "x") is None
    assert store.verify_key("not-a-key") is None
    with store.engine.connect() as c:
        dump = " ".join(str(v) for row in c.exec_driver_sql("SELECT * FROM api_keys") for v in row)
    assert key not in dump and hash_key(key) in dump
    [listed] = store.list_keys()
    assert listed.id == kid and listed.name == "ci" and listed.revoked_at is None
    assert store.revoke_key(kid) is True
    assert store.verify_key(key) is None
    assert store.revoke_key(kid) is False  # already revoked
    assert store.list_keys()[0].revoked_at is not None


def test_revoke_by_the_key_itself(store):
    _kid, key = store.create_key()
    assert store.revoke_key(key)
    assert store.verify_key(key) is None


def test_insert_is_idempotent_on_event_id(store):
    first = store.insert_events([ev(0), ev(1), ev(2, eid="e1")], key_id="k", received_at=1.0)
    assert first == [True, True, False]  # the third repeats an id earlier in the batch
    again = store.insert_events([ev(1), ev(3)], key_id="k", received_at=2.0)
    assert again == [False, True]
    assert store.count_events() == 3


def test_iter_events_in_event_time_order_across_pages(store):
    events = [ev(i, ts_ms=1_790_000_000_000 + (i * 7919) % 1000) for i in range(50)]
    store.insert_events(events, key_id=None, received_at=1.0)
    got = list(store.iter_events(batch=7))
    assert len(got) == 50
    ts = [g["ts"] for g in got]
    assert ts == sorted(ts)
    assert {g["id"] for g in got} == {e.id for e in events}


def test_iter_events_time_bounds(store):
    store.insert_events([ev(i, ts_ms=1_790_000_000_000 + i * 1000) for i in range(10)], key_id=None,
                        received_at=1.0)
    got = list(store.iter_events(since_ms=1_790_000_003_003, until_ms=1_790_000_005_005))
    assert [g["id"] for g in got] == ["e3", "e4", "e5"]


def test_decisions_upsert_history_and_hits(store):
    d = {"entity_type": "user", "entity_id": "u1", "action": "review", "score": 45.0,
         "reasons": [{"rule": "r", "weight": 45.0, "detail": "x"}], "as_of": 10.0}
    store.save_decisions([d], [{"entity_type": "user", "entity_id": "u1", "ts": 10.0, "score": 45.0,
                                "action": "review"}],
                         [{"rule": "r", "entity_type": "user", "entity_id": "u1", "ts": 10.0, "weight": 45.0,
                           "detail": "x", "event_id": "e1"}])
    store.save_decisions([{**d, "action": "block", "score": 90.0, "as_of": 11.0}], [], [])
    got = store.get_decision("user", "u1")
    assert got["action"] == "block" and got["score"] == 90.0 and got["reasons"][0]["rule"] == "r"
    assert store.get_decision("user", "nobody") is None
    assert store.score_history_for("user", "u1") == [{"ts": 10.0, "score": 45.0, "action": "review"}]
    assert store.rule_hit_counts() == {"r": 1}
    assert [r["entity_id"] for r in store.list_decisions(min_score=50)] == ["u1"]


def test_overrides_and_reviews(store):
    store.set_override("user", "u1", "block", reason="fraud", created_by="ana", now=1.0)
    store.set_override("user", "u1", "allow", reason="cleared", created_by="ana", now=2.0)
    [o] = store.list_overrides()
    assert o["action"] == "allow" and o["reason"] == "cleared"
    assert store.delete_override("user", "u1") and not store.delete_override("user", "u1")
    rid = store.open_review("user", "u1", action="review", score=50.0, now=1.0)
    assert store.open_review("user", "u1", action="block", score=90.0, now=2.0) == rid  # one open per entity
    assert store.update_review(rid, now=3.0, assignee="ana")
    store.add_review_note(rid, "ana", "looks like a farm", now=4.0)
    assert store.update_review(rid, now=5.0, status="resolved", resolution="fraud")
    r = store.get_review(rid)
    assert r["status"] == "resolved" and r["assignee"] == "ana" and r["action"] == "block"
    assert [n["text"] for n in r["notes"]] == ["looks like a farm"]
    assert store.list_reviews(status="open") == []
    assert store.get_review(rid + 100) is None


def test_delete_user_removes_their_rows_only(store):
    store.insert_events([ev(0, user="gone"), ev(1, user="stays")], key_id=None, received_at=1.0)
    store.save_decisions([{"entity_type": "user", "entity_id": "gone", "action": "block", "score": 90.0,
                           "reasons": [], "as_of": 1.0}], [], [])
    rid = store.open_review("user", "gone", action="block", score=90.0, now=1.0)
    store.add_review_note(rid, "a", "n", now=1.0)
    counts = store.delete_user("gone")
    assert counts["events"] == 1 and counts["decisions"] == 1 and counts["reviews"] == 1
    assert [e["user"] for e in store.iter_events()] == ["stays"]
    assert store.get_decision("user", "gone") is None


def test_retention_purges_old_events(store):
    store.insert_events([ev(i, ts_ms=1_790_000_000_000 + i * 86_400_000) for i in range(5)], key_id=None,
                        received_at=1.0)
    assert store.purge_events_before(1_790_000_000_000 + 2 * 86_400_000) == 2
    assert store.count_events() == 3


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_normalize_url(given, expected):
    assert normalize_url(given) == expected


def test_bad_store_url_is_a_clear_error(tmp_path):
    from vallum.storage.store import StoreError, open_store

    with pytest.raises(StoreError, match="cannot"):
        open_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")


def test_single_event_insert_reports_freshness(store):
    # the one-event path (POST /decide) uses INSERT … RETURNING; both backends must agree
    assert store.insert_events([ev(0, eid="solo")], key_id=None, received_at=1.0) == [True]
    assert store.insert_events([ev(1, eid="solo")], key_id=None, received_at=1.0) == [False]
    assert store.count_events() == 1
