"""The console on PostgreSQL: users and sessions, the overview's SQL, event search."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_harness import ConsoleEnv, login, make_env, seed, stuffing_events
from starlette.testclient import TestClient

PG = "host=127.0.0.1 port=5432 user=postgres dbname=test"

pytestmark = pytest.mark.postgres


def _reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
        import psycopg

        with psycopg.connect(PG, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_env(tmp_data_dir: Path) -> Iterator[ConsoleEnv]:
    if not _reachable():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test', user 'postgres')")
    import psycopg

    schema = "vc_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    env = make_env(tmp_data_dir, f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
    try:
        yield env
    finally:
        env.store.engine.dispose()
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_console_on_postgres(pg_env: ConsoleEnv) -> None:
    env = pg_env
    with TestClient(env.app) as client:
        seed(client, env, stuffing_events(time.time()))
        token = login(client, "ana", env.password("ana"))
        html = client.get("/?range=1h").text
        assert "(46 in range)" in html and "auth.stuffing_ip" in html and "($1.50)" in html
        html = client.get("/events", params={"entity": "ip:203.0.113.7"}).text
        assert html.count("auth.login_failed</code>") == 40
        r = client.post("/rules/auth.stuffing_ip/backtest", data={"range": "all", "csrf_token": token})
        assert "would fire on 1 entity" in r.text
        assert client.get("/reviews").status_code == 200
        client.cookies.clear()
        assert client.get("/", follow_redirects=False).status_code == 303
