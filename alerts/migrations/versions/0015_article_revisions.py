"""Article revisions (a changed title or summary) and the notices readers get of them;
deliveries: the version each email carried; readers: whether they want correction emails.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("corrections", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "article_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("old_title", sa.String(500), nullable=False),
        sa.Column("new_title", sa.String(500), nullable=False),
        sa.Column("old_summary_text", sa.Text(), nullable=False),
        sa.Column("new_summary_text", sa.Text(), nullable=False),
        sa.Column("correction", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("swept_at", sa.DateTime(), nullable=True),
        sa.Column("notices_done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_article_revisions_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_article_revisions"),
    )
    op.create_index(
        "ix_article_revisions_created", "article_revisions", ["created_at", "article_id"]
    )
    op.create_index("ix_article_revisions_article", "article_revisions", ["article_id", "id"])
    op.add_column("deliveries", sa.Column("revision_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # Built without blocking the writes of the busiest table (outside the transaction).
        with op.get_context().autocommit_block():
            op.create_index(
                "ix_deliveries_article",
                "deliveries",
                ["article_id"],
                postgresql_concurrently=True,
                if_not_exists=True,
            )
    else:
        op.create_index("ix_deliveries_article", "deliveries", ["article_id"])
    op.create_table(
        "revision_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("retry_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("digest_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["article_revisions.id"],
            name="fk_revision_notices_revision_id_article_revisions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_revision_notices_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["digest_run_id"],
            ["digest_runs.id"],
            name="fk_revision_notices_digest_run_id_digest_runs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_revision_notices"),
        sa.UniqueConstraint(
            "revision_id", "subscriber_id", name="uq_revision_notices_revision_id_subscriber_id"
        ),
    )
    op.create_index(
        "ix_revision_notices_pending",
        "revision_notices",
        ["kind", "subscriber_id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_revision_notices_subscriber", "revision_notices", ["subscriber_id", "claim_token"]
    )
    op.create_index(
        "ix_revision_notices_claim",
        "revision_notices",
        ["claim_token"],
        sqlite_where=sa.text("claim_token IS NOT NULL"),
        postgresql_where=sa.text("claim_token IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_revision_notices_claim", table_name="revision_notices")
    op.drop_index("ix_revision_notices_subscriber", table_name="revision_notices")
    op.drop_index("ix_revision_notices_pending", table_name="revision_notices")
    op.drop_table("revision_notices")
    op.drop_index("ix_deliveries_article", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("revision_id")
    op.drop_index("ix_article_revisions_article", table_name="article_revisions")
    op.drop_index("ix_article_revisions_created", table_name="article_revisions")
    op.drop_table("article_revisions")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("corrections")
