"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.models import (
    Base,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    Frequency,
    RecipientStatus,
)

import factories

DAILY = Frequency.DAILY


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection:sqlalchemy.exc.SAWarning")
def test_migrations_match_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_email_is_unique_case_insensitively_in_the_schema(database_url: str) -> None:
    engine = db.make_engine(database_url)
    with engine.connect() as connection:
        insert = text(
            "INSERT INTO subscribers (email, status, timezone, created_at, updated_at)"
            " VALUES (:email, 'pending', 'UTC', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        connection.execute(insert, {"email": "Case@example.org"})
        with pytest.raises(Exception, match=r"(?i)unique"):
            connection.execute(insert, {"email": "case@EXAMPLE.org"})
        connection.rollback()
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: object) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_postgres_urls_use_psycopg_3() -> None:
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_0011_names_topics_and_folds_keywords_again(tmp_path: object) -> None:
    """Readers' keywords from before five languages are folded the new way (a Chinese
    keyword into one word per character, Arabic without its diacritics), and topics get
    their names in every language."""
    from alerts import migrations

    url = f"sqlite:///{tmp_path}/upgrade.db"
    migrations.upgrade(url, "0010")
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO topics (slug, name, kind, position) VALUES ('copyright', 'Copyright',"
                " 'section', 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO subscribers (email, status, timezone, created_at, updated_at)"
                " VALUES ('r@example.org', 'active', 'UTC', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        insert = text(
            "INSERT INTO keywords (subscriber_id, phrase, words, first_word, frequency)"
            " VALUES (1, :phrase, :words, :first, 'immediate')"
        )
        connection.execute(insert, {"phrase": "知识产权", "words": "知识产权", "first": "知识产权"})
        connection.execute(insert, {"phrase": "الْمِلْكِيَّة", "words": "الملكية", "first": "الملكية"})
        connection.execute(insert, {"phrase": "ICANN", "words": "icann", "first": "icann"})
    migrations.upgrade(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT words, first_word FROM keywords ORDER BY id")).all()
        names = connection.execute(text("SELECT names FROM topics")).scalar_one()
        locale = connection.execute(text("SELECT locale FROM subscribers")).scalar_one()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("知 识 产 权", "知"),
        ("الملكية", "الملكية"),
        ("icann", "icann"),
    ]
    assert "Droit d'auteur" in names and locale == "en"


def test_0018_gives_back_the_claims_of_digests_that_are_over(
    database_url: str, session: Session
) -> None:
    """Rows a digest run left pending for a reader whose digest in it is over: a digest's
    claim is deleted, an alert held past the cap is held again. A reader still queued in
    the run keeps theirs (their digest will send it), also one whose earlier slot in the run
    was sent by hand."""
    from alembic import command

    from alerts import digests, migrations

    done, waiting, twice = (
        factories.subscriber(session, ["wipo"], frequency=DAILY) for _ in range(3)
    )
    claimed, capped = (factories.article(session, topics=["wipo"]) for _ in range(2))
    run, _ = digests.start_run(session, DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.execute(
        update(DigestRecipient)
        .where(DigestRecipient.subscriber_id == done.id)
        .values(status=RecipientStatus.SKIPPED)
    )
    by_hand = session.scalars(
        select(DigestRecipient).where(DigestRecipient.subscriber_id == twice.id)
    ).one()
    session.add(
        DigestRecipient(
            run_id=run.id,
            subscriber_id=twice.id,
            slot=by_hand.slot - timedelta(hours=8),
            status=RecipientStatus.SENT,
        )
    )
    for reader in (done, waiting, twice):
        session.add_all(
            Delivery(
                subscriber_id=reader.id,
                article_id=article.id,
                status=DeliveryStatus.PENDING,
                digest_run_id=run.id,
                held=held,
            )
            for article, held in ((claimed, None), (capped, "cap"))
        )
    session.commit()
    command.downgrade(migrations.alembic_config(database_url), "0017")
    migrations.upgrade(database_url)
    session.expire_all()
    rows = {
        (row.subscriber_id, row.article_id): (row.status, row.digest_run_id)
        for row in session.scalars(select(Delivery))
    }
    assert rows == {
        (done.id, capped.id): (DeliveryStatus.HELD, None),
        (waiting.id, claimed.id): (DeliveryStatus.PENDING, run.id),
        (waiting.id, capped.id): (DeliveryStatus.PENDING, run.id),
        (twice.id, claimed.id): (DeliveryStatus.PENDING, run.id),
        (twice.id, capped.id): (DeliveryStatus.PENDING, run.id),
    }
