"""The tables (SQLAlchemy Core). Changing them needs a new alembic migration in `migrations/versions`."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(256), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("type", String(128), nullable=False),
    Column("user_id", String(256), nullable=True),
    Column("body", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("key_id", String(32), nullable=True),
    Index("ix_events_event_id", "event_id", unique=True),
    Index("ix_events_ts", "ts_ms"),
    Index("ix_events_user", "user_id", "ts_ms"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("entity_type", String(32), primary_key=True),
    Column("entity_id", String(256), primary_key=True),
    Column("action", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("as_of", Float, nullable=False),
    Index("ix_decisions_action_score", "action", "score"),
)

score_history = Table(
    "score_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(256), nullable=False),
    Column("ts", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("action", String(16), nullable=False),
    Index("ix_score_history_entity", "entity_type", "entity_id", "ts"),
)

rule_hits = Table(
    "rule_hits",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(256), nullable=False),
    Column("ts", Float, nullable=False),
    Column("weight", Float, nullable=False),
    Column("detail", Text, nullable=False),
    Column("event_id", String(256), nullable=True),
    Index("ix_rule_hits_rule_ts", "rule", "ts"),
    Index("ix_rule_hits_entity", "entity_type", "entity_id"),
)

overrides = Table(
    "overrides",
    metadata,
    Column("entity_type", String(32), primary_key=True),
    Column("entity_id", String(256), primary_key=True),
    Column("action", String(16), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_by", String(200), nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("assignee", String(200), nullable=True),
    Column("resolution", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_reviews_status", "status", "created_at"),
    Index("ix_reviews_entity", "entity_type", "entity_id"),
)

review_notes = Table(
    "review_notes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("review_id", BigInteger, nullable=False, index=True),
    Column("author", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

rule_settings = Table(
    "rule_settings",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("weight", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)
