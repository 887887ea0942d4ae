"""Pauses, suppression times, soft bounces, anonymous counts, who recorded a consent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("suppressed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("paused_until", UTCDateTime(), nullable=True))
    with op.batch_alter_table("consent_records") as batch:
        batch.add_column(sa.Column("recorded_by", sa.String(200), nullable=True))
    op.create_table(
        "soft_bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_soft_bounces_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_soft_bounces"),
    )
    op.create_index("ix_soft_bounces_subscriber_at", "soft_bounces", ["subscriber_id", "at"])
    op.create_table(
        "delivery_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "status", name="pk_delivery_counts"),
    )


def downgrade() -> None:
    op.drop_table("delivery_counts")
    op.drop_table("soft_bounces")
    with op.batch_alter_table("consent_records") as batch:
        batch.drop_column("recorded_by")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("suppressed_at")
