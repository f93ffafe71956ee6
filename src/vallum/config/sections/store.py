"""`store:` — where the behaviour layer keeps events, entities and decisions."""

from __future__ import annotations

from pydantic import Field

from vallum.config.sections.base import Section


class StoreConfig(Section):
    #: sqlite:///path or postgresql://user@host/db; empty = sqlite under data_dir
    url: str = ""
    #: apply alembic migrations automatically when the store opens
    migrate_on_start: bool = True
    #: connection pool size (PostgreSQL)
    pool_size: int = Field(default=5, ge=1, le=100)
