"""Feeds with their unmapped categories; keyword alerts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch operation would make SQLite rebuild the table, and the
    # rebuild would drop the lower(email) index, which SQLite cannot reflect.
    op.add_column(
        "subscribers",
        sa.Column(
            "keywords_within_topics", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.create_table(
        "keywords",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("phrase", sa.String(100), nullable=False),
        sa.Column("words", sa.String(200), nullable=False),
        sa.Column("first_word", sa.String(100), nullable=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_keywords_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_keywords"),
        sa.UniqueConstraint("subscriber_id", "words", name="uq_keywords_subscriber_id_words"),
    )
    op.create_index("ix_keywords_lookup", "keywords", ["first_word", "frequency", "subscriber_id"])
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("language_code", sa.String(8), nullable=True),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("etag", sa.String(500), nullable=True),
        sa.Column("last_modified", sa.String(100), nullable=True),
        sa.Column("first_polled_at", UTCDateTime(), nullable=True),
        sa.Column("last_polled_at", UTCDateTime(), nullable=True),
        sa.Column("next_poll_at", UTCDateTime(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("articles_created", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["language_code"], ["languages.code"], name="fk_feeds_language_code_languages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feeds"),
        sa.UniqueConstraint("url", name="uq_feeds_url"),
    )
    op.create_index("ix_feeds_due", "feeds", ["active", "next_poll_at"])
    op.create_table(
        "feed_categories",
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name="fk_feed_categories_feed_id_feeds", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("feed_id", "key", name="pk_feed_categories"),
    )


def downgrade() -> None:
    op.drop_table("feed_categories")
    op.drop_table("feeds")
    op.drop_table("keywords")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("keywords_within_topics")
