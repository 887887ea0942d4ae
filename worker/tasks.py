"""Celery tasks: thin adapters that take ids and plain values and call the domain."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Any

from celery import shared_task
from flask import current_app

from alerts import clock, db, digests, feeds, matching, subscriptions
from alerts.mail import delivery, emails, ledger
from alerts.models import Article, DigestRun, Feed, Frequency
from alerts.subscriptions import Choices

log = logging.getLogger(__name__)

# Connection trouble and 4xx replies are worth retrying; the backoff doubles up to ten minutes.
TRANSIENT_ERRORS = (OSError, smtplib.SMTPException)


@shared_task(
    name="alerts.send_confirmation",
    bind=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=8,
)
def send_confirmation(
    self: Any, subscriber_id: int, nonce: str, changes: dict[str, Any] | None = None
) -> None:
    settings = emails.MailSettings.from_config(current_app.config)
    choices = Choices.from_payload(changes) if changes else None
    rejection = emails.send_confirmation(db.session(), settings, subscriber_id, nonce, choices)
    if rejection is not None and not rejection.permanent:
        raise smtplib.SMTPResponseException(rejection.code, rejection.message)
    if rejection is not None:
        log.warning(
            "confirmation to subscriber %s refused: %s %s",
            subscriber_id,
            rejection.code,
            rejection.message,
        )


@shared_task(name="alerts.purge_unconfirmed")
def purge_unconfirmed() -> int:
    session = db.session()
    days = int(current_app.config["UNCONFIRMED_RETENTION_DAYS"])
    removed = subscriptions.purge_unconfirmed(session, timedelta(days=days))
    session.commit()
    log.info("purged %d unconfirmed sign-ups", removed)
    return removed


def _retry_policy() -> delivery.RetryPolicy:
    config = current_app.config
    return delivery.RetryPolicy.from_config(config)


@shared_task(name="alerts.fanout_article")
def fanout_article(article_id: int) -> int:
    """Queue one send task per page of matching immediate readers (every reader, if urgent)."""
    session = db.session()
    article = session.get(Article, article_id)
    if article is None:
        return 0
    frequencies = tuple(Frequency) if article.urgent else (Frequency.IMMEDIATE,)
    scope = matching.scope(session, article)
    batch_size = int(current_app.config["FANOUT_BATCH_SIZE"])
    queued = 0
    for page in matching.subscriber_pages(session, scope, frequencies, batch_size):
        send_alert_batch.delay(article_id, page)
        queued += len(page)
    log.info("article %s: queued alerts for %d readers", article_id, queued)
    return queued


@shared_task(name="alerts.send_alert_batch")
def send_alert_batch(article_id: int, subscriber_ids: list[int]) -> None:
    settings = emails.MailSettings.from_config(current_app.config)
    report = delivery.deliver_alerts(
        db.session(), settings, _retry_policy(), article_id, subscriber_ids
    )
    if report.retry:
        send_alert_batch.apply_async((article_id, report.retry), countdown=report.retry_delay)
    log.info(
        "article %s: %d sent, %d bounced, %d failed, %d to retry in %.0fs",
        article_id,
        len(report.sent),
        len(report.bounced),
        len(report.failed),
        len(report.retry),
        report.retry_delay,
    )


@shared_task(name="alerts.requeue_stale_deliveries")
def requeue_stale_deliveries() -> int:
    """The sweeper: claims nobody finished (a worker died, a retry was lost) are sent again."""
    policy = _retry_policy()
    cutoff = clock.now() - policy.stale_after - timedelta(seconds=policy.backoff_max)
    by_article: dict[int, list[int]] = {}
    for article_id, subscriber_id in ledger.stale_claims(db.session(), cutoff):
        by_article.setdefault(article_id, []).append(subscriber_id)
    for article_id, subscriber_ids in by_article.items():
        send_alert_batch.delay(article_id, subscriber_ids)
    return sum(len(ids) for ids in by_article.values())


@shared_task(name="alerts.run_due_digests")
def run_due_digests() -> int:
    """Beat, every few minutes: each frequency with readers due joins its period's run."""
    session = db.session()
    queued = 0
    for frequency in digests.due_frequencies(session):
        run, _created = digests.start_run(session, frequency, "", "schedule")
        digests.enqueue(session, run, due_only=True)
        session.commit()
        queued += queue_digest_batches(run.id)
    return queued


@shared_task(name="alerts.resume_digest_run")
def resume_digest_run(run_id: int) -> int:
    """Queue the send tasks of every recipient of a run still to do (safe to repeat)."""
    return queue_digest_batches(run_id)


def queue_digest_batches(run_id: int) -> int:
    session = db.session()
    batch_size = int(current_app.config["FANOUT_BATCH_SIZE"])
    queued = 0
    stale_after = _retry_policy().stale_after
    for page in digests.queued_pages(session, run_id, batch_size, stale_after):
        send_digest_batch.delay(run_id, page)
        queued += len(page)
    return queued


@shared_task(name="alerts.send_digest_batch")
def send_digest_batch(run_id: int, subscriber_ids: list[int]) -> None:
    settings = emails.MailSettings.from_config(current_app.config)
    session = db.session()
    report = delivery.deliver_digests(session, settings, _retry_policy(), run_id, subscriber_ids)
    if report.retry:
        send_digest_batch.apply_async((run_id, report.retry), countdown=report.retry_delay)
    run = session.get(DigestRun, run_id)
    if run is not None:
        digests.progress(session, run)  # stamps finished_at when the last one is done
        session.commit()
    log.info(
        "digest run %s: %d sent, %d bounced, %d failed, %d to retry",
        run_id,
        len(report.sent),
        len(report.bounced),
        len(report.failed),
        len(report.retry),
    )


@shared_task(name="alerts.poll_due_feeds")
def poll_due_feeds() -> int:
    """Beat, every minute: queue a poll for each active feed whose time has come."""
    session = db.session()
    due = feeds.due(session)
    for feed in due:
        feeds.lease(session, feed)
    session.commit()
    for feed in due:
        poll_feed.delay(feed.id)
    return len(due)


@shared_task(name="alerts.poll_feed")
def poll_feed(feed_id: int) -> str:
    """Poll one feed; a failure is recorded on the feed and never stops the others."""
    session = db.session()
    feed = session.get(Feed, feed_id)
    if feed is None:
        return "gone"
    report = feeds.poll(session, feed, timeout=float(current_app.config["FEED_TIMEOUT"]))
    session.commit()
    for article_id in report.to_alert:
        fanout_article.delay(article_id)
    log.info(
        "feed %s: %s, %d new (%d alerting), %d updated",
        feed_id,
        report.status,
        report.created,
        len(report.to_alert),
        report.updated,
    )
    return report.status
