"""Five languages: each reader's interface language, each topic's name in every language.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Readers from before chose nothing: English, the site's default, as their emails were.
    op.add_column(
        "subscribers",
        sa.Column("locale", sa.String(8), nullable=False, server_default="en"),
    )
    # {"fr": "Droit d'auteur", ...}; kept up to date by `alerts topics seed` from then on.
    op.add_column("topics", sa.Column("names", sa.JSON(), nullable=True))
    _name_topics()
    _refold_keywords()


def _name_topics() -> None:
    from alerts.taxonomy import TOPIC_NAMES, names_of

    topics = sa.table("topics", sa.column("slug", sa.String), sa.column("names", sa.JSON))
    for slug in TOPIC_NAMES:
        op.execute(sa.update(topics).where(topics.c.slug == slug).values(names=names_of(slug)))


def _refold_keywords() -> None:
    """Keywords are stored folded; Chinese now folds to one word per character and Arabic
    loses its diacritics and alef forms, so keywords typed before are folded again (two
    phrases of one reader that now fold alike keep the older)."""
    from alerts.matching.words import words

    keywords = sa.table(
        "keywords",
        sa.column("id", sa.Integer),
        sa.column("subscriber_id", sa.Integer),
        sa.column("phrase", sa.String),
        sa.column("words", sa.String),
        sa.column("first_word", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            keywords.c.id, keywords.c.subscriber_id, keywords.c.phrase, keywords.c.words
        ).order_by(keywords.c.id)
    ).all()
    seen: set[tuple[int, str]] = set()
    for row in rows:
        folded = words(row.phrase)
        joined = " ".join(folded)
        if not folded or (row.subscriber_id, joined) in seen:
            connection.execute(sa.delete(keywords).where(keywords.c.id == row.id))
            continue
        seen.add((row.subscriber_id, joined))
        if joined != row.words:
            connection.execute(
                sa.update(keywords)
                .where(keywords.c.id == row.id)
                .values(words=joined, first_word=folded[0])
            )


def downgrade() -> None:
    with op.batch_alter_table("topics") as batch:
        batch.drop_column("names")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("locale")
