"""What the people who run the service watch, in Prometheus' exposition format.

Two kinds of figures:
- **counters** each process adds to as things happen (signups, emails by kind and outcome,
  SMTP latency, feed polls). With PROMETHEUS_MULTIPROC_DIR set (prometheus-client's
  multiprocess mode), every process (each gunicorn worker, each Celery pool process) writes
  its own files there and a scrape adds them all up; unset, a process counts in memory.
- **the state of the work**, read from the database at each scrape (what is waiting and for
  how long, fan-out and digest runs in progress, the relay): the database is the one place
  every worker node shares, so these are right whichever process serves the scrape.

No label ever holds an address, a token or an id: only small fixed sets of values.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.models import (
    CONFIRMATION_PENDING,
    DELIVERY_PENDING,
    Article,
    ConfirmationEmail,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    DigestRun,
    NoticeKind,
    RecipientStatus,
    RelayStatus,
    RevisionNotice,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each process's files are opened as its first metric is made: the folder must exist.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    # Files named by host and pid, not pid alone: containers sharing the folder each have
    # their own pid 1, 7, 8... and would write into one another's files.
    values.ValueClass = values.MultiProcessValue(lambda: f"{socket.gethostname()}_{os.getpid()}")

SIGNUPS = Counter("alerts_signups", "Signups recorded (a confirmation email owed).")
CONFIRMATIONS = Counter("alerts_confirmations", "Subscriptions confirmed from the emailed link.")
UNSUBSCRIBES = Counter("alerts_unsubscribes", "Readers who unsubscribed, by way.", ["way"])
EMAILS = Counter(
    "alerts_emails",
    "Emails handed to the relay or given up on, by kind (confirmation, welcome, alert, "
    "digest, correction) and outcome (sent, retried, failed, bounced).",
    ["kind", "outcome"],
)
SMTP_SECONDS = Histogram(
    "alerts_smtp_send_seconds",
    "Time from the first SMTP command of a message to the relay's answer to its data.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FEED_POLLS = Counter(
    "alerts_feed_polls", "Feed polls, by result (ok, not_modified, error).", ["result"]
)

log = logging.getLogger(__name__)


def _never_raises(count: Callable[..., None]) -> Callable[..., None]:
    """A figure is never worth an email: whatever goes wrong counting (a full disk under
    the metrics folder), the send loop carries on as if nothing was counted."""

    @functools.wraps(count)
    def safe(*args: Any, **kwargs: Any) -> None:
        try:
            count(*args, **kwargs)
        except Exception:
            log.exception("a metric could not be counted")

    return safe


# The send loop's outcomes, as operators name them.
_OUTCOMES = {"sent": "sent", "deferred": "retried", "failed": "failed", "bounced": "bounced"}
_WAYS = ("one-click", "unsubscribe page", "admin")


@_never_raises
def email(kind: str, outcome: str) -> None:
    """Count one email's outcome ("sent", "deferred", "failed", "bounced"; "skipped" is no
    email and is not counted)."""
    name = _OUTCOMES.get(outcome)
    if name is not None:
        EMAILS.labels(kind, name).inc()


@_never_raises
def smtp_latency(kind: str, seconds: float) -> None:
    SMTP_SECONDS.labels(kind).observe(seconds)


@_never_raises
def replied(kind: str, rejection: object | None) -> None:
    """Count a one-off email (a confirmation, a welcome) by the relay's answer: None is
    accepted; a rejection's `permanent` tells a bounce from a refusal retried later."""
    if rejection is None:
        email(kind, "sent")
    else:
        email(kind, "bounced" if getattr(rejection, "permanent", False) else "deferred")


@_never_raises
def signed_up() -> None:
    SIGNUPS.inc()


@_never_raises
def confirmed() -> None:
    CONFIRMATIONS.inc()


@_never_raises
def unsubscribed(how: str) -> None:
    """`how` is what the reader's record keeps ("one-click (mail client)", "unsubscribe page:
    last topic", "admin"): counted under its way, never under free text."""
    way = next((way for way in _WAYS if how.startswith(way)), "other")
    UNSUBSCRIBES.labels(way).inc()


@_never_raises
def feed_polled(status: str) -> None:
    result = "error" if status.startswith("error") else status.replace(" ", "_")
    FEED_POLLS.labels(result if result in ("ok", "not_modified") else "error").inc()


class WorkCollector(Collector):
    """Gauges of the work in the database, read when Prometheus scrapes."""

    def __init__(self, session: Callable[[], Session], relay: str) -> None:
        self.session = session
        self.relay = relay  # the configured relay, "host:port": reported up until it fails

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("alerts_database_up", "1 while the database answers the scrape.")
        session = self.session()
        try:
            found = [
                *self._waiting(session, now()),
                *self._runs(session),
                *self._relays(session),
            ]
        except SQLAlchemyError:
            log.exception("the database did not answer the metrics scrape")
            found = []
        finally:
            session.rollback()
        up.add_metric([], 1 if found else 0)
        yield up
        yield from found

    def _waiting(self, session: Session, current: datetime) -> Iterator[Metric]:
        """Owed and due now (a reader waiting for a retry after a refusal is apart: their
        wait is the relay's answer, not ours)."""
        waiting = GaugeMetricFamily(
            "alerts_deliveries_waiting",
            "Emails owed and due now, not sent yet, by kind (alert, digest, correction, "
            "confirmation).",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            "alerts_deliveries_oldest_waiting_seconds",
            "How long the oldest email owed and due has been waiting, by kind (0 when none).",
            labels=["kind"],
        )
        retrying = GaugeMetricFamily(
            "alerts_deliveries_retrying",
            "Emails the relay refused for now, waiting for their next try, by kind.",
            labels=["kind"],
        )
        alert_due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= current)
        alerts = select(Delivery).where(DELIVERY_PENDING, Delivery.digest_run_id.is_(None))
        running = select(DigestRun.id).where(DigestRun.finished_at.is_(None))
        digest_due = or_(
            DigestRecipient.next_attempt_at.is_(None), DigestRecipient.next_attempt_at <= current
        )
        digests = select(DigestRecipient).where(
            DigestRecipient.run_id.in_(running), DigestRecipient.status == RecipientStatus.QUEUED
        )
        notice_due = or_(
            RevisionNotice.next_attempt_at.is_(None), RevisionNotice.next_attempt_at <= current
        )
        corrections = select(RevisionNotice).where(
            RevisionNotice.kind == NoticeKind.CORRECTION,
            RevisionNotice.status == DeliveryStatus.PENDING,
        )
        confirmation_due = or_(
            ConfirmationEmail.next_attempt_at.is_(None),
            ConfirmationEmail.next_attempt_at <= current,
        )
        confirmations = select(ConfirmationEmail).where(CONFIRMATION_PENDING)
        rows = {
            "alert": (
                session.execute(
                    alerts.with_only_columns(
                        func.count(),
                        func.min(func.coalesce(Delivery.next_attempt_at, Delivery.created_at)),
                    ).where(alert_due)
                ).one(),
                session.scalar(alerts.with_only_columns(func.count()).where(~alert_due)),
            ),
            "digest": (
                session.execute(
                    digests.with_only_columns(
                        func.count(),
                        func.min(
                            func.coalesce(DigestRecipient.next_attempt_at, DigestRecipient.slot)
                        ),
                    ).where(digest_due)
                ).one(),
                session.scalar(digests.with_only_columns(func.count()).where(~digest_due)),
            ),
            "correction": (
                session.execute(
                    corrections.with_only_columns(
                        func.count(),
                        func.min(
                            func.coalesce(RevisionNotice.next_attempt_at, RevisionNotice.created_at)
                        ),
                    ).where(notice_due)
                ).one(),
                session.scalar(corrections.with_only_columns(func.count()).where(~notice_due)),
            ),
            "confirmation": (
                session.execute(
                    confirmations.with_only_columns(
                        func.count(),
                        func.min(
                            func.coalesce(
                                ConfirmationEmail.next_attempt_at, ConfirmationEmail.created_at
                            )
                        ),
                    ).where(confirmation_due)
                ).one(),
                session.scalar(
                    confirmations.with_only_columns(func.count()).where(~confirmation_due)
                ),
            ),
        }
        for kind, ((count, since), later) in rows.items():
            waiting.add_metric([kind], int(count or 0))
            age = (current - since).total_seconds() if since is not None else 0.0
            oldest.add_metric([kind], max(age, 0.0))
            retrying.add_metric([kind], int(later or 0))
        yield waiting
        yield oldest
        yield retrying
        fanout = GaugeMetricFamily(
            "alerts_fanout_articles_waiting",
            "Published articles whose readers are not all written down yet (fan-out running).",
        )
        fanout.add_metric([], int(session.scalar(
            select(func.count()).select_from(Article).where(Article.fanned_out_at.is_(None))
        ) or 0))  # fmt: skip
        yield fanout

    def _runs(self, session: Session) -> Iterator[Metric]:
        runs = GaugeMetricFamily("alerts_digest_runs_running", "Digest runs not finished.")
        recipients = GaugeMetricFamily(
            "alerts_digest_run_recipients",
            "Readers of the digest runs not finished, by status (queued, sent, skipped, failed).",
            labels=["status"],
        )
        running = select(DigestRun.id).where(DigestRun.finished_at.is_(None))
        runs.add_metric(
            [], int(session.scalar(select(func.count()).select_from(running.subquery())) or 0)
        )
        counts: dict[RecipientStatus, int] = {
            status: count
            for status, count in session.execute(
                select(DigestRecipient.status, func.count())
                .where(DigestRecipient.run_id.in_(running))
                .group_by(DigestRecipient.status)
            )
        }
        for status in RecipientStatus:
            recipients.add_metric([status.value], int(counts.get(status, 0)))
        yield runs
        yield recipients

    def _relays(self, session: Session) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "alerts_relay_up",
            "1 while the SMTP relay takes mail, 0 while the service holds sending back from it.",
            labels=["relay"],
        )
        failures = GaugeMetricFamily(
            "alerts_relay_failures", "Failed connections to the relay in a row.", labels=["relay"]
        )
        # The configured relay only: a relay replaced while it was down must not page forever.
        count = int(
            session.scalar(select(RelayStatus.failures).where(RelayStatus.relay == self.relay)) or 0
        )
        up.add_metric([self.relay], 0 if count else 1)
        failures.add_metric([self.relay], count)
        yield up
        yield failures


def relay_of(config: Mapping[str, Any]) -> str:
    """The configured relay as the breaker names it ("host:port")."""
    from alerts.mail.smtp import SmtpSettings
    from alerts.sending.relay import key_of

    return key_of(SmtpSettings.from_url(str(config["SMTP_URL"])))


def exposition(session: Callable[[], Session], relay: str) -> bytes:
    """Every figure, for one scrape: the counters of every process (multiprocess mode) or of
    this one, and the database's gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in (SIGNUPS, CONFIRMATIONS, UNSUBSCRIBES, EMAILS, SMTP_SECONDS, FEED_POLLS):
            registry.register(metric)
    registry.register(WorkCollector(session, relay))
    return generate_latest(registry)
