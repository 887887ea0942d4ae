"""Durable delivery: pending deliveries written by fan-out, retry times, relay state.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch): SQLite would otherwise rebuild the tables.
    for name in ("fanned_out_at", "fanout_claimed_at", "queued_at"):
        op.add_column("articles", sa.Column(name, UTCDateTime(), nullable=True))
    op.add_column(
        "articles", sa.Column("fanout_after", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("articles", sa.Column("fanout_token", sa.String(32), nullable=True))
    op.create_index("ix_articles_fanned_out_at", "articles", ["fanned_out_at"])
    # Articles stored before this revision were fanned out (or meant to alert nobody),
    # except the last day's that some readers were being sent: their fan-out task of the
    # old kind may still wait on the broker, and it would now find them done. Fanning
    # those out again is safe: readers who already have a delivery row are left alone.
    op.execute("UPDATE articles SET fanned_out_at = created_at")
    op.execute(
        sa.text(
            "UPDATE articles SET fanned_out_at = NULL WHERE created_at > :since"
            " AND EXISTS (SELECT 1 FROM deliveries WHERE deliveries.article_id = articles.id"
            " AND deliveries.digest_run_id IS NULL)"
        ).bindparams(since=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1))
    )

    for table in ("deliveries", "digest_recipients"):
        op.add_column(table, sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
        op.add_column(table, sa.Column("retry_until", UTCDateTime(), nullable=True))
    op.add_column("digest_runs", sa.Column("queued_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE deliveries SET status = 'pending' WHERE status = 'claimed'")
    op.execute("UPDATE delivery_counts SET status = 'pending' WHERE status = 'claimed'")
    op.drop_index("ix_deliveries_article_status", table_name="deliveries")
    op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
    op.create_index(
        "ix_deliveries_article_status", "deliveries", ["article_id", "status", "subscriber_id"]
    )
    op.create_index("ix_deliveries_status_article", "deliveries", ["status", "article_id"])
    op.drop_index("ix_deliveries_digest_run_id", table_name="deliveries")
    op.create_index(
        "ix_deliveries_digest_run_subscriber", "deliveries", ["digest_run_id", "subscriber_id"]
    )

    op.create_table(
        "relay_status",
        sa.Column("relay", sa.String(300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("down_since", UTCDateTime(), nullable=True),
        sa.Column("retry_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_ok_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("relay", name=op.f("pk_relay_status")),
    )


def downgrade() -> None:
    op.drop_table("relay_status")
    op.drop_index("ix_deliveries_digest_run_subscriber", table_name="deliveries")
    op.create_index("ix_deliveries_digest_run_id", "deliveries", ["digest_run_id"])
    op.drop_index("ix_deliveries_status_article", table_name="deliveries")
    op.drop_index("ix_deliveries_article_status", table_name="deliveries")
    op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])
    op.create_index("ix_deliveries_article_status", "deliveries", ["article_id", "status"])
    op.execute("UPDATE deliveries SET status = 'claimed' WHERE status = 'pending'")
    op.drop_column("digest_runs", "queued_at")
    for table in ("deliveries", "digest_recipients"):
        op.drop_column(table, "retry_until")
        op.drop_column(table, "next_attempt_at")
    op.drop_index("ix_articles_fanned_out_at", table_name="articles")
    for name in ("fanout_token", "fanout_after", "queued_at", "fanout_claimed_at", "fanned_out_at"):
        op.drop_column("articles", name)
