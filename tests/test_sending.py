"""The send path: fan-out, the ledger, the one send loop, the relay's breaker, the
reconciler, and queueing after commit. SMTP is a fake here; tests/e2e has the real thing."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alerts import articles, db, digests, tokens
from alerts.clock import now
from alerts.mail import emails, smtp
from alerts.models import (
    Article,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    DigestRun,
    DigestSchedule,
    Frequency,
    RecipientStatus,
    RelayStatus,
    SoftBounce,
    Subscriber,
    SubscriberStatus,
)
from alerts.sending import batches, fanout, ledger, reconcile, relay, suppression
from alerts.sending.policy import RetryPolicy

import factories

SETTINGS = emails.MailSettings(
    base_url="https://alerts.example.org",
    mail_from="News <alerts@example.org>",
    site_name="IP Policy Watch",
    secret_key="k",
    confirm_max_age=3600,
    smtp=smtp.SmtpSettings("127.0.0.1", 1, "none"),
)
POLICY = RetryPolicy(
    backoff=10,
    backoff_max=100,
    horizon=timedelta(hours=1),
    stale_after=timedelta(seconds=90),
    batch_size=2,
    relay_backoff=5,
    relay_backoff_max=60,
)


class FakeMailer:
    """Stands in for the SMTP connection in these unit tests; answers per address: a code
    (refused), an exception (raised before the data), or ("drop", exception) after it."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[str] = []
        self.in_data = False

        self.recipient: str | None = None

    def send(
        self, message: bytes, sender: str, recipient: str, meanwhile: Any = None
    ) -> smtp.Rejection | None:
        rejection = self.envelope(sender, recipient, len(message))
        if rejection is not None:
            return rejection
        if meanwhile is not None:  # as the real one: the data written, its answer not read
            meanwhile()
        return self.data(message)

    def envelope(self, sender: str, recipient: str, size: int) -> smtp.Rejection | None:
        self.recipient = recipient
        answer = self.answers.get(recipient)
        self.in_data = False
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return smtp.Rejection(answer, "no")
        return None

    def data(self, message: bytes) -> smtp.Rejection | None:
        assert self.recipient is not None, "DATA before an envelope"
        recipient, self.recipient = self.recipient, None
        answer = self.answers.get(recipient)
        if isinstance(answer, tuple):
            self.in_data = True
            raise answer[1]
        self.sent.append(recipient)
        return None

    def reset(self) -> None:
        self.recipient = None


def connect_to(mailer: FakeMailer) -> Any:
    @contextmanager
    def connect(_settings: smtp.SmtpSettings) -> Iterator[FakeMailer]:
        mailer.in_data = False
        yield mailer

    return connect


@contextmanager
def unreachable(_settings: smtp.SmtpSettings) -> Iterator[FakeMailer]:
    raise ConnectionRefusedError("no server")
    yield FakeMailer()  # pragma: no cover


def rows(session: Session, article_id: int) -> dict[int, Delivery]:
    session.expire_all()
    return {
        row.subscriber_id: row
        for row in session.scalars(select(Delivery).where(Delivery.article_id == article_id))
    }


def published(session: Session, *readers: Any, **overrides: Any) -> Article:
    """An article of WIPO, fanned out (pending rows written) for whoever follows it."""
    article = factories.article(session, topics=["wipo"], **overrides)
    fanout.fan_out(session, article.id, POLICY, queue_send=lambda: None)
    return article


def drain(session: Session, article: Article, mailer: Any) -> batches.Drain:
    return batches.drain_alerts(session, SETTINGS, POLICY, article.id, connect_to(mailer))


# --- fan-out -------------------------------------------------------------------------------


def test_fan_out_writes_one_pending_row_per_matching_reader_and_queues_sending(
    session: Session,
) -> None:
    readers = [factories.subscriber(session, ["wipo"]) for _ in range(5)]
    factories.subscriber(session, ["patents"])
    daily = factories.subscriber(session, ["wipo"], frequency=Frequency.DAILY)
    article = factories.article(session, topics=["wipo"])
    queued: list[int] = []
    report = fanout.fan_out(session, article.id, POLICY, lambda: queued.append(1), parallel=2)
    assert report.finished and report.readers == 5 and report.pages == 3
    assert len(queued) == 3  # after the first two pages, and once at the end
    found = rows(session, article.id)
    assert sorted(found) == [reader.id for reader in readers] and daily.id not in found
    assert {row.status for row in found.values()} == {DeliveryStatus.PENDING}
    session.refresh(article)
    assert article.fanned_out_at is not None and article.fanout_token is None
    # Done is done: a second fan-out (a duplicate task) writes and queues nothing.
    assert not fanout.fan_out(session, article.id, POLICY, lambda: queued.append(1)).held
    assert len(queued) == 3


def test_an_urgent_article_is_owed_to_digest_readers_too(session: Session) -> None:
    daily = factories.subscriber(session, ["wipo"], frequency=Frequency.DAILY)
    article = factories.article(session, topics=["wipo"], urgent=True)
    fanout.fan_out(session, article.id, POLICY, lambda: None)
    assert list(rows(session, article.id)) == [daily.id]


def test_a_fan_out_that_died_resumes_after_its_last_page(
    session: Session, frozen_clock: Any
) -> None:
    readers = [factories.subscriber(session, ["wipo"]) for _ in range(5)]
    article = factories.article(session, topics=["wipo"])
    # A fan-out task that wrote the first page and died: its lease and cursor remain.
    session.execute(
        update(Article)
        .where(Article.id == article.id)
        .values(fanout_token="dead", fanout_claimed_at=now(), fanout_after=readers[1].id)
    )
    ledger.write_pending(session, article.id, [readers[0].id, readers[1].id])
    session.commit()
    assert not fanout.fan_out(session, article.id, POLICY, lambda: None).held  # still leased
    frozen_clock.advance(POLICY.stale_after + timedelta(seconds=1))
    report = fanout.fan_out(session, article.id, POLICY, lambda: None)
    assert report.finished and report.readers == 3  # only the pages after the cursor
    assert sorted(rows(session, article.id)) == [reader.id for reader in readers]


# --- claims and outcomes --------------------------------------------------------------------


def test_a_claim_is_taken_once_and_skips_readers_who_left(session: Session) -> None:
    active = [factories.subscriber(session) for _ in range(3)]
    article = published(session)
    gone = active.pop(1)
    gone.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    first = ledger.claim_next(session, article.id, POLICY)
    assert first.subscriber_ids == [active[0].id]  # a batch of 2: one left, one skipped
    second = ledger.claim_next(session, article.id, POLICY)
    assert second.subscriber_ids == [active[1].id]
    assert ledger.claim_next(session, article.id, POLICY).subscriber_ids == []
    assert rows(session, article.id)[gone.id].status is DeliveryStatus.SKIPPED


def test_a_dead_tasks_claim_is_taken_over_once_stale(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    article = published(session)
    assert ledger.claim_next(session, article.id, POLICY).subscriber_ids == [reader.id]
    assert ledger.claim_next(session, article.id, POLICY).subscriber_ids == []
    frozen_clock.advance(POLICY.stale_after + timedelta(seconds=1))
    assert ledger.claim_next(session, article.id, POLICY).subscriber_ids == [reader.id]


def test_a_drain_sends_each_reader_once_even_when_run_twice(session: Session) -> None:
    readers = [factories.subscriber(session) for _ in range(5)]
    article = published(session)
    mailer = FakeMailer()
    first = drain(session, article, mailer)
    second = drain(session, article, mailer)
    assert first.outcome.sent == 5 and second.outcome.sent == 0
    assert sorted(mailer.sent) == sorted(reader.email for reader in readers)
    found = rows(session, article.id)
    assert {row.status for row in found.values()} == {DeliveryStatus.SENT}
    assert {row.attempts for row in found.values()} == {1}
    assert first.again_in(POLICY) is None


def test_a_permanent_refusal_bounces_that_reader_only(session: Session) -> None:
    _good, bad, _also_good = (factories.subscriber(session) for _ in range(3))
    article = published(session)
    mailer = FakeMailer({bad.email: 550})
    result = drain(session, article, mailer)
    assert (result.outcome.sent, result.outcome.bounced) == (2, 1)
    session.refresh(bad)
    assert bad.status is SubscriberStatus.BOUNCED
    assert bad.unsubscribe_reason == "bounced: 550 no"
    assert rows(session, article.id)[bad.id].status is DeliveryStatus.BOUNCED


def test_a_temporary_refusal_backs_off_and_fails_only_past_the_horizon(
    session: Session, frozen_clock: Any
) -> None:
    reader, other = factories.subscriber(session), factories.subscriber(session)
    article = published(session)
    mailer = FakeMailer({reader.email: 451})
    started = now()
    result = drain(session, article, mailer)
    assert (result.outcome.sent, result.outcome.deferred) == (1, 1)
    row = rows(session, article.id)[reader.id]
    assert row.status is DeliveryStatus.PENDING and row.attempts == 1
    assert row.next_attempt_at == started + timedelta(seconds=10)
    assert row.retry_until == started + POLICY.horizon
    assert result.again_in(POLICY) == 10  # soon: the task comes back itself
    # Not due yet: nothing is tried.
    assert drain(session, article, mailer).outcome.deferred == 0
    waits = []
    while rows(session, article.id)[reader.id].status is DeliveryStatus.PENDING:
        due = rows(session, article.id)[reader.id].next_attempt_at
        assert due is not None
        waits.append(round((due - now()).total_seconds()))
        frozen_clock(due)
        drain(session, article, mailer)
    assert waits[:5] == [10, 20, 40, 80, 100]  # doubling, capped at backoff_max
    row = rows(session, article.id)[reader.id]
    assert row.status is DeliveryStatus.FAILED and now() >= started + POLICY.horizon
    assert mailer.sent == [other.email]
    # A reply about the address that outlived the horizon is a soft bounce.
    assert session.scalar(select(func.count()).select_from(SoftBounce)) == 1


def test_a_refusal_of_the_message_not_the_address_is_no_soft_bounce(
    session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    article = published(session)

    class RefusesPolicy(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            return smtp.Rejection(451, "4.7.1 try later", recipient=False)

    for _ in range(20):
        drain(session, article, RefusesPolicy())
        frozen_clock.advance(timedelta(minutes=10))
    assert rows(session, article.id)[reader.id].status is DeliveryStatus.FAILED
    assert session.scalar(select(func.count()).select_from(SoftBounce)) == 0


def test_no_data_leaves_before_every_earlier_outcome_is_committed(
    session: Session, database_url: str
) -> None:
    """The courier opens the next envelope while an outcome is committed, but a message's
    data goes only once the outcomes before it are in the database: a crash can repeat at
    most the one message in flight. Checked from another connection, at each DATA."""
    readers = [factories.subscriber(session) for _ in range(6)]
    readers[2].email = "refused@example.org"
    session.commit()
    article = published(session)
    seen: list[tuple[str, int]] = []

    class Auditor(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            with Session(session.get_bind()) as other:
                done = other.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.article_id == article.id,
                        Delivery.status != DeliveryStatus.PENDING,
                    )
                )
            seen.append((str(self.recipient), int(done or 0)))
            return super().data(message)

    mailer = Auditor({"refused@example.org": 550})
    policy = RetryPolicy(**{**POLICY.__dict__, "batch_size": 10})
    batches.drain_alerts(session, SETTINGS, policy, article.id, connect_to(mailer))
    # Each DATA saw every earlier reader's outcome committed (the refused one included).
    assert [done for _address, done in seen] == [0, 1, 3, 4, 5]
    assert len(mailer.sent) == 5


def test_a_sent_alert_is_recorded_in_the_transaction_open_or_in_one_of_its_own(
    session: Session,
) -> None:
    """On PostgreSQL the record of a sent alert is its own transaction when none is open (one
    round trip, not BEGIN, UPDATE and COMMIT); in an open one (a capped reader's count, under
    its lock) it commits or rolls back with it. On SQLite the caller's commit keeps it."""
    readers = [factories.subscriber(session) for _ in range(2)]
    article = published(session)
    claim = ledger.claim_next(session, article.id, POLICY)
    alone, held = claim.subscriber_ids

    ledger.record_sent(session, claim.token, article.id, alone, 0)
    session.rollback()
    postgresql = session.get_bind().dialect.name == "postgresql"
    expected = DeliveryStatus.SENT if postgresql else DeliveryStatus.PENDING
    assert rows(session, article.id)[alone].status is expected

    session.execute(select(Subscriber.id).where(Subscriber.id == held))  # a transaction open
    ledger.record_sent(session, claim.token, article.id, held, 0)
    session.rollback()
    assert rows(session, article.id)[held].status is DeliveryStatus.PENDING
    ledger.record_sent(session, claim.token, article.id, held, 0)
    session.commit()
    assert rows(session, article.id)[held].status is DeliveryStatus.SENT
    assert {reader.id for reader in readers} == {alone, held}


def test_a_drop_after_the_data_defers_that_reader_and_sends_the_rest(session: Session) -> None:
    first, second, third = (factories.subscriber(session) for _ in range(3))
    article = published(session)
    mailer = FakeMailer({second.email: ("drop", smtplib.SMTPServerDisconnected("gone"))})
    result = drain(session, article, mailer)
    # A new connection for the rest of the batch; the one in flight may have arrived, so it
    # waits for a backoff of its own (a message that breaks connections cannot stall all).
    assert mailer.sent == [first.email, third.email]
    assert (result.outcome.sent, result.outcome.dropped, result.outcome.deferred) == (2, 1, 1)
    found = rows(session, article.id)
    assert found[second.id].status is DeliveryStatus.PENDING and found[second.id].attempts == 1
    assert found[second.id].next_attempt_at is not None
    session.refresh(second)
    assert second.status is SubscriberStatus.ACTIVE


def test_a_drop_before_the_data_charges_nobody(session: Session) -> None:
    readers = [factories.subscriber(session) for _ in range(3)]
    article = published(session)
    mailer = FakeMailer({readers[1].email: smtplib.SMTPServerDisconnected("gone")})
    calls = {"n": 0}

    @contextmanager
    def flaky(_settings: smtp.SmtpSettings) -> Iterator[FakeMailer]:
        calls["n"] += 1
        if calls["n"] > 1:
            mailer.answers.clear()  # the relay is fine again on the next connection
        yield mailer

    result = batches.drain_alerts(session, SETTINGS, POLICY, article.id, flaky)
    assert result.outcome.sent == 3 and result.outcome.deferred == 0
    assert {row.attempts for row in rows(session, article.id).values()} == {1}


def test_an_unreachable_relay_opens_the_breaker_and_charges_nobody(
    session: Session, frozen_clock: Any
) -> None:
    readers = [factories.subscriber(session) for _ in range(3)]
    article = published(session)
    result = batches.drain_alerts(session, SETTINGS, POLICY, article.id, unreachable)
    assert result.outcome.sent == 0 and result.outcome.relay_down_until == now() + timedelta(
        seconds=5
    )
    assert result.again_in(POLICY) == 5
    found = rows(session, article.id)
    assert all(row.status is DeliveryStatus.PENDING for row in found.values())
    assert all(row.attempts == 0 and row.claim_token is None for row in found.values())
    state = session.get(RelayStatus, "127.0.0.1:1")
    assert state is not None and state.failures == 1 and state.down_since == now()
    # While it is open, no batch starts (not even a probe).
    mailer = FakeMailer()
    assert drain(session, article, mailer).outcome.sent == 0 and mailer.sent == []
    # A failed probe doubles the wait.
    frozen_clock.advance(timedelta(seconds=5))
    again = batches.drain_alerts(session, SETTINGS, POLICY, article.id, unreachable)
    assert again.outcome.relay_down_until == now() + timedelta(seconds=10)
    # Back: the probe sends everything and closes the breaker.
    frozen_clock.advance(timedelta(seconds=10))
    assert drain(session, article, mailer).outcome.sent == 3
    assert sorted(mailer.sent) == sorted(reader.email for reader in readers)
    session.expire_all()
    assert relay.down_until(session, "127.0.0.1:1") is None
    state = session.get(RelayStatus, "127.0.0.1:1")
    assert state is not None and state.failures == 0 and state.down_since is None
    assert session.scalar(select(func.count()).select_from(SoftBounce)) == 0


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPSenderRefused(550, b"sender not allowed", "alerts@example.org"),
        smtplib.SMTPResponseException(421, b"closing channel"),
    ],
)
def test_the_relay_refusing_us_is_an_outage_not_a_bounce(
    session: Session, error: Exception
) -> None:
    reader = factories.subscriber(session)
    article = published(session)
    result = drain(session, article, FakeMailer({reader.email: error}))
    assert result.outcome.relay_down_until is not None
    row = rows(session, article.id)[reader.id]
    assert row.status is DeliveryStatus.PENDING and row.attempts == 0
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE


def test_a_task_slice_hands_over_to_a_fresh_task(session: Session) -> None:
    for _ in range(3):
        factories.subscriber(session)
    article = published(session)
    quick = RetryPolicy(**{**POLICY.__dict__, "task_slice": 0.0})
    result = batches.drain_alerts(session, SETTINGS, quick, article.id, connect_to(FakeMailer()))
    assert result.more and result.outcome.sent == 2 and result.again_in(quick) == 0


def test_the_alert_email_has_list_headers_and_why(session: Session) -> None:

    factories.subscriber(session, ["venues"])
    article = published(session, title="Line one\r\nBcc: x@evil.test <script>")
    messages: list[bytes] = []

    class Recorder(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            messages.append(message)
            return None

    drain(session, article, Recorder())
    [raw] = messages
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Line one Bcc: x@evil.test <script>"
    assert parsed["Bcc"] is None
    assert parsed["List-Unsubscribe"].startswith("<https://alerts.example.org/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "IP Policy Watch news alerts <news-alerts.alerts.example.org>"
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert 'You get this because you follow "Venues"' in text
    assert "/manage/" in text and "/unsubscribe/" in text
    assert "Monika Ermert" in text


def test_a_slow_relay_never_lets_a_second_task_take_over(
    session: Session, database_url: str
) -> None:
    """The heartbeat renews the lease while one message waits on the relay for longer than
    the stale limit: a second task finds nothing to take, and nobody gets two copies."""
    import time

    readers = [factories.subscriber(session) for _ in range(2)]
    article = published(session)
    short = RetryPolicy(**{**POLICY.__dict__, "stale_after": timedelta(seconds=0.6)})
    taken: list[list[int]] = []

    class SlowMailer(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            if self.recipient == readers[0].email:
                time.sleep(1.5)  # more than twice the stale limit
                with Session(session.get_bind()) as other:
                    taken.append(ledger.claim_next(other, article.id, short).subscriber_ids)
            return super().data(message)

    mailer = SlowMailer()
    result = batches.drain_alerts(session, SETTINGS, short, article.id, connect_to(mailer))
    assert taken == [[]]
    assert result.outcome.sent == 2 and sorted(mailer.sent) == sorted(r.email for r in readers)


def test_a_lease_taken_over_or_not_renewed_in_time_stays_lost(session: Session) -> None:
    """A renewal that finds the rows taken over ends the lease; so do renewals failing for
    half the stale limit, for good: a task that waited out a database outage must not go on
    sending rows another task took meanwhile once its renewals succeed again."""
    import time

    from sqlalchemy.exc import OperationalError

    from alerts.sending.lease import Lease

    engine = session.get_bind().engine  # type: ignore[union-attr]
    answers: list[Any] = [3, 2, 0, 5]

    def renew(_other: Session) -> int:
        answer = answers.pop(0) if answers else 5
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    with Lease(engine, renew, every=0.02, stale_after=10) as taken_over:
        time.sleep(0.3)
        assert taken_over.lost
    down = OperationalError("UPDATE", {}, Exception("server closed the connection"))
    answers[:] = [down] * 15  # about 0.3 s of failures, past half of 0.4 s
    with Lease(engine, renew, every=0.02, stale_after=0.4) as outage:
        time.sleep(0.3)
        assert outage.lost
        time.sleep(0.3)  # renewals succeed again
        assert outage.lost
    answers[:] = []
    with Lease(engine, renew, every=0.02, stale_after=0.4) as healthy:
        time.sleep(0.5)
        assert not healthy.lost


def test_the_heartbeat_never_shares_the_send_tasks_connection(
    session: Session, monkeypatch: Any
) -> None:
    """A send task keeps one connection for its per-email commits; the lease's heartbeat
    runs in another thread and must renew on a connection of its own, or its commit would
    land in the middle of the task's transaction."""
    import time

    factories.subscriber(session)
    article = published(session)
    # Heartbeats every 0.5 s; the lease is lost only after 1.5 s without one (a loaded
    # machine can hold a thread back a few hundred milliseconds).
    quick = RetryPolicy(**{**POLICY.__dict__, "stale_after": timedelta(seconds=3)})
    renewed_on: list[int] = []
    real_renew = ledger.renew

    def spy(other: Session, token: str, article_id: int) -> int:
        renewed_on.append(id(other.connection().connection.dbapi_connection))
        return real_renew(other, token, article_id)

    monkeypatch.setattr(ledger, "renew", spy)

    class SlowMailer(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            time.sleep(1.2)  # a couple of heartbeats
            return super().data(message)

    engine = session.get_bind()
    with engine.connect() as connection:  # type: ignore[union-attr]
        task_session = Session(bind=connection, expire_on_commit=False)
        task_connection = id(task_session.connection().connection.dbapi_connection)
        task_session.commit()
        drained = batches.drain_alerts(
            task_session, SETTINGS, quick, article.id, connect_to(SlowMailer())
        )
        task_session.close()
    assert drained.outcome.sent == 1
    assert renewed_on and task_connection not in renewed_on


# --- suppression ------------------------------------------------------------------------------


def test_three_soft_bounces_in_14_days_suppress(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    assert not suppression.soft_bounce(session, reader.id, "452 mailbox full")
    frozen_clock.advance(timedelta(days=10))
    assert not suppression.soft_bounce(session, reader.id, "452 mailbox full")
    frozen_clock(now() + timedelta(days=5))  # the first is now 15 days old
    assert not suppression.soft_bounce(session, reader.id, "452 mailbox full")
    session.commit()
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE
    assert suppression.soft_bounce(session, reader.id, "452 mailbox full")
    session.commit()
    session.refresh(reader)
    assert reader.status is SubscriberStatus.BOUNCED
    assert reader.unsubscribe_reason == "bounced: 3 soft bounces in 14 days: 452 mailbox full"
    assert reader.suppressed_at == now()


# --- the reconciler ---------------------------------------------------------------------------


def test_the_reconciler_finds_what_is_owed_and_nobody_holds(
    session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    never_fanned_out = factories.article(session, topics=["wipo"])
    half_sent = published(session)
    ledger.claim_next(session, half_sent.id, POLICY)  # a task took it and died
    # Freshly queued work is left to its task.
    assert reconcile.owed(session, POLICY).total == 0
    frozen_clock.advance(POLICY.stale_after + timedelta(seconds=1))
    found = reconcile.owed(session, POLICY)
    assert found.fanouts == [never_fanned_out.id] and found.alerts == [half_sent.id]
    session.commit()
    # Marked queued: the next pass leaves them to the tasks it just queued.
    assert reconcile.owed(session, POLICY).total == 0
    mailer = FakeMailer()
    drain(session, half_sent, mailer)
    assert mailer.sent == [reader.email]
    frozen_clock.advance(POLICY.stale_after + timedelta(seconds=1))
    assert reconcile.owed(session, POLICY).alerts == []


def test_the_reconciler_waits_for_a_retry_to_fall_due(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    article = published(session)
    drain(session, article, FakeMailer({reader.email: 451}))
    frozen_clock.advance(timedelta(seconds=5))
    assert reconcile.owed(session, POLICY).alerts == []
    frozen_clock.advance(POLICY.requeue_after)
    assert reconcile.owed(session, POLICY).alerts == [article.id]


def test_articles_a_feed_held_before_its_first_poll_are_owed_to_nobody(
    session: Session, frozen_clock: Any
) -> None:
    factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    articles.alert_nobody(session, article.id)
    session.commit()
    frozen_clock.advance(timedelta(hours=1))
    assert reconcile.owed(session, POLICY).total == 0


# --- queueing after commit ---------------------------------------------------------------------


class RecordingTask:
    name = "test.task"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def apply_async(self, args: tuple[Any, ...], countdown: float | None = None) -> None:
        if self.fail:
            raise ConnectionRefusedError("the broker is down")
        self.calls.append(args)


def test_tasks_are_queued_only_after_commit(session: Session) -> None:
    task = RecordingTask()
    db.queue_after_commit(session, task, 1)
    session.execute(select(1))
    assert task.calls == []
    session.commit()
    assert task.calls == [(1,)]
    session.commit()
    assert task.calls == [(1,)]  # once


def test_a_rolled_back_transaction_queues_nothing(session: Session) -> None:
    task = RecordingTask()
    session.execute(select(1))
    db.queue_after_commit(session, task, 1)
    session.rollback()
    session.commit()
    assert task.calls == []


def test_a_broker_that_is_down_never_fails_the_commit(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    article.title = "Changed"
    db.queue_after_commit(session, RecordingTask(fail=True), article.id)
    session.commit()  # does not raise
    session.expire_all()
    assert session.get(Article, article.id).title == "Changed"  # type: ignore[union-attr]
    assert "could not queue test.task" in caplog.text


# --- digests through the same loop ---------------------------------------------------------


def digest_run(session: Session, *emails: str) -> int:
    readers = [
        factories.subscriber(
            session,
            ["wipo"],
            email=email,
            frequency=Frequency.DAILY,
            confirmed_at=now() - timedelta(days=1),
        )
        for email in emails
    ]
    for reader in readers:
        session.execute(
            update(DigestSchedule)
            .where(DigestSchedule.subscriber_id == reader.id)
            .values(last_sent_at=now() - timedelta(days=1))
        )
    article = factories.article(session, published_at=now(), topics=["wipo"])
    articles.alert_nobody(session, article.id)
    run, _ = digests.trigger(session, Frequency.DAILY, "", "test")
    session.commit()
    return run.id


def drain_run(session: Session, run_id: int, connect: Any) -> batches.Drain:
    return batches.drain_digests(session, SETTINGS, POLICY, run_id, connect)


def recipients(session: Session, run_id: int) -> dict[str, DigestRecipient]:
    session.expire_all()
    return {
        email: row
        for row, email in session.execute(
            select(DigestRecipient, Subscriber.email)
            .join(Subscriber, Subscriber.id == DigestRecipient.subscriber_id)
            .where(DigestRecipient.run_id == run_id)
        )
    }


def test_a_digest_refused_for_now_is_retried_alone_and_sent_once(
    session: Session, frozen_clock: Any
) -> None:
    run_id = digest_run(session, "steady@example.org", "full@example.org", "gone@example.org")
    mailer = FakeMailer({"full@example.org": 452, "gone@example.org": 550})
    first = drain_run(session, run_id, connect_to(mailer))
    assert (first.outcome.sent, first.outcome.deferred, first.outcome.bounced) == (1, 1, 1)
    rows_now = recipients(session, run_id)
    assert rows_now["full@example.org"].status is RecipientStatus.QUEUED
    assert rows_now["full@example.org"].next_attempt_at == now() + timedelta(seconds=10)
    assert rows_now["gone@example.org"].status is RecipientStatus.FAILED
    # Its articles wait for it: no other digest or alert takes them meanwhile.
    assert drain_run(session, run_id, connect_to(mailer)).outcome.sent == 0
    mailer.answers.pop("full@example.org")
    frozen_clock.advance(timedelta(seconds=10))
    again = drain_run(session, run_id, connect_to(mailer))
    assert again.outcome.sent == 1
    assert sorted(mailer.sent) == ["full@example.org", "steady@example.org"]
    rows_now = recipients(session, run_id)
    assert rows_now["full@example.org"].status is RecipientStatus.SENT
    assert rows_now["full@example.org"].attempts == 2
    session.refresh(session.get(DigestRun, run_id))  # type: ignore[arg-type]
    assert session.get(DigestRun, run_id).finished_at is not None  # type: ignore[union-attr]


def test_a_digest_run_waits_out_a_relay_outage_without_charging_anyone(
    session: Session, frozen_clock: Any
) -> None:
    run_id = digest_run(session, "one@example.org", "two@example.org")
    down = drain_run(session, run_id, unreachable)
    assert down.outcome.relay_down_until is not None and down.outcome.sent == 0
    rows_now = recipients(session, run_id)
    assert {row.status for row in rows_now.values()} == {RecipientStatus.QUEUED}
    assert {row.attempts for row in rows_now.values()} == {0}
    assert {row.claim_token for row in rows_now.values()} == {None}
    frozen_clock(down.outcome.relay_down_until)
    mailer = FakeMailer()
    assert drain_run(session, run_id, connect_to(mailer)).outcome.sent == 2
    assert sorted(mailer.sent) == ["one@example.org", "two@example.org"]
    # Each article went once, in this run's ledger rows.
    statuses = set(session.scalars(select(Delivery.status).where(Delivery.digest_run_id == run_id)))
    assert statuses == {DeliveryStatus.SENT}


def test_a_released_savepoint_queues_nothing_until_the_commit(session: Session) -> None:
    task = RecordingTask()
    session.execute(select(1))
    db.queue_after_commit(session, task, 1)
    with session.begin_nested():
        session.execute(select(1))
    assert task.calls == []
    session.commit()
    assert task.calls == [(1,)]


def _owner_of(raw: bytes) -> int:
    """The reader id in a message's one-click unsubscribe link."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    link = str(parsed["List-Unsubscribe"]).strip("<>").rsplit("/", 1)[1]
    return int(tokens.read(SETTINGS.secret_key, tokens.Purpose.UNSUBSCRIBE, link, 60)["s"])


def test_each_message_prepared_ahead_is_its_own_readers(session: Session, monkeypatch: Any) -> None:
    """The next reader's alert is rendered while the relay reads the previous one: each
    message still goes to its reader, with their links, their language, once."""
    prepared: list[int] = []
    real = batches.AlertOutbox.prepare

    def spy(self: batches.AlertOutbox, key: int) -> None:
        real(self, key)
        prepared.extend([key] if key in self.ready else [])

    monkeypatch.setattr(batches.AlertOutbox, "prepare", spy)
    readers = [factories.subscriber(session, locale=locale) for locale in ("en", "fr", "es")]
    readers.append(factories.subscriber(session))
    readers[-1].daily_cap = 5  # counted when its turn comes: never prepared ahead
    session.commit()
    article = published(session)
    sent: list[tuple[str, bytes]] = []

    class Recorder(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            sent.append((str(self.recipient), message))
            return super().data(message)

    one_batch = RetryPolicy(**{**POLICY.__dict__, "batch_size": 10})
    drained = batches.drain_alerts(session, SETTINGS, one_batch, article.id, connect_to(Recorder()))
    assert drained.outcome.sent == 4
    by_address = {reader.email: reader for reader in readers}
    assert sorted(address for address, _ in sent) == sorted(by_address)
    for address, raw in sent:
        reader = by_address[address]
        assert _owner_of(raw) == reader.id
        assert f"To: {address}".encode() in raw
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f'<html lang="{reader.locale}"' in html  # in the reader's own language
    assert prepared == [readers[1].id, readers[2].id]  # the first goes alone; capped ones wait
    assert {row.status for row in rows(session, article.id).values()} == {DeliveryStatus.SENT}


def test_a_message_that_fails_to_prepare_is_composed_in_its_turn(
    session: Session, monkeypatch: Any
) -> None:
    """Preparing ahead runs between a message's data and its answer, where nothing may go
    wrong: a failure there is dropped, and the reader's alert is made again in turn."""
    readers = [factories.subscriber(session) for _ in range(3)]
    article = published(session)
    monkeypatch.setattr(batches.AlertOutbox, "prepare", lambda self, key: 1 / 0, raising=True)
    mailer = FakeMailer()
    outcome = drain(session, article, mailer).outcome
    assert (outcome.sent, outcome.dropped) == (3, 0)
    assert sorted(mailer.sent) == sorted(reader.email for reader in readers)


def test_nothing_is_prepared_after_a_rollback(session: Session, monkeypatch: Any) -> None:
    """A connection that broke mid-message rolls the session back and expires the batch's
    readers: from then on each message is composed in its turn (preparing would read them
    again between a message's data and its answer), and what was prepared is dropped."""
    readers = [factories.subscriber(session) for _ in range(4)]
    article = published(session)
    prepared: list[int] = []
    real = batches.AlertOutbox.prepare

    def spy(self: batches.AlertOutbox, key: int) -> None:
        prepared.append(key)
        real(self, key)

    monkeypatch.setattr(batches.AlertOutbox, "prepare", spy)
    sent: list[tuple[str, bytes]] = []

    class Recorder(FakeMailer):
        def data(self, message: bytes) -> smtp.Rejection | None:
            sent.append((str(self.recipient), message))
            return super().data(message)

    mailer = Recorder({readers[1].email: ("drop", ConnectionResetError("gone"))})
    one_batch = RetryPolicy(**{**POLICY.__dict__, "batch_size": 10})
    drained = batches.drain_alerts(session, SETTINGS, one_batch, article.id, connect_to(mailer))
    assert (drained.outcome.sent, drained.outcome.dropped) == (3, 1)
    assert prepared == [readers[1].id, readers[2].id]  # none after the rollback
    assert {address: _owner_of(raw) for address, raw in sent} == {
        reader.email: reader.id for reader in readers
    }


def test_a_send_task_holds_one_connection(app: Any) -> None:
    """A send task keeps one connection for its per-email commits, on SQLite and PostgreSQL
    (a connection the server drops is replaced by `db.outlasting_lost_connections`; see
    tests/test_lost_database.py), apart from the request's session."""
    from sqlalchemy.engine import Connection

    with app.app_context(), db.sending_session() as task_session:
        bind = task_session.get_bind()
        assert isinstance(bind, Connection)
        assert task_session is not db.session()
        first = bind.connection.dbapi_connection
        task_session.commit()
        task_session.execute(select(func.count()).select_from(Subscriber))
        assert bind.connection.dbapi_connection is first
