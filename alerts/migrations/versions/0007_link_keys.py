"""A random link key per subscriber, carried by every link in emails.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch): SQLite would otherwise rebuild subscribers and lose the
    # lower(email) index.
    op.add_column("subscribers", sa.Column("link_key", sa.String(16), nullable=True))
    connection = op.get_bind()
    ids = [row[0] for row in connection.execute(sa.text("SELECT id FROM subscribers"))]
    for subscriber_id in ids:
        connection.execute(
            sa.text("UPDATE subscribers SET link_key = :key WHERE id = :id"),
            {"key": secrets.token_hex(8), "id": subscriber_id},
        )


def downgrade() -> None:
    op.drop_column("subscribers", "link_key")
