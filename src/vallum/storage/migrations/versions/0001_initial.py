"""Initial schema: API keys, events, decisions, score history, rule hits, overrides, reviews.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _pk() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
    )
    op.create_table(
        "events",
        sa.Column("seq", _pk(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_events_event_id", "events", ["event_id"], unique=True)
    op.create_index("ix_events_ts", "events", ["ts_ms"])
    op.create_index("ix_events_user", "events", ["user_id", "ts_ms"])
    op.create_table(
        "decisions",
        sa.Column("entity_type", sa.String(32), primary_key=True),
        sa.Column("entity_id", sa.String(256), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("as_of", sa.Float, nullable=False),
    )
    op.create_index("ix_decisions_action_score", "decisions", ["action", "score"])
    op.create_table(
        "score_history",
        sa.Column("id", _pk(), primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
    )
    op.create_index("ix_score_history_entity", "score_history", ["entity_type", "entity_id", "ts"])
    op.create_table(
        "rule_hits",
        sa.Column("id", _pk(), primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("event_id", sa.String(256), nullable=True),
    )
    op.create_index("ix_rule_hits_rule_ts", "rule_hits", ["rule", "ts"])
    op.create_index("ix_rule_hits_entity", "rule_hits", ["entity_type", "entity_id"])
    op.create_table(
        "overrides",
        sa.Column("entity_type", sa.String(32), primary_key=True),
        sa.Column("entity_id", sa.String(256), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
    )
    op.create_table(
        "reviews",
        sa.Column("id", _pk(), primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_reviews_status", "reviews", ["status", "created_at"])
    op.create_index("ix_reviews_entity", "reviews", ["entity_type", "entity_id"])
    op.create_table(
        "review_notes",
        sa.Column("id", _pk(), primary_key=True, autoincrement=True),
        sa.Column("review_id", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_review_notes_review_id", "review_notes", ["review_id"])
    op.create_table(
        "rule_settings",
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("weight", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("rule_settings", "review_notes", "reviews", "overrides", "rule_hits", "score_history",
                 "decisions", "events", "api_keys"):
        op.drop_table(name)
