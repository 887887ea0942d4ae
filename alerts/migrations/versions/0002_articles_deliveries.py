"""Articles with their topics, topic aliases, the deliveries ledger, unsubscribe reasons.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("unsubscribe_reason", sa.String(500), nullable=True))

    op.create_table(
        "topic_aliases",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("language_code", sa.String(8), nullable=True),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name="fk_topic_aliases_topic_id_topics",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["language_code"],
            ["languages.code"],
            name="fk_topic_aliases_language_code_languages",
        ),
        sa.PrimaryKeyConstraint("key", name="pk_topic_aliases"),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guid", sa.String(1000), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("summary_text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("language_code", sa.String(8), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["language_code"], ["languages.code"], name="fk_articles_language_code_languages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
        sa.UniqueConstraint("guid", name="uq_articles_guid"),
    )
    op.create_index("ix_articles_published_at", "articles", ["published_at"])
    op.create_table(
        "article_topics",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_article_topics_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name="fk_article_topics_topic_id_topics"
        ),
        sa.PrimaryKeyConstraint("article_id", "topic_id", name="pk_article_topics"),
    )
    op.create_index("ix_article_topics_topic", "article_topics", ["topic_id", "article_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_deliveries_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_deliveries_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint(
            "subscriber_id", "article_id", name="uq_deliveries_subscriber_id_article_id"
        ),
    )
    op.create_index("ix_deliveries_article_status", "deliveries", ["article_id", "status"])
    op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("article_topics")
    op.drop_table("articles")
    op.drop_table("topic_aliases")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("unsubscribe_reason")
