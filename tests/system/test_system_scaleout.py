"""Two replicas sharing one PostgreSQL store and one Redis: a rate limit and a block hold across both.

Needs the local PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379); skipped
with the reason when either is unreachable. Each run uses a fresh schema and a unique key prefix,
both removed afterwards.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from system_support import StackThread, make_config, proxy_client, upstream, wait_until
from test_system_loop import near_miss_url

from vallum.decisions import Principal

pytestmark = pytest.mark.postgres
PG = "host=127.0.0.1 port=5432 user=postgres dbname=test"
REDIS = "redis://127.0.0.1:6379/0"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not _reachable(5432):
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    import psycopg

    schema = "vsys_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG, autocommit=True, connect_timeout=3) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    if not _reachable(6379):
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    import redis

    prefix = f"vallum-test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS)
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_two_replicas_share_rate_limit_block_and_session_score(tmp_path: Path, pg_url: str,
                                                                redis_prefix: str) -> None:
    with upstream() as up:
        common = {"store": {"url": pg_url}, "redis_url": REDIS, "redis_prefix": redis_prefix,
                  "behaviour": {"score_half_life_s": 60}}
        cfg_a = make_config(tmp_path / "a", up, egress={"rate_limit_per_minute": 5}, **common)
        cfg_b = make_config(tmp_path / "b", up, egress={"rate_limit_per_minute": 5}, **common)
        with StackThread(cfg_a) as a, StackThread(cfg_b) as b:
            assert a.services.behaviour.store.dialect == "postgresql"
            # 1. the rate limit (5/min per destination) is counted across both replicas
            codes = []
            with proxy_client(a.proxy) as ca, proxy_client(b.proxy) as cb:
                for i in range(6):
                    c = ca if i % 2 == 0 else cb
                    codes.append(c.get(f"http://127.0.0.1:{up}/rl", headers={"x-vallum-principal": "user=u1"}
                                       ).status_code)
            assert codes == [200, 200, 200, 200, 200, 429]

            # 2. a session's threat score follows it from one replica to the other
            with proxy_client(a.proxy, headers={"x-vallum-principal": "user=eve; session=roam"}) as ca:
                for i in range(3):
                    ca.get(near_miss_url(up, 500 + i).replace("/api", "/other"))
            eve = Principal(user="eve", session="roam")
            assert b.services.threat.action(eve)[0] in ("review", "challenge", "block")
            assert b.services.threat.action(eve)[1] == pytest.approx(a.services.threat.action(eve)[1], abs=1)

        # fresh replicas with the rate limit off for the block scenario
        cfg_a = make_config(tmp_path / "a2", up, egress={"rate_limit_per_minute": 0}, **common)
        cfg_b = make_config(tmp_path / "b2", up, egress={"rate_limit_per_minute": 0}, **common)
        with StackThread(cfg_a) as a, StackThread(cfg_b) as b:
            # 3. near misses at replica A block the principal; replica B denies it too (pub/sub)
            with proxy_client(a.proxy) as ca:
                for i in range(20):
                    r = ca.get(near_miss_url(up, i), headers={"x-vallum-principal": f"user=mallory; session=s{i}"})
                    a.flush()
                    if r.status_code == 403 and r.json()["rule"] == "behaviour.principal_blocked":
                        break
            assert a.services.behaviour.engine.current_action("user", "mallory") == "block"
            with proxy_client(b.proxy, headers={"x-vallum-principal": "user=mallory; session=elsewhere"}) as cb:
                r = wait_until(lambda: (x := cb.get(f"http://127.0.0.1:{up}/clean")).status_code == 403 and x)
                assert r.json()["rule"] == "behaviour.principal_blocked"
            with proxy_client(b.proxy, headers={"x-vallum-principal": "user=bob"}) as cb:
                assert cb.get(f"http://127.0.0.1:{up}/clean").status_code == 200
            # both replicas wrote to the one PostgreSQL store (bob only ever went through B)
            b.flush()
            users = {e.get("user") or e.get("user_id") for e in a.services.behaviour.store.iter_events()}
            assert {"mallory", "bob"} <= users
