"""Sending a batch of alerts: claim in the ledger, send over one connection, record each outcome.

Temporary trouble (a 4xx reply, a dropped connection) is retried per recipient with
exponential backoff; a 5xx reply bounces that recipient only. One bad recipient never fails
or repeats the others of its batch.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import matching
from alerts.mail import emails, ledger, message, smtp
from alerts.models import Article, Subscriber

Connect = Callable[[smtp.SmtpSettings], AbstractContextManager[smtp.Mailer]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff: float = 30.0  # seconds before the first retry; doubles each time
    backoff_max: float = 3600.0
    stale_after: timedelta = timedelta(minutes=15)

    def delay(self, attempt: int) -> float:
        return min(self.backoff * 2 ** max(attempt - 1, 0), self.backoff_max)


@dataclass
class BatchReport:
    sent: list[int] = field(default_factory=list)
    bounced: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    retry_delay: float = 0.0


def deliver_alerts(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    article_id: int,
    subscriber_ids: Collection[int],
    connect: Connect = smtp.connect,
) -> BatchReport:
    report = BatchReport()
    article = session.get(Article, article_id)
    if article is None:
        return report
    claim = ledger.claim(session, article_id, subscriber_ids, policy.stale_after)
    if claim.held_elsewhere:
        # Another run holds some of these; if it died, its claims go stale: look again then.
        report.retry = sorted(set(subscriber_ids) - set(claim.subscriber_ids))
        report.retry_delay = policy.stale_after.total_seconds()
    if not claim.subscriber_ids:
        return report

    scope = matching.scope(session, article)
    readers = {
        reader.id: reader
        for reader in session.scalars(
            select(Subscriber).where(Subscriber.id.in_(claim.subscriber_ids))
        )
    }
    why = matching.matched_topics(session, scope, claim.subscriber_ids)
    tries = ledger.attempts(session, article_id, claim.subscriber_ids)
    sender = message.envelope_sender(settings.mail_from)
    remaining = list(claim.subscriber_ids)

    def temporary(subscriber_id: int, error: str) -> None:
        if tries.get(subscriber_id, 1) >= policy.max_attempts:
            ledger.mark_failed(session, claim.token, article_id, subscriber_id, error)
            report.failed.append(subscriber_id)
        else:
            ledger.release_for_retry(session, claim.token, article_id, subscriber_id, error)
            report.retry.append(subscriber_id)
            report.retry_delay = max(report.retry_delay, policy.delay(tries.get(subscriber_id, 1)))

    try:
        with connect(settings.smtp) as mailer:
            while remaining:
                subscriber_id = remaining[0]
                reader = readers[subscriber_id]
                raw = emails.alert(settings, article, reader, why.get(subscriber_id))
                rejection = mailer.send(raw, sender, reader.email)
                if rejection is None:
                    ledger.mark_sent(session, claim.token, article_id, [subscriber_id])
                    report.sent.append(subscriber_id)
                elif rejection.permanent:
                    error = f"{rejection.code} {rejection.message}"
                    ledger.mark_bounced(session, claim.token, article_id, subscriber_id, error)
                    report.bounced.append(subscriber_id)
                else:
                    temporary(subscriber_id, f"{rejection.code} {rejection.message}")
                # Recorded before the next send: a crash now repeats nothing already sent.
                session.commit()
                remaining.pop(0)
    except (OSError, smtplib.SMTPException) as error:
        session.rollback()
        for subscriber_id in remaining:
            temporary(subscriber_id, f"{type(error).__name__}: {error}")
        session.commit()
    return report
