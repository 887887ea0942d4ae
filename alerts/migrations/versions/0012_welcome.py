"""Readers: when their welcome email (with the preference-centre link) was sent.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Readers confirmed before stay NULL: they were never sent one, and are not sent one now
    # (only a confirmation from now on queues a welcome).
    op.add_column("subscribers", sa.Column("welcomed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("welcomed_at")
