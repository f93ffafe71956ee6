"""Fixtures for the behaviour layer: a store on SQLite and (when reachable) on PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_BASE = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            pass
    except OSError:
        return False
    try:
        import psycopg

        with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", connect_timeout=2):
            return True
    except Exception:
        return False


_PG = None


def _pg_ok() -> bool:
    global _PG
    if _PG is None:
        _PG = pg_reachable()
    return _PG


def pg_schema_url() -> Iterator[str]:
    """A fresh schema in the local `test` database; dropped afterwards."""
    import psycopg

    schema = "vt_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vallum.db'}"
        return
    if not _pg_ok():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test', user 'postgres')")
    yield from pg_schema_url()


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    from vallum.storage import open_store

    s = open_store(store_url)
    yield s
    s.close()
