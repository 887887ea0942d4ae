"""The send ledger and the batch sender: claims, outcomes, retries, never twice."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.mail import delivery, emails, ledger, smtp
from alerts.models import Delivery, DeliveryStatus, SubscriberStatus

import factories

STALE = timedelta(minutes=15)
SETTINGS = emails.MailSettings(
    base_url="https://alerts.example.org",
    mail_from="News <alerts@example.org>",
    site_name="IP Policy Watch",
    secret_key="k",
    confirm_max_age=3600,
    smtp=smtp.SmtpSettings("127.0.0.1", 1, "none"),
)
POLICY = delivery.RetryPolicy(max_attempts=3, backoff=10, backoff_max=100, stale_after=STALE)


class FakeMailer:
    """Stands in for the SMTP connection in these unit tests; answers per address."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[str] = []

    def send(self, message: bytes, sender: str, recipient: str) -> smtp.Rejection | None:
        answer = self.answers.get(recipient)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return smtp.Rejection(answer, "no")
        self.sent.append(recipient)
        return None


def connect_to(mailer: FakeMailer) -> Any:
    @contextmanager
    def connect(_settings: smtp.SmtpSettings) -> Iterator[FakeMailer]:
        yield mailer

    return connect


def statuses(session: Session, article_id: int) -> dict[int, DeliveryStatus]:
    session.expire_all()
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.status).where(Delivery.article_id == article_id)
    )
    return {subscriber_id: status for subscriber_id, status in rows}


def test_claim_is_taken_once(session: Session) -> None:
    readers = [factories.subscriber(session).id for _ in range(3)]
    article = factories.article(session, topics=["wipo"])
    first = ledger.claim(session, article.id, readers, STALE)
    second = ledger.claim(session, article.id, readers, STALE)
    assert first.subscriber_ids == readers
    assert second.subscriber_ids == [] and second.held_elsewhere == 3


def test_claim_skips_readers_who_left(session: Session) -> None:
    active = factories.subscriber(session)
    gone = factories.subscriber(session, status=SubscriberStatus.UNSUBSCRIBED)
    article = factories.article(session, topics=["wipo"])
    assert ledger.claim(session, article.id, [active.id, gone.id], STALE).subscriber_ids == [
        active.id
    ]


def test_stale_claim_is_taken_over(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    ledger.claim(session, article.id, [reader.id], STALE)
    frozen_clock(now() + STALE + timedelta(seconds=1))
    assert ledger.claim(session, article.id, [reader.id], STALE).subscriber_ids == [reader.id]


def test_batch_sends_each_reader_once_even_when_run_twice(session: Session) -> None:
    readers = [factories.subscriber(session) for _ in range(3)]
    article = factories.article(session, topics=["wipo"])
    mailer = FakeMailer()
    ids = [reader.id for reader in readers]
    first = delivery.deliver_alerts(session, SETTINGS, POLICY, article.id, ids, connect_to(mailer))
    second = delivery.deliver_alerts(session, SETTINGS, POLICY, article.id, ids, connect_to(mailer))
    assert first.sent == ids and second.sent == []
    assert sorted(mailer.sent) == sorted(reader.email for reader in readers)
    assert set(statuses(session, article.id).values()) == {DeliveryStatus.SENT}


def test_permanent_refusal_bounces_that_reader_only(session: Session) -> None:
    good, bad, also_good = (factories.subscriber(session) for _ in range(3))
    article = factories.article(session, topics=["wipo"])
    mailer = FakeMailer({bad.email: 550})
    report = delivery.deliver_alerts(
        session, SETTINGS, POLICY, article.id, [good.id, bad.id, also_good.id], connect_to(mailer)
    )
    assert report.sent == [good.id, also_good.id] and report.bounced == [bad.id]
    assert report.retry == []
    session.refresh(bad)
    assert bad.status is SubscriberStatus.BOUNCED
    assert bad.unsubscribe_reason == "bounced: 550 no"
    assert statuses(session, article.id)[bad.id] is DeliveryStatus.BOUNCED


def test_temporary_refusal_is_retried_with_backoff_then_fails(session: Session) -> None:
    reader, other = factories.subscriber(session), factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    mailer = FakeMailer({reader.email: 451})
    delays = []
    for _attempt in range(3):
        report = delivery.deliver_alerts(
            session, SETTINGS, POLICY, article.id, [reader.id, other.id], connect_to(mailer)
        )
        delays.append(report.retry_delay)
    assert delays == [10, 20, 0]  # third attempt is the last: failed, nothing more to retry
    assert report.failed == [reader.id]
    assert mailer.sent == [other.email]
    assert statuses(session, article.id) == {
        reader.id: DeliveryStatus.FAILED,
        other.id: DeliveryStatus.SENT,
    }


def test_dropped_connection_retries_only_the_unsent(session: Session) -> None:
    first, second, third = (factories.subscriber(session) for _ in range(3))
    article = factories.article(session, topics=["wipo"])
    mailer = FakeMailer({second.email: smtplib.SMTPServerDisconnected("gone")})
    report = delivery.deliver_alerts(
        session, SETTINGS, POLICY, article.id, [first.id, second.id, third.id], connect_to(mailer)
    )
    assert report.sent == [first.id]
    assert report.retry == [second.id, third.id] and report.retry_delay == 10
    mailer.answers.clear()
    again = delivery.deliver_alerts(
        session, SETTINGS, POLICY, article.id, report.retry, connect_to(mailer)
    )
    assert again.sent == [second.id, third.id]
    assert mailer.sent == [first.email, second.email, third.email]


def test_unreachable_server_leaves_everything_to_retry(session: Session) -> None:
    reader = factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])

    @contextmanager
    def refuse(_settings: smtp.SmtpSettings) -> Iterator[FakeMailer]:
        raise ConnectionRefusedError("no server")
        yield FakeMailer()  # pragma: no cover

    report = delivery.deliver_alerts(session, SETTINGS, POLICY, article.id, [reader.id], refuse)
    assert report.retry == [reader.id] and report.sent == []
    assert statuses(session, article.id)[reader.id] is DeliveryStatus.CLAIMED


def test_alert_email_has_list_headers_and_why(session: Session) -> None:
    import email
    import email.policy

    reader = factories.subscriber(session, ["venues"])
    article = factories.article(
        session, topics=["wipo"], title="Line one\r\nBcc: x@evil.test <script>"
    )
    mailer_messages: list[bytes] = []

    class Recorder(FakeMailer):
        def send(self, message: bytes, sender: str, recipient: str) -> smtp.Rejection | None:
            mailer_messages.append(message)
            return None

    delivery.deliver_alerts(
        session, SETTINGS, POLICY, article.id, [reader.id], connect_to(Recorder())
    )
    [raw] = mailer_messages
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


def test_sweeper_finds_claims_nobody_finished(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    ledger.claim(session, article.id, [reader.id], STALE)
    assert ledger.stale_claims(session, now() - STALE) == []
    frozen_clock(now() + 2 * STALE)
    assert ledger.stale_claims(session, now() - STALE) == [(article.id, reader.id)]


def test_three_soft_bounces_in_14_days_suppress(session: Session, frozen_clock: Any) -> None:
    reader = factories.subscriber(session)
    assert not ledger.soft_bounce(session, reader.id, "452 mailbox full")
    frozen_clock(now() + timedelta(days=10))
    assert not ledger.soft_bounce(session, reader.id, "452 mailbox full")
    frozen_clock(now() + timedelta(days=5))  # the first is now 15 days old
    assert not ledger.soft_bounce(session, reader.id, "452 mailbox full")
    session.commit()
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE
    assert ledger.soft_bounce(session, reader.id, "452 mailbox full")
    session.commit()
    session.refresh(reader)
    assert reader.status is SubscriberStatus.BOUNCED
    assert reader.unsubscribe_reason == "bounced: 3 soft bounces in 14 days: 452 mailbox full"
    assert reader.suppressed_at == now()


def test_a_reader_failing_all_retries_gets_a_soft_bounce(session: Session) -> None:
    from alerts.models import SoftBounce

    reader = factories.subscriber(session)
    article = factories.article(session, topics=["wipo"])
    mailer = FakeMailer({reader.email: 451})
    for _ in range(3):
        delivery.deliver_alerts(
            session, SETTINGS, POLICY, article.id, [reader.id], connect_to(mailer)
        )
    assert session.scalar(select(func.count()).select_from(SoftBounce)) == 1


def test_a_batch_outliving_its_claims_stops_where_another_run_took_over(
    session: Session, frozen_clock: Any
) -> None:
    """A send so slow that the claims go stale: the run that takes them over sends the rest,
    and the slow run, renewing its claims, sees that and sends nobody twice."""
    readers = [factories.subscriber(session) for _ in range(3)]
    ids = [reader.id for reader in readers]
    article = factories.article(session, topics=["wipo"])
    sent: list[str] = []

    class SlowMailer(FakeMailer):
        def send(self, message: bytes, sender: str, recipient: str) -> smtp.Rejection | None:
            sent.append(recipient)
            if recipient == readers[0].email:
                frozen_clock(now() + STALE + timedelta(minutes=1))
                with Session(session.get_bind()) as other:
                    delivery.deliver_alerts(
                        other, SETTINGS, POLICY, article.id, ids, connect_to(FakeMailer())
                    )
            return None

    report = delivery.deliver_alerts(
        session, SETTINGS, POLICY, article.id, ids, connect_to(SlowMailer())
    )
    assert report.sent == [readers[0].id]
    assert sent == [readers[0].email]
    assert set(statuses(session, article.id).values()) == {DeliveryStatus.SENT}
