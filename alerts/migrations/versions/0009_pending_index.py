"""Deliveries: one partial index of pending rows instead of two over every row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["article_id", "subscriber_id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.drop_index("ix_deliveries_article_status", table_name="deliveries")
    op.drop_index("ix_deliveries_status_article", table_name="deliveries")
    op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
    op.create_index("ix_deliveries_status_article", "deliveries", ["status", "article_id"])
    op.create_index(
        "ix_deliveries_article_status", "deliveries", ["article_id", "status", "subscriber_id"]
    )
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
