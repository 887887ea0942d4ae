"""Articles: the source that published each one (only it may update it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Articles stored before stay NULL: the next source to send their guid claims them.
    op.add_column("articles", sa.Column("source", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("source")
