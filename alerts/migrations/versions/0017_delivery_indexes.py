"""Deliveries: the pending index holds alerts only, and the dashboard's index outcomes only.

A digest's article rows are claimed and finished by its run, found by reader
(`ix_deliveries_digest_run_subscriber`); in the pending index each one was an entry written
at the claim and removed at the send, on ten pages for a digest of ten articles. The
dashboard counts sent, failed and bounced rows by day: a row still on its way no longer
enters its index only to move when it is sent.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _pending_index(where: str) -> None:
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["article_id", "subscriber_id"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def _outcomes_index(where: str | None) -> None:
    op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
    predicate = sa.text(where) if where else None
    op.create_index(
        "ix_deliveries_status_updated",
        "deliveries",
        ["status", "updated_at"],
        sqlite_where=predicate,
        postgresql_where=predicate,
    )


def upgrade() -> None:
    _pending_index("status = 'pending' AND digest_run_id IS NULL")
    _outcomes_index("status IN ('sent', 'failed', 'bounced')")


def downgrade() -> None:
    _pending_index("status = 'pending'")
    _outcomes_index(None)
