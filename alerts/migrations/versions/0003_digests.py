"""Digests: send hour and weekday, digest runs, their recipients, schedules.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("send_hour", sa.Integer(), nullable=False, server_default="8"))
        batch.add_column(
            sa.Column("send_weekday", sa.Integer(), nullable=False, server_default="0")
        )
    # Server defaults stay: dropping them would make SQLite rebuild the table, and a rebuild
    # loses the lower(email) index, which SQLite cannot reflect.

    op.create_table(
        "digest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("triggered_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_digest_runs"),
        sa.UniqueConstraint(
            "frequency", "period", "scope", name="uq_digest_runs_frequency_period_scope"
        ),
    )
    op.create_index("ix_digest_runs_created_at", "digest_runs", ["created_at"])
    op.create_table(
        "digest_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("article_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["digest_runs.id"],
            name="fk_digest_recipients_run_id_digest_runs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_digest_recipients_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_digest_recipients"),
        sa.UniqueConstraint(
            "run_id", "subscriber_id", name="uq_digest_recipients_run_id_subscriber_id"
        ),
    )
    op.create_index(
        "ix_digest_recipients_run_status",
        "digest_recipients",
        ["run_id", "status", "subscriber_id"],
    )
    op.create_table(
        "digest_schedules",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=False),
        sa.Column("last_sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_digest_schedules_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "frequency", name="pk_digest_schedules"),
    )
    op.create_index(
        "ix_digest_schedules_due", "digest_schedules", ["frequency", "next_at", "subscriber_id"]
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("digest_run_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_deliveries_digest_run_id_digest_runs",
            "digest_runs",
            ["digest_run_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_deliveries_digest_run_id", ["digest_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_digest_run_id")
        batch.drop_constraint("fk_deliveries_digest_run_id_digest_runs", type_="foreignkey")
        batch.drop_column("digest_run_id")
    op.drop_table("digest_schedules")
    op.drop_table("digest_recipients")
    op.drop_table("digest_runs")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("send_weekday")
        batch.drop_column("send_hour")
