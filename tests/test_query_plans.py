"""The statements that run per email, per batch or per scrape find their rows of `deliveries`
through an index: the table holds a row per email ever sent, so a statement that scans it
gets slower every day. Partial indexes are used only by a statement that states their
predicate, which is easy to drop by accident; SQLite's plans say so.

The statements built once (`db.Prepared`) run on the driver's cursor, out of sight of the
engine's events: their plans are asked for directly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from alerts import db, migrations, stats, taxonomy
from alerts.metrics import WorkCollector
from alerts.models import Delivery, DeliveryStatus, DigestRun, Frequency
from alerts.sending import digest_ledger, ledger, reconcile
from alerts.sending.policy import RetryPolicy

import factories


@contextmanager
def statements(session: Session, *tables: str) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the session runs meanwhile on these tables (`deliveries` by default), with its
    parameters."""
    seen: list[tuple[str, Any]] = []
    names = tables or ("deliveries",)

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, _ctx: Any, many: bool) -> None:
        if not many and any(name in sql for name in names):
            seen.append((sql, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def scans_of_deliveries(session: Session, seen: list[tuple[str, Any]]) -> list[str]:
    """The statements whose plan reads every row of `deliveries`."""
    scans = []
    for sql, parameters in seen:
        plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
        if any(str(row[-1]).strip() == "SCAN deliveries" for row in plan):
            scans.append(sql)
    return scans


@contextmanager
def seeded(tmp_path: Any) -> Iterator[Session]:
    """A session on a fresh SQLite database, migrated, with the site's topics."""
    url = f"sqlite:///{tmp_path}/plans.db"
    migrations.upgrade(url)
    engine = db.make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        taxonomy.seed(session)
        session.commit()
        yield session
    engine.dispose()


def plan_of(session: Session, statement: db.Prepared) -> str:
    compiled = statement._for(session.get_bind().dialect)
    plan = session.connection().exec_driver_sql(
        "EXPLAIN QUERY PLAN " + compiled.sql, tuple(1 for _ in compiled.positions or ())
    )
    return "\n".join(str(row[-1]) for row in plan)


def test_per_email_records_use_an_index(tmp_path: Any) -> None:
    """An alert's outcome by article and reader; a digest's articles by run and reader, not
    every article the reader was ever sent."""
    url = f"sqlite:///{tmp_path}/plans.db"
    migrations.upgrade(url)
    engine = db.make_engine(url)
    with Session(engine) as session:
        assert "SEARCH deliveries USING INDEX" in plan_of(session, ledger._SENT)
        for statement in (digest_ledger._FINISH_DELIVERIES, digest_ledger._RELEASE_DELIVERIES):
            assert "ix_deliveries_digest_run_subscriber" in plan_of(session, statement)
    engine.dispose()


def test_alerts_metrics_and_the_dashboard_use_an_index(tmp_path: Any) -> None:
    with seeded(tmp_path) as session:
        instant = factories.subscriber(session)
        daily = factories.subscriber(session, frequency=Frequency.DAILY)
        article = factories.article(session)
        ledger.write_pending(session, article.id, [instant.id])
        run = DigestRun(frequency=Frequency.DAILY, period="2026-11-29", triggered_by="test")
        session.add(run)
        session.flush()
        session.execute(
            insert(Delivery).values(
                subscriber_id=daily.id,
                article_id=article.id,
                status=DeliveryStatus.PENDING,
                attempts=0,
                digest_run_id=run.id,
            )
        )
        session.commit()
        policy = RetryPolicy()

        with statements(session) as seen:
            claim = ledger.claim_next(session, article.id, policy)
            assert claim.subscriber_ids == [instant.id]  # the digest's row is not an alert
            ledger.renew(session, claim.token, article.id)
            ledger.next_retry_at(session, article.id)
            reconcile.owed(session, policy)
            assert reconcile.waiting(session).alerts_pending == 1
            stats.last_30_days(session)
            list(WorkCollector(lambda: session, "localhost:25").collect())
        assert len(seen) >= 8
        assert scans_of_deliveries(session, seen) == []

        # The check itself: a statement without the predicate does scan.
        with statements(session) as seen:
            session.execute(text("SELECT count(*) FROM deliveries WHERE status = 'pending'"))
        assert len(scans_of_deliveries(session, seen)) == 1


def test_a_digest_batchs_statements_use_an_index(tmp_path: Any) -> None:
    """A batch's build, its claim of article rows (and of what an earlier attempt left), and
    its readers' outcomes find the run's rows by run and reader (not by reader alone: every
    article the reader was ever sent)."""
    from alerts import digests
    from alerts.models import RecipientStatus
    from alerts.sending import digest_claims

    with seeded(tmp_path) as session:
        readers = [factories.subscriber(session, frequency=Frequency.DAILY) for _ in range(3)]
        article = factories.article(session)
        run, _ = digests.start_run(session, Frequency.DAILY, "", "admin")
        digests.enqueue(session, run, due_only=False)
        session.commit()
        policy = RetryPolicy()
        with statements(session) as seen:
            claim = digest_claims.claim_next(session, run.id, policy)
            digests.build_contents(session, Frequency.DAILY, claim.subscriber_ids, run_id=run.id)
            wanted = {reader.id: [article.id] for reader in readers}
            digest_claims.claim_articles(session, run.id, wanted, claim.token)
            digest_ledger.skip_inactive(session, run.id, readers[0].id, claim.token)
            digest_ledger.finish(
                session,
                run.id,
                readers[1],
                claim.token,
                RecipientStatus.SENT,
                frequency=Frequency.DAILY,
                article_count=1,
                delivery_status=DeliveryStatus.SENT,
            )
        assert len(seen) >= 6
        assert scans_of_deliveries(session, seen) == []
        by_run = [(sql, parameters) for sql, parameters in seen if "digest_run_id = " in sql]
        assert len(by_run) >= 4
        for sql, parameters in by_run:
            plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
            assert any("ix_deliveries_digest_run_subscriber" in str(row[-1]) for row in plan), sql


def plans_for_any_values(session: Session, seen: list[tuple[str, Any]]) -> list[str]:
    """The plans of these statements as made once for any parameters: what the database
    runs for a statement the driver prepared, after a few runs (SQLite plans only so)."""
    connection = session.connection()
    if session.get_bind().dialect.name != "postgresql":
        return [
            "\n".join(
                str(row[-1])
                for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
            )
            for sql, parameters in seen
        ]
    from psycopg import sql as psycopg_sql

    raw = connection.connection.dbapi_connection
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    plans = []
    for number, (statement, parameters) in enumerate(seen):
        names = re.findall(r"%\((\w+)\)s", statement)
        pieces = re.split(r"%\(\w+\)s", statement)
        numbered = pieces[0] + "".join(f"${k}{piece}" for k, piece in enumerate(pieces[1:], 1))
        connection.exec_driver_sql(f"PREPARE batch_{number} AS {numbered}")
        values = ", ".join(psycopg_sql.Literal(parameters[name]).as_string(raw) for name in names)
        rows = connection.exec_driver_sql(f"EXPLAIN EXECUTE batch_{number}({values})")
        plans.append("\n".join(str(row[0]) for row in rows))
    return plans


def test_a_batchs_readers_and_rows_are_found_by_index_in_a_plan_for_any_batch(
    session: Session,
) -> None:
    """A send batch looks its 500 readers up by id (the claim, the readers, what they follow):
    by index, in the plan PostgreSQL makes once for the prepared statement, on tables just
    filled (no statistics yet). With one parameter per id, that plan read every reader and
    every row of the article, building the 500 ids again for each: most of the database's
    time per email."""
    from alerts import matching
    from alerts.models import Subscriber, SubscriberLanguage, SubscriberStatus, Subscription, Topic
    from alerts.sending import claims

    wipo = session.scalar(select(Topic.id).where(Topic.slug == "wipo"))
    ids = range(1, 10_001)
    session.execute(
        insert(Subscriber),
        [{"id": i, "email": f"r{i}@example.org", "status": SubscriberStatus.ACTIVE} for i in ids],
    )
    session.execute(
        insert(SubscriberLanguage), [{"subscriber_id": i, "language_code": "en"} for i in ids]
    )
    session.execute(
        insert(Subscription),
        [{"subscriber_id": i, "topic_id": wipo, "frequency": Frequency.IMMEDIATE} for i in ids],
    )
    article = factories.article(session)
    ledger.write_pending(session, article.id, list(ids))
    session.commit()

    tables = ("subscribers", "deliveries", "subscriptions", "subscriber_languages")
    with statements(session, *tables) as seen:
        claim = ledger.claim_next(session, article.id, RetryPolicy())
        claims.readers_of(session, claim.subscriber_ids)
        matching.interests(session, claim.subscriber_ids, [Frequency.IMMEDIATE])
    assert len(claim.subscriber_ids) == 500
    by_ids = [(sql, parameters) for sql, parameters in seen if "= ANY" in sql or " IN (" in sql]
    assert len(by_ids) >= 6
    scan = re.compile(rf"(Seq Scan on|SCAN) ({'|'.join(tables)})\b")
    for (sql, _), plan in zip(by_ids, plans_for_any_values(session, by_ids), strict=True):
        assert not scan.search(plan), f"{sql}\n{plan}"
    session.rollback()
