"""The behaviour service without HTTP: hot reload of rule files, retention, replay on start."""

from __future__ import annotations

import os
import time

from vallum.api.service import BehaviourService
from vallum.behaviour.events import validate_event
from vallum.config import Config

T0 = 1_790_000_000_000

RULE = """
rules:
  - id: my.views
    description: many page views
    scope: user
    on: page.view
    when: user.events >= {n}.0
    weight: 50
"""


def views(n: int, start: int = 0, user: str = "u"):
    return [validate_event({"type": "page.view", "ts": T0 + (start + i) * 1000, "user": user,
                            "id": f"{user}-{start + i}"}) for i in range(n)]


def service(tmp_path, **behaviour) -> BehaviourService:
    cfg = Config(data_dir=str(tmp_path / "d"))
    for k, v in behaviour.items():
        setattr(cfg.behaviour, k, v)
    svc = BehaviourService(cfg)
    svc.start_sync()
    return svc


def ingest(svc: BehaviourService, events) -> None:
    fresh = svc.store.insert_events(events, key_id=None, received_at=time.time())
    svc.pending_events += sum(fresh)
    svc._score([e for e, f in zip(events, fresh, strict=True) if f])


def test_rule_files_reload_when_they_change(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(RULE.format(n=100))
    svc = service(tmp_path, rule_files=[str(f)])
    ingest(svc, views(5))
    assert svc.engine.decide("user", "u").score == 0.0
    f.write_text(RULE.format(n=3))
    os.utime(f, (time.time() + 5, time.time() + 5))
    svc._last_reload_check = 0.0
    ingest(svc, views(1, start=10))
    assert svc.engine.decide("user", "u").reasons[0]["rule"] == "my.views"
    # a broken edit is reported and leaves the other rules running
    f.write_text(RULE.format(n=3).replace("user.events >= 3.0", "user.events >="))
    os.utime(f, (time.time() + 10, time.time() + 10))
    svc._last_reload_check = 0.0
    ingest(svc, views(1, start=20))
    assert svc.engine.ruleset.rule("my.views") is None
    assert any(p.source == str(f) for p in svc.engine.ruleset.problems)
    assert svc.engine.ruleset.rule("auth.stuffing_ip") is not None
    assert svc.pending_events == 0


def test_replay_on_start_rebuilds_the_same_state(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(RULE.format(n=3))
    svc = service(tmp_path, rule_files=[str(f)])
    ingest(svc, views(6))
    before = svc.engine.decide("user", "u").to_dict()
    svc.store.close()
    again = service(tmp_path, rule_files=[str(f)])
    assert again.engine.decide("user", "u").to_dict() == before
    assert again.store.get_decision("user", "u")["score"] == before["score"]


def test_retention_deletes_events_older_than_the_period(tmp_path):
    svc = service(tmp_path, retention_days=1)
    ingest(svc, views(2, user="old"))
    ingest(svc, views(1, start=3 * 86400, user="new"))  # three days later
    svc._last_retention = -1e9
    svc._maybe_retention()
    assert [e["user"] for e in svc.store.iter_events()] == ["new"]


def test_listeners_hear_action_changes(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(RULE.format(n=3).replace("weight: 50", "weight: 90"))
    svc = service(tmp_path, rule_files=[str(f)])
    heard = []
    svc.listeners.append(lambda d, prev: heard.append((d.entity_type, d.entity_id, prev, d.action)))
    ingest(svc, views(2))
    assert heard == []
    ingest(svc, views(2, start=5))
    assert heard == [("user", "u", "allow", "block")]
