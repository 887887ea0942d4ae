"""Readers: the key of their private Atom feed's address (NULL until first shown).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("feed_key", sa.String(32), nullable=True))
    op.create_index("ix_subscribers_feed_key", "subscribers", ["feed_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_subscribers_feed_key", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("feed_key")
