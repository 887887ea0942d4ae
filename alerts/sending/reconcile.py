"""The reconciler: what the database says is owed and nobody is working on, to queue again.

Beat runs it about every 30 seconds. Whatever the broker lost (a restart without its data,
a publish while it was down, a task of a worker that was killed) is found here: articles
never fanned out, pending alerts without a live lease whose time has come, digest runs with
readers left that nobody holds. Each is marked queued, so the next pass leaves it alone
while its task waits on the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.models import (
    DELIVERY_PENDING,
    Article,
    Delivery,
    DigestRecipient,
    DigestRun,
    RecipientStatus,
)
from alerts.sending.policy import RetryPolicy

LIMIT = 200  # of each kind per pass: the next pass takes the rest


@dataclass
class Owed:
    fanouts: list[int] = field(default_factory=list)  # article ids
    alerts: list[int] = field(default_factory=list)  # article ids
    digest_runs: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.fanouts) + len(self.alerts) + len(self.digest_runs)


def owed(session: Session, policy: RetryPolicy, relay_down: bool = False) -> Owed:
    """Find what must be queued again and mark it queued now; the caller commits, then
    queues (after commit). While the relay is down, sending is left to the tasks already
    waiting for its next probe: queueing more would only pile them up."""
    current = now()
    stale = current - policy.stale_after
    quiet = current - policy.requeue_after
    article_quiet = or_(Article.queued_at.is_(None), Article.queued_at < quiet)
    found = Owed()
    found.fanouts = list(
        session.scalars(
            select(Article.id)
            .where(
                Article.fanned_out_at.is_(None),
                or_(Article.fanout_token.is_(None), Article.fanout_claimed_at < stale),
                article_quiet,
            )
            .order_by(Article.id)
            .limit(LIMIT)
        )
    )
    waiting = exists().where(
        Delivery.article_id == Article.id,
        DELIVERY_PENDING,
        Delivery.digest_run_id.is_(None),
        or_(Delivery.claim_token.is_(None), Delivery.claimed_at < stale),
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= current),
    )
    pending_articles = (
        select(Delivery.article_id)
        .where(DELIVERY_PENDING, Delivery.digest_run_id.is_(None))
        .distinct()
    )
    if relay_down:
        _mark_fanouts(session, found)
        return found
    found.alerts = list(
        session.scalars(
            select(Article.id)
            .where(Article.id.in_(pending_articles), article_quiet, waiting)
            .order_by(Article.id)
            .limit(LIMIT)
        )
    )
    found.digest_runs = list(
        session.scalars(
            select(DigestRun.id)
            .where(
                DigestRun.finished_at.is_(None),
                or_(DigestRun.queued_at.is_(None), DigestRun.queued_at < quiet),
                exists().where(
                    DigestRecipient.run_id == DigestRun.id,
                    DigestRecipient.status == RecipientStatus.QUEUED,
                    or_(
                        DigestRecipient.claim_token.is_(None),
                        DigestRecipient.claimed_at < stale,
                    ),
                    or_(
                        DigestRecipient.next_attempt_at.is_(None),
                        DigestRecipient.next_attempt_at <= current,
                    ),
                ),
            )
            .order_by(DigestRun.id)
            .limit(LIMIT)
        )
    )
    _mark_fanouts(session, found)
    if found.digest_runs:
        mark_runs_queued(session, found.digest_runs)
    return found


def _mark_fanouts(session: Session, found: Owed) -> None:
    articles = sorted(set(found.fanouts) | set(found.alerts))
    if articles:
        mark_articles_queued(session, articles)


def mark_articles_queued(session: Session, article_ids: list[int]) -> None:
    session.execute(
        update(Article)
        .where(Article.id.in_(article_ids))
        .values(queued_at=now())
        .execution_options(synchronize_session=False)
    )


def mark_runs_queued(session: Session, run_ids: list[int]) -> None:
    session.execute(
        update(DigestRun)
        .where(DigestRun.id.in_(run_ids))
        .values(queued_at=now())
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Waiting:
    """What the dashboard shows of the send queue."""

    alerts_pending: int  # not sent yet, first try still to come
    alerts_retrying: int  # waiting for a retry after a temporary failure
    digests_retrying: int
    awaiting_fanout: int


def waiting(session: Session) -> Waiting:
    from sqlalchemy import func

    def count(query: object) -> int:
        return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    pending = and_(DELIVERY_PENDING, Delivery.digest_run_id.is_(None))  # alerts (indexed)
    return Waiting(
        alerts_pending=count(
            select(func.count())
            .select_from(Delivery)
            .where(pending, Delivery.next_attempt_at.is_(None))
        ),
        alerts_retrying=count(
            select(func.count())
            .select_from(Delivery)
            .where(pending, Delivery.next_attempt_at.is_not(None))
        ),
        digests_retrying=count(
            select(func.count())
            .select_from(DigestRecipient)
            .where(
                DigestRecipient.status == RecipientStatus.QUEUED,
                DigestRecipient.next_attempt_at.is_not(None),
            )
        ),
        awaiting_fanout=count(
            select(func.count()).select_from(Article).where(Article.fanned_out_at.is_(None))
        ),
    )
