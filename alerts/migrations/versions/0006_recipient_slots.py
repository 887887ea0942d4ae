"""A digest recipient is one reader's due slot: unique per run, reader and slot.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alerts.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digest_recipients") as batch:
        batch.add_column(sa.Column("slot", UTCDateTime(), nullable=True))
    op.execute("UPDATE digest_recipients SET slot = updated_at")
    with op.batch_alter_table("digest_recipients") as batch:
        batch.alter_column("slot", existing_type=UTCDateTime(), nullable=False)
        batch.drop_constraint("uq_digest_recipients_run_id_subscriber_id", type_="unique")
        batch.create_unique_constraint(
            "uq_digest_recipients_run_id_subscriber_id_slot", ["run_id", "subscriber_id", "slot"]
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_recipients") as batch:
        batch.drop_constraint("uq_digest_recipients_run_id_subscriber_id_slot", type_="unique")
        batch.create_unique_constraint(
            "uq_digest_recipients_run_id_subscriber_id", ["run_id", "subscriber_id"]
        )
        batch.drop_column("slot")
