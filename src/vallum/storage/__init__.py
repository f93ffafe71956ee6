"""Storage: the SQLAlchemy Core store of the behaviour layer (SQLite WAL by default, PostgreSQL).

`open_store(url)` returns a migrated `Store` (alembic migrations ship in `storage/migrations`).
May import: the standard library, SQLAlchemy, alembic, `vallum.behaviour` value types. Not the API.
"""

from vallum.storage.store import Store, open_store

__all__ = ["Store", "open_store"]
