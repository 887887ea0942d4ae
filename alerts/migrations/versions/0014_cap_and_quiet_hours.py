"""Readers: a daily cap on instant alerts and quiet hours; deliveries: why one was held.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("daily_cap", sa.Integer(), nullable=True))
    op.add_column("subscribers", sa.Column("quiet_from", sa.Integer(), nullable=True))
    op.add_column("subscribers", sa.Column("quiet_until", sa.Integer(), nullable=True))
    op.add_column(
        "subscribers",
        sa.Column("urgent_in_quiet", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column("deliveries", sa.Column("held", sa.String(10), nullable=True))
    op.add_column("deliveries", sa.Column("held_until", sa.DateTime(), nullable=True))
    # The quiet-hours release looks for held alerts whose time has come.
    op.create_index(
        "ix_deliveries_held",
        "deliveries",
        ["held_until", "subscriber_id"],
        sqlite_where=sa.text("status = 'held'"),
        postgresql_where=sa.text("status = 'held'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_held", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("held_until")
        batch.drop_column("held")
    with op.batch_alter_table("subscribers") as batch:
        for column in ("urgent_in_quiet", "quiet_until", "quiet_from", "daily_cap"):
            batch.drop_column(column)
