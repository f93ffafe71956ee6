"""Alembic environment: runs on the connection the store hands over (no URL of its own)."""

from __future__ import annotations

from alembic import context

from vallum.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when run by hand with `alembic -x url=…`
    from sqlalchemy import create_engine

    url = context.get_x_argument(as_dictionary=True)["url"]
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
