"""The send path when the database connection goes away mid-batch (a server restart, a
failover, a terminated backend): what the relay took is recorded over a new connection and
never sent again, and the batch goes on. A real SMTP sink on a socket, the test's database
(SQLite, or PostgreSQL under .ci/run, where the server itself ends the connection)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from alerts import digests
from alerts.mail import emails, smtp
from alerts.mail.sink import MailSink
from alerts.models import Delivery, DeliveryStatus, DigestRecipient, Frequency, RecipientStatus
from alerts.sending import batches, fanout
from alerts.sending.policy import RetryPolicy

import factories

POLICY = RetryPolicy(stale_after=timedelta(seconds=30), batch_size=3, digest_batch_size=3)


def settings(sink: MailSink) -> emails.MailSettings:
    return emails.MailSettings(
        base_url="https://alerts.example.org",
        mail_from="News <alerts@example.org>",
        site_name="IP Policy Watch",
        secret_key="k",
        confirm_max_age=3600,
        smtp=smtp.SmtpSettings("127.0.0.1", sink.controller.port, "none"),
    )


class ConnectionKiller:
    """Ends the task session's database connection right after the relay has accepted the
    messages numbered in `after` (counted from 1): the server terminates the backend on
    PostgreSQL; on SQLite the connection is closed under the session."""

    def __init__(self, session: Session, after: set[int]) -> None:
        self.session = session
        self.after = after
        self.accepted = 0
        self.killed = 0
        bind = session.get_bind()
        self.other = Session(bind.engine)  # type: ignore[union-attr]

    def kill(self) -> None:
        raw = self.session.connection().connection.dbapi_connection
        assert raw is not None
        if self.session.get_bind().dialect.name == "postgresql":
            self.other.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": raw.info.backend_pid}
            )
            self.other.commit()
        else:
            raw.close()
        self.killed += 1

    def connect(self, relay: smtp.SmtpSettings) -> Any:
        killer = self

        @contextmanager
        def connected() -> Iterator[smtp.Mailer]:
            with smtp.connect(relay) as mailer:
                real_send = mailer.send

                def send(*args: Any, **kwargs: Any) -> smtp.Rejection | None:
                    rejection = real_send(*args, **kwargs)
                    if rejection is None:
                        killer.accepted += 1
                        if killer.accepted in killer.after:
                            killer.kill()
                    return rejection

                mailer.send = send  # type: ignore[method-assign]
                yield mailer

        return connected()


@contextmanager
def task_session(session: Session) -> Iterator[Session]:
    """A send task's session: one connection held for the task, as `db.sending_session`."""
    with session.get_bind().engine.connect() as connection:  # type: ignore[union-attr]
        held = Session(bind=connection, expire_on_commit=False)
        try:
            yield held
        finally:
            held.close()


def test_alerts_the_relay_took_are_recorded_over_a_new_connection(
    session: Session, sink: MailSink
) -> None:
    readers = [factories.subscriber(session, ["wipo"]) for _ in range(7)]
    article = factories.article(session, topics=["wipo"])
    fanout.fan_out(session, article.id, POLICY, queue_send=lambda: None)
    session.commit()
    with task_session(session) as task:
        killer = ConnectionKiller(task, after={2, 3, 6})
        drained = batches.drain_alerts(task, settings(sink), POLICY, article.id, killer.connect)
    assert killer.killed == 3
    assert drained.outcome.sent == 7
    assert sorted(m.recipients[0] for m in sink.store.all()) == sorted(r.email for r in readers)
    session.expire_all()
    statuses = session.scalars(
        select(Delivery.status).where(Delivery.article_id == article.id)
    ).all()
    assert statuses == [DeliveryStatus.SENT] * 7


def test_digests_the_relay_took_are_recorded_over_a_new_connection(
    session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    readers = [factories.subscriber(session, ["wipo"], frequency=Frequency.DAILY) for _ in range(5)]
    frozen_clock.advance(timedelta(hours=1))
    for number in range(3):
        factories.article(session, topics=["wipo"], title=f"Story {number}")
    run, _ = digests.start_run(session, Frequency.DAILY, "", "admin")
    digests.enqueue(session, run, due_only=False)
    session.commit()
    with task_session(session) as task:
        killer = ConnectionKiller(task, after={1, 3, 4})
        drained = batches.drain_digests(task, settings(sink), POLICY, run.id, killer.connect)
    assert killer.killed == 3
    assert drained.outcome.sent == 5
    messages = sink.store.all()
    assert sorted(m.recipients[0] for m in messages) == sorted(r.email for r in readers)
    assert all("Story 2" in m.body("plain") for m in messages)
    session.expire_all()
    assert set(
        session.scalars(select(DigestRecipient.status).where(DigestRecipient.run_id == run.id))
    ) == {RecipientStatus.SENT}
    articles_sent = session.scalars(
        select(Delivery.status).where(Delivery.digest_run_id == run.id)
    ).all()
    assert articles_sent == [DeliveryStatus.SENT] * 15


def test_a_round_up_recorded_over_a_new_connection_records_only_what_it_carried(
    session: Session, sink: MailSink
) -> None:
    """Two alerts held in quiet hours; the reader no longer follows what one of them matched.
    The round-up carries the other; its record is made again over a new connection, and the
    article it did not carry is not recorded as sent (a correction of it would follow)."""
    from alerts.clock import now
    from alerts.sending import roundup

    reader = factories.subscriber(session, ["wipo"])
    kept = factories.article(session, topics=["wipo"], title="Still followed")
    dropped = factories.article(session, topics=["wto-trips"], title="No longer followed")
    for article in (kept, dropped):
        session.add(
            Delivery(
                subscriber_id=reader.id,
                article_id=article.id,
                status=DeliveryStatus.HELD,
                held="quiet",
                held_until=now() - timedelta(minutes=1),
            )
        )
    session.commit()
    with task_session(session) as task:
        killer = ConnectionKiller(task, after={1})
        drained = roundup.drain(task, settings(sink), POLICY, killer.connect)
    assert killer.killed == 1 and drained.outcome.sent == 1
    [message] = sink.store.to(reader.email)
    assert "Still followed" in message.body("plain")
    assert "No longer followed" not in message.body("plain")
    session.expire_all()
    statuses = dict(
        session.execute(
            select(Delivery.article_id, Delivery.status).where(Delivery.subscriber_id == reader.id)
        ).all()
    )
    assert statuses[kept.id] is DeliveryStatus.SENT
    assert statuses[dropped.id] is not DeliveryStatus.SENT
