"""Give back the digest claims that runs left pending after they ended.

Before 0018's release, a digest retry that no longer carried an article (the reader changed
what they follow) left the earlier attempt's row pending for its run; a reader who paused
mid-run had the run's rows closed as skipped. A pending row of a reader whose digest in that
run is over keeps the article out of every later digest: the claim is deleted, and an alert
held past the reader's daily cap is held again for their next digest.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

deliveries = sa.table(
    "deliveries",
    sa.column("status"),
    sa.column("digest_run_id"),
    sa.column("subscriber_id"),
    sa.column("held"),
    sa.column("claim_token"),
    sa.column("claimed_at"),
)
recipients = sa.table(
    "digest_recipients", sa.column("run_id"), sa.column("subscriber_id"), sa.column("status")
)
# A digest's pending row whose reader has no digest left to send in the run (a reader may
# have several in one run, one per slot: a send by hand, a change of clocks).
ENDED = sa.and_(
    deliveries.c.status == "pending",
    deliveries.c.digest_run_id.is_not(None),
    ~sa.exists().where(
        recipients.c.run_id == deliveries.c.digest_run_id,
        recipients.c.subscriber_id == deliveries.c.subscriber_id,
        recipients.c.status == "queued",
    ),
)


def upgrade() -> None:
    op.execute(sa.delete(deliveries).where(ENDED, deliveries.c.held.is_(None)))
    op.execute(
        sa.update(deliveries)
        .where(ENDED, deliveries.c.held == "cap")
        .values(status="held", digest_run_id=None, claim_token=None, claimed_at=None)
    )


def downgrade() -> None:
    """Nothing to put back: the rows given back were owed, not sent."""
