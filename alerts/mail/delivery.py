"""Sending a batch of alerts: claim in the ledger, send over one connection, record each outcome.

Temporary trouble (a 4xx reply, a dropped connection) is retried per recipient with
exponential backoff; a 5xx reply bounces that recipient only. One bad recipient never fails
or repeats the others of its batch.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alerts import matching
from alerts.clock import now
from alerts.mail import emails, ledger, message, smtp
from alerts.models import Article, DigestRecipient, Subscriber

Connect = Callable[[smtp.SmtpSettings], AbstractContextManager[smtp.Mailer]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff: float = 30.0  # seconds before the first retry; doubles each time
    backoff_max: float = 3600.0
    stale_after: timedelta = timedelta(minutes=15)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=int(config["SEND_MAX_ATTEMPTS"]),
            backoff=float(config["SEND_RETRY_BACKOFF"]),
            backoff_max=float(config["SEND_RETRY_BACKOFF_MAX"]),
            stale_after=timedelta(seconds=int(config["SEND_STALE_AFTER"])),
        )

    @property
    def renew_every(self) -> float:
        """Seconds between renewals of a batch's claims: well inside the stale limit."""
        return max(self.stale_after.total_seconds() / 3, 0.1)

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
    why = matching.reasons(session, scope, claim.subscriber_ids)
    tries = ledger.attempts(session, article_id, claim.subscriber_ids)
    sender = message.envelope_sender(settings.mail_from)
    remaining = list(claim.subscriber_ids)

    def temporary(subscriber_id: int, error: str, recipient: bool = False) -> None:
        """Retry later; after the last try, failed. Only a refusal of the address itself
        (not our sender, the message or the connection) counts towards suppression."""
        if tries.get(subscriber_id, 1) >= policy.max_attempts:
            ledger.mark_failed(session, claim.token, article_id, subscriber_id, error)
            if recipient:
                ledger.soft_bounce(session, subscriber_id, error)
            report.failed.append(subscriber_id)
        else:
            ledger.release_for_retry(session, claim.token, article_id, subscriber_id, error)
            report.retry.append(subscriber_id)
            report.retry_delay = max(report.retry_delay, policy.delay(tries.get(subscriber_id, 1)))

    renewed = now()
    try:
        with connect(settings.smtp) as mailer:
            while remaining:
                if (now() - renewed).total_seconds() > policy.renew_every:
                    held = ledger.renew(session, claim.token, article_id, remaining)
                    remaining = [reader_id for reader_id in remaining if reader_id in held]
                    renewed = now()
                    if not remaining:
                        break
                subscriber_id = remaining[0]
                reader = readers[subscriber_id]
                raw = emails.alert(settings, article, reader, why.get(subscriber_id))
                rejection = mailer.send(raw, sender, reader.email)
                if rejection is None:
                    ledger.mark_sent(session, claim.token, article_id, [subscriber_id])
                    report.sent.append(subscriber_id)
                elif rejection.permanent:
                    error = str(rejection)
                    ledger.mark_bounced(session, claim.token, article_id, subscriber_id, error)
                    report.bounced.append(subscriber_id)
                else:
                    temporary(
                        subscriber_id,
                        str(rejection),
                        recipient=rejection.recipient,
                    )
                # Recorded before the next send: a crash now repeats nothing already sent.
                session.commit()
                remaining.pop(0)
    except (OSError, smtplib.SMTPException) as error:
        session.rollback()
        for subscriber_id in remaining:
            temporary(subscriber_id, f"{type(error).__name__}: {error}")
        session.commit()
    return report


def deliver_digests(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    run_id: int,
    subscriber_ids: Collection[int],
    connect: Connect = smtp.connect,
    digest_renderer: emails.DigestRenderer | None = None,
) -> BatchReport:
    """Send one run's digests to these readers: each at most once, empty ones skipped.

    The batch is claimed at once (readers, then their articles in the ledger); each outcome
    is committed before the next email, so a crash repeats nothing that was sent.
    """
    from alerts import digests
    from alerts.models import DeliveryStatus, DigestRun, RecipientStatus

    report = BatchReport()
    run = session.get(DigestRun, run_id)
    if run is None:
        return report
    frequency = run.frequency
    claim = digests.claim_recipients(session, run_id, subscriber_ids, policy.stale_after)
    if claim.held_elsewhere:
        # Another attempt holds these; if it died, its claims go stale: look again then.
        report.retry.extend(claim.held_elsewhere)
        report.retry_delay = policy.stale_after.total_seconds()
    if not claim.subscriber_ids:
        return report
    token = claim.token
    tree = digests.TopicTree(session)
    contents = digests.build_contents(session, frequency, claim.subscriber_ids, run.scope, tree)
    held = digests.claim_articles(
        session,
        run_id,
        {reader_id: content.article_ids for reader_id, content in contents.items()},
        token,
        policy.stale_after,
    )
    tries = digests.attempts_of(session, run_id, claim.subscriber_ids)
    render = digest_renderer or emails.DigestRenderer(settings)
    sender = message.envelope_sender(settings.mail_from)

    def finish(reader: Subscriber, status: RecipientStatus, **kwargs: Any) -> None:
        digests.finish_recipient(
            session,
            run_id,
            reader,
            token,
            status,
            frequency=frequency,
            slot=claim.slots.get(reader.id),
            until=contents[reader.id].until if reader.id in contents else None,
            **kwargs,
        )

    def temporary(reader_id: int, error: str, recipient: bool = False) -> None:
        content = contents.get(reader_id)
        if tries.get(reader_id, 1) >= policy.max_attempts and content is not None:
            finish(
                content.subscriber,
                RecipientStatus.FAILED,
                error=error,
                delivery_status=DeliveryStatus.FAILED,
            )
            if recipient:
                ledger.soft_bounce(session, reader_id, error)
            report.failed.append(reader_id)
        else:
            digests.release_recipient(session, run_id, reader_id, token, error)
            report.retry.append(reader_id)
            report.retry_delay = max(report.retry_delay, policy.delay(tries.get(reader_id, 1)))

    remaining = list(claim.subscriber_ids)
    renewed = now()
    try:
        with connect(settings.smtp) as mailer:
            while remaining:
                if (now() - renewed).total_seconds() > policy.renew_every:
                    still = digests.renew_recipients(session, run_id, token, remaining)
                    remaining = [reader_id for reader_id in remaining if reader_id in still]
                    renewed = now()
                    if not remaining:
                        break
                reader_id = remaining[0]
                content = contents.get(reader_id)
                articles = held.get(reader_id, [])
                if content is None:
                    # No longer active: no email, and no schedule to move on.
                    session.execute(
                        update(DigestRecipient)
                        .where(
                            DigestRecipient.run_id == run_id,
                            DigestRecipient.subscriber_id == reader_id,
                            DigestRecipient.claim_token == token,
                        )
                        .values(
                            status=RecipientStatus.SKIPPED,
                            claim_token=None,
                            last_error="not active",
                        )
                    )
                elif not articles:
                    finish(content.subscriber, RecipientStatus.SKIPPED)  # nothing new: no email
                else:
                    content.keep_only(articles)
                    raw = render.message(content, run_id)
                    rejection = mailer.send(raw, sender, content.subscriber.email)
                    if rejection is None:
                        finish(
                            content.subscriber,
                            RecipientStatus.SENT,
                            article_count=len(articles),
                            delivery_status=DeliveryStatus.SENT,
                        )
                        report.sent.append(reader_id)
                    elif rejection.permanent:
                        error = str(rejection)
                        finish(
                            content.subscriber,
                            RecipientStatus.FAILED,
                            error=error,
                            delivery_status=DeliveryStatus.BOUNCED,
                        )
                        ledger.suppress(session, reader_id, error)
                        report.bounced.append(reader_id)
                    else:
                        temporary(
                            reader_id,
                            str(rejection),
                            recipient=rejection.recipient,
                        )
                session.commit()
                remaining.pop(0)
    except (OSError, smtplib.SMTPException) as error:
        session.rollback()
        for reader_id in remaining:
            temporary(reader_id, f"{type(error).__name__}: {error}")
        session.commit()
    return report
