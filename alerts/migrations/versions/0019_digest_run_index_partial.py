"""Deliveries: only a digest's rows in the run/reader index.

An alert's row has no run, and was filed under NULL twice (at the fan-out, and again when
it was sent, on PostgreSQL, where an update writes a new entry in every index). Every
statement that uses the index names a run, which implies the predicate.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _index(where: str | None) -> None:
    op.drop_index("ix_deliveries_digest_run_subscriber", table_name="deliveries")
    predicate = sa.text(where) if where else None
    op.create_index(
        "ix_deliveries_digest_run_subscriber",
        "deliveries",
        ["digest_run_id", "subscriber_id"],
        sqlite_where=predicate,
        postgresql_where=predicate,
    )


def upgrade() -> None:
    _index("digest_run_id IS NOT NULL")


def downgrade() -> None:
    _index(None)
