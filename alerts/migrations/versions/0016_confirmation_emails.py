"""Confirmation emails as a ledger of their own: written with the signup that asks for one,
sent in batches under a lease, closed with the relay's answer.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmation_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("retry_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_confirmation_emails_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_confirmation_emails"),
    )
    op.create_index(
        "ix_confirmation_emails_pending",
        "confirmation_emails",
        ["subscriber_id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_confirmation_emails_subscriber",
        "confirmation_emails",
        ["subscriber_id", "claim_token"],
    )
    op.create_index(
        "ix_confirmation_emails_claim",
        "confirmation_emails",
        ["claim_token"],
        sqlite_where=sa.text("claim_token IS NOT NULL"),
        postgresql_where=sa.text("claim_token IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_confirmation_emails_claim", table_name="confirmation_emails")
    op.drop_index("ix_confirmation_emails_subscriber", table_name="confirmation_emails")
    op.drop_index("ix_confirmation_emails_pending", table_name="confirmation_emails")
    op.drop_table("confirmation_emails")
