"""Celery tasks: thin adapters that take ids and plain values and call the domain."""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
import time
from datetime import timedelta
from typing import Any

import redis
from celery import shared_task
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts import db, digests, feeds, metrics, subscriptions
from alerts.config import CONFIRMATION_RETRY_MAX
from alerts.db import queue_after_commit
from alerts.mail import emails
from alerts.models import Feed
from alerts.sending import (
    batches,
    confirmations,
    corrections,
    fanout,
    ledger,
    reconcile,
    relay,
    roundup,
)
from alerts.sending.policy import RetryPolicy

log = logging.getLogger(__name__)

# Connection trouble and 4xx replies are worth retrying; the backoff doubles up to ten minutes.
TRANSIENT_ERRORS = (OSError, smtplib.SMTPException)


@shared_task(name="alerts.send_confirmations")
def send_confirmations() -> None:
    """Woken after a signup commits, and from beat about every 30 s: every confirmation
    email owed. While signups keep coming, the woken sender keeps the wake-up key and sends
    them a short pause apart (`GATHER_SECONDS`), as batches: signups meanwhile find the key
    set and wait for its next look. Once a look finds nothing, it deletes the key and looks
    once more, so a signup that found the key set is always seen by a look that follows the
    deletion; a signup after the deletion wakes another sender."""
    config = current_app.config
    policy, settings = _policy(), _mail_settings()
    started = time.monotonic()
    total = batches.Drain()
    looked_since_delete = False
    with db.sending_session() as session:
        while True:
            drain = confirmations.drain(session, settings, policy)
            total.outcome.add(drain.outcome)
            outcome = drain.outcome
            if config["CELERY_ALWAYS_EAGER"] or outcome.relay_down_until or outcome.lease_lost:
                break  # beat looks again (the wake-up lapses meanwhile)
            if drain.more or time.monotonic() - started > policy.task_slice:
                queue_after_commit(session, send_confirmations)  # still the woken sender
                session.commit()
                break
            if looked_since_delete:
                break  # the look after the deletion: later signups woke another sender
            if outcome.handled:
                # Looked again at once, each signup would be a batch of one (a claim, a
                # connection to the relay, a lease), and the sender would fall behind.
                time.sleep(confirmations.GATHER_SECONDS)
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                # From here on a signup wakes another sender.
                _client(config["REDIS_URL"]).delete(confirmations.WAKE_KEY)
            looked_since_delete = True
    if total.outcome.handled:
        _log_drain("confirmation emails", total)


@shared_task(
    name="alerts.send_confirmation",
    autoretry_for=(SQLAlchemyError,),
    retry_backoff=5,
    max_retries=8,
)
def send_confirmation(
    subscriber_id: int, nonce: str, changes: dict[str, Any] | None = None
) -> None:
    """A message queued by a release before the confirmation ledger (one task per email):
    recorded as owed if its link is still the reader's, then sent with the rest."""
    session = db.session()
    if subscriptions.owe_queued_confirmation(session, subscriber_id, nonce, changes):
        queue_confirmations(session)
    session.commit()


def queue_confirmations(session: Session) -> None:
    """Once this session commits, have its confirmation emails sent: queues the sender
    unless one is queued and has not yet looked (it will find them)."""
    db.call_after_commit(session, _wake_confirmations)


def _wake_confirmations() -> None:
    config = current_app.config
    if not config["CELERY_ALWAYS_EAGER"]:
        try:
            woken = _client(config["REDIS_URL"]).set(
                confirmations.WAKE_KEY, 1, nx=True, ex=confirmations.WAKE_TTL
            )
        except (redis.RedisError, OSError):
            woken = True  # queue it anyway; without a broker, beat's drain sends them
        if not woken:
            return
    try:
        send_confirmations.delay()
    except Exception as error:  # the rows are written: beat's drain sends them
        log.warning("could not queue the confirmation sender (beat will): %s", error)


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    """One client per process and broker, its connections reused (and made again after a
    fork)."""
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)


@shared_task(
    name="alerts.send_welcome",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=CONFIRMATION_RETRY_MAX,
    max_retries=8,
)
def send_welcome(subscriber_id: int) -> None:
    """The email after confirming, with what they follow and the preference centre's link."""
    settings = emails.MailSettings.from_config(current_app.config)
    rejection = emails.send_welcome(db.session(), settings, subscriber_id)
    _retry_or_log(rejection, "welcome", subscriber_id)


def _retry_or_log(rejection: Any, what: str, subscriber_id: int) -> None:
    """A one-off email's refusal (an smtp.Rejection, or None when accepted): a temporary
    one raises for the task to retry; a permanent one is logged and dropped."""
    if rejection is not None and not rejection.permanent:
        raise smtplib.SMTPResponseException(rejection.code, rejection.message)
    if rejection is not None:
        log.warning(
            "%s to subscriber %s refused: %s %s",
            what,
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


def _policy() -> RetryPolicy:
    return RetryPolicy.from_config(current_app.config)


def _mail_settings() -> emails.MailSettings:
    return emails.MailSettings.from_config(current_app.config)


@shared_task(name="alerts.fanout_article")
def fanout_article(article_id: int) -> int:
    """Write a pending delivery for every reader the article reaches; sending starts with
    the first page. Safe to repeat: a finished or live fan-out is left alone."""
    session = db.session()
    report = fanout.fan_out(
        session,
        article_id,
        _policy(),
        queue_send=lambda: queue_after_commit(session, send_alerts, article_id),
        parallel=int(current_app.config["SEND_PARALLELISM"]),
    )
    if report.held:
        log.info(
            "article %s: %d readers owed it (%s)",
            article_id,
            report.readers,
            "fan-out finished" if report.finished else "fan-out lost its lease",
        )
    return report.readers


@shared_task(name="alerts.send_alerts")
def send_alerts(article_id: int) -> None:
    """Send the article's pending alerts until none is left that may go now."""
    policy = _policy()
    with db.sending_session() as session:
        drain = batches.drain_alerts(session, _mail_settings(), policy, article_id)
        _come_back(session, drain, policy, send_alerts, article_id)
    _log_drain(f"article {article_id}", drain)


@shared_task(name="alerts.send_digests")
def send_digests(run_id: int) -> None:
    """Send the run's queued digests until none is left that may go now."""
    policy = _policy()
    with db.sending_session() as session:
        drain = batches.drain_digests(session, _mail_settings(), policy, run_id)
        _come_back(session, drain, policy, send_digests, run_id)
    _log_drain(f"digest run {run_id}", drain)


@shared_task(name="alerts.send_roundups")
def send_roundups() -> None:
    """Beat, about every 30 s: each reader whose quiet hours are over gets what was held
    during them, in one email."""
    _drain_owed(roundup.drain, send_roundups, "quiet-hours round-ups")


@shared_task(name="alerts.send_corrections")
def send_corrections() -> None:
    """After a publisher's correction, and from beat about every 30 s: each reader who got
    a corrected article as an alert gets one short email about it."""
    _drain_owed(corrections.drain, send_corrections, "correction emails")


def _drain_owed(drain_all: Any, task: Any, what: str) -> None:
    """A periodic drain: send what is owed now; come straight back when its slice ran out."""
    with db.sending_session() as session:
        drain = drain_all(session, _mail_settings(), _policy())
        if drain.more and not current_app.config["CELERY_ALWAYS_EAGER"]:
            queue_after_commit(session, task)
            session.commit()
    if drain.outcome.sent or drain.outcome.deferred or drain.outcome.failed:
        _log_drain(what, drain)


def _come_back(
    session: Session, drain: batches.Drain, policy: RetryPolicy, task: Any, key: int
) -> None:
    """Queue the same task again when there is more to do soon; later work is the
    reconciler's (countdowns stay far below the broker's visibility timeout)."""
    again_in = drain.again_in(policy)
    if again_in is None or (again_in and current_app.config["CELERY_ALWAYS_EAGER"]):
        return  # eager tasks (tests) ignore countdowns: they would call themselves at once
    if task is send_alerts:
        reconcile.mark_articles_queued(session, [key])
    else:
        reconcile.mark_runs_queued(session, [key])
    queue_after_commit(session, task, key, countdown=again_in or None)
    session.commit()


def _log_drain(what: str, drain: batches.Drain) -> None:
    outcome = drain.outcome
    log.info(
        "%s: %d sent, %d bounced, %d deferred, %d failed, %d skipped, %d dropped after data%s",
        what,
        outcome.sent,
        outcome.bounced,
        outcome.deferred,
        outcome.failed,
        outcome.skipped,
        outcome.dropped,
        f"; relay down until {outcome.relay_down_until:%H:%M:%S}"
        if outcome.relay_down_until
        else "",
    )


@shared_task(name="alerts.reconcile")
def reconcile_sending() -> int:
    """Beat, about every 30 s: queue again whatever is owed and nobody is working on."""
    session = db.session()
    relay_key = relay.key_of(_mail_settings().smtp)
    owed = reconcile.owed(
        session, _policy(), relay_down=relay.down_until(session, relay_key) is not None
    )
    for article_id in owed.fanouts:
        queue_after_commit(session, fanout_article, article_id)
    for article_id in owed.alerts:
        queue_after_commit(session, send_alerts, article_id)
    for run_id in owed.digest_runs:
        queue_after_commit(session, send_digests, run_id)
    session.commit()
    if owed.total:
        log.info(
            "reconciler queued %d fan-outs, %d articles' alerts, %d digest runs",
            len(owed.fanouts),
            len(owed.alerts),
            len(owed.digest_runs),
        )
    return owed.total


@shared_task(name="alerts.run_due_digests")
def run_due_digests() -> int:
    """Beat, every few minutes: each frequency with readers due joins its period's run."""
    session = db.session()
    started = 0
    for frequency in digests.due_frequencies(session):
        run, _created = digests.start_run(session, frequency, "", "schedule")
        digests.enqueue(session, run, due_only=True)
        queue_digest_run(session, run.id)
        session.commit()
        started += 1
    return started


def queue_digest_run(session: Session, run_id: int) -> None:
    """Queue a run's send tasks once the transaction that recorded its readers commits."""
    reconcile.mark_runs_queued(session, [run_id])
    for _ in range(int(current_app.config["SEND_PARALLELISM"])):
        queue_after_commit(session, send_digests, run_id)


@shared_task(name="alerts.resume_digest_run")
def resume_digest_run(run_id: int) -> None:
    """Queue the send tasks of a run (safe to repeat)."""
    session = db.session()
    queue_digest_run(session, run_id)
    session.commit()


# Tasks of the previous send path, still accepted so that messages queued by an older
# version during an upgrade are not lost: their work now goes through the ledger.


@shared_task(name="alerts.send_alert_batch")
def send_alert_batch(article_id: int, subscriber_ids: list[int]) -> None:
    session = db.session()
    ledger.write_pending(session, article_id, subscriber_ids)
    queue_after_commit(session, send_alerts, article_id)
    session.commit()


@shared_task(name="alerts.send_digest_batch")
def send_digest_batch(run_id: int, subscriber_ids: list[int]) -> None:
    session = db.session()
    queue_after_commit(session, send_digests, run_id)
    session.commit()


@shared_task(name="alerts.requeue_stale_deliveries")
def requeue_stale_deliveries() -> int:
    return int(reconcile_sending())


@shared_task(name="alerts.poll_due_feeds")
def poll_due_feeds() -> int:
    """Beat, every minute: queue a poll for each active feed whose time has come."""
    session = db.session()
    due = feeds.due(session)
    for feed in due:
        feeds.lease(session, feed)
        queue_after_commit(session, poll_feed, feed.id)
    session.commit()
    return len(due)


@shared_task(name="alerts.poll_feed")
def poll_feed(feed_id: int) -> str:
    """Poll one feed; a failure is recorded on the feed and never stops the others."""
    session = db.session()
    feed = session.get(Feed, feed_id)
    if feed is None:
        return "gone"
    report = feeds.poll(
        session,
        feed,
        timeout=float(current_app.config["FEED_TIMEOUT"]),
        allow=current_app.config["FEED_ALLOW"],
    )
    for article_id in report.to_alert:
        queue_after_commit(session, fanout_article, article_id)
    session.commit()
    metrics.feed_polled(report.status)
    log.info(
        "feed %s: %s, %d new (%d alerting), %d updated",
        feed_id,
        report.status,
        report.created,
        len(report.to_alert),
        report.updated,
    )
    return report.status
