"""The send ledger: a delivery row per (subscriber, article), claimed before the email goes out.

A run claims rows with its own token; only rows it holds are sent. A claim left by a run that
died is taken over once it is older than the stale limit. Subscriber status is checked at
claim time, so an unsubscribe stops the very next email.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import insert_ignoring_duplicates
from alerts.models import Delivery, DeliveryStatus, SoftBounce, Subscriber, SubscriberStatus


@dataclass(frozen=True)
class Claim:
    token: str
    subscriber_ids: list[int]
    # Rows another live run holds right now: retry later, they may still need sending.
    held_elsewhere: int


def claim(
    session: Session,
    article_id: int,
    subscriber_ids: Collection[int],
    stale_after: timedelta,
) -> Claim:
    """Take the right to send this article to these subscribers; commits, returns what we hold."""
    token = secrets.token_hex(8)
    current = now()
    ids = sorted(set(subscriber_ids))
    if ids:
        active = list(
            session.scalars(
                select(Subscriber.id).where(Subscriber.id.in_(ids), Subscriber.receiving(current))
            )
        )
        if active:
            session.execute(
                insert_ignoring_duplicates(session, Delivery.__table__),
                [
                    {
                        "subscriber_id": subscriber_id,
                        "article_id": article_id,
                        "status": DeliveryStatus.CLAIMED.value,
                        "attempts": 0,
                        "created_at": current,
                        "updated_at": current,
                    }
                    for subscriber_id in active
                ],
            )
    subscriber_is_active = exists().where(
        Subscriber.id == Delivery.subscriber_id, Subscriber.receiving(current)
    )
    session.execute(
        update(Delivery)
        .where(
            Delivery.article_id == article_id,
            Delivery.subscriber_id.in_(ids),
            Delivery.status == DeliveryStatus.CLAIMED,
            or_(Delivery.claim_token.is_(None), Delivery.claimed_at < current - stale_after),
            Delivery.digest_run_id.is_(None),  # a digest's rows are finished by its run
            subscriber_is_active,
        )
        .values(
            claim_token=token,
            claimed_at=current,
            attempts=Delivery.attempts + 1,
            updated_at=current,
        )
        .execution_options(synchronize_session=False)
    )
    held = list(
        session.scalars(
            select(Delivery.subscriber_id)
            .where(Delivery.article_id == article_id, Delivery.claim_token == token)
            .order_by(Delivery.subscriber_id)
        )
    )
    elsewhere = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.article_id == article_id,
            Delivery.subscriber_id.in_(ids),
            Delivery.status == DeliveryStatus.CLAIMED,
            Delivery.claim_token.is_not(None),
            Delivery.claim_token != token,
        )
    )
    session.commit()
    return Claim(token, held, int(elsewhere or 0))


_deliveries = cast(Table, Delivery.__table__)
# Built once: marking a delivery happens once per email, so it must cost little.
_FINISH = (
    update(_deliveries)
    .where(
        _deliveries.c.article_id == bindparam("article"),
        _deliveries.c.subscriber_id == bindparam("subscriber"),
        _deliveries.c.claim_token == bindparam("token"),
    )
    .values(
        status=bindparam("new_status"),
        sent_at=bindparam("new_sent_at"),
        last_error=bindparam("new_error"),
        updated_at=bindparam("new_updated_at"),
        claim_token=None,
    )
)


def _finish(
    session: Session,
    token: str,
    article_id: int,
    subscriber_ids: Collection[int],
    status: DeliveryStatus,
    error: str | None = None,
) -> None:
    current = now()
    session.connection().execute(
        _FINISH,
        [
            {
                "article": article_id,
                "subscriber": subscriber_id,
                "token": token,
                "new_status": status,
                "new_sent_at": current if status is DeliveryStatus.SENT else None,
                "new_error": error[:2000] if error else None,
                "new_updated_at": current,
            }
            for subscriber_id in subscriber_ids
        ],
    )


def mark_sent(
    session: Session, token: str, article_id: int, subscriber_ids: Collection[int]
) -> None:
    _finish(session, token, article_id, subscriber_ids, DeliveryStatus.SENT)


def release_for_retry(
    session: Session, token: str, article_id: int, subscriber_id: int, error: str
) -> None:
    """Give a claim back after a temporary failure: the retry claims it again."""
    _finish(session, token, article_id, [subscriber_id], DeliveryStatus.CLAIMED, error)


def mark_failed(
    session: Session, token: str, article_id: int, subscriber_id: int, error: str
) -> None:
    _finish(session, token, article_id, [subscriber_id], DeliveryStatus.FAILED, error)


def mark_bounced(
    session: Session, token: str, article_id: int, subscriber_id: int, error: str
) -> None:
    """A permanent refusal: this delivery failed and the address is suppressed."""
    _finish(session, token, article_id, [subscriber_id], DeliveryStatus.BOUNCED, error)
    suppress(session, subscriber_id, error)


def suppress(session: Session, subscriber_id: int, error: str) -> None:
    """A permanent refusal: no email goes to this address any more."""
    from alerts.digests import drop_schedules

    drop_schedules(session, subscriber_id)
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(
            status=SubscriberStatus.BOUNCED,
            unsubscribe_reason=f"bounced: {error}"[:500],
            suppressed_at=now(),
            updated_at=now(),
        )
        .execution_options(synchronize_session=False)
    )


def renew(
    session: Session, token: str, article_id: int, subscriber_ids: Collection[int]
) -> set[int]:
    """Keep our claims fresh while a long batch runs; returns those we still hold (a claim
    taken over by another run after going stale is no longer ours to send)."""
    ids = list(subscriber_ids)
    session.execute(
        update(Delivery)
        .where(
            Delivery.article_id == article_id,
            Delivery.subscriber_id.in_(ids),
            Delivery.claim_token == token,
        )
        .values(claimed_at=now())
        .execution_options(synchronize_session=False)
    )
    held = set(
        session.scalars(
            select(Delivery.subscriber_id).where(
                Delivery.article_id == article_id,
                Delivery.subscriber_id.in_(ids),
                Delivery.claim_token == token,
            )
        )
    )
    session.commit()
    return held


def attempts(session: Session, article_id: int, subscriber_ids: Collection[int]) -> dict[int, int]:
    return dict(
        session.execute(
            select(Delivery.subscriber_id, Delivery.attempts).where(
                and_(
                    Delivery.article_id == article_id,
                    Delivery.subscriber_id.in_(list(subscriber_ids)),
                )
            )
        ).all()
    )


def stale_claims(
    session: Session, older_than: datetime, limit: int = 1000
) -> list[tuple[int, int]]:
    """(article, subscriber) pairs claimed but untouched since `older_than`: their run died,
    or their retry task was lost. Pick `older_than` past the longest retry backoff."""
    rows = session.execute(
        select(Delivery.article_id, Delivery.subscriber_id)
        .where(
            Delivery.status == DeliveryStatus.CLAIMED,
            Delivery.updated_at < older_than,
            Delivery.digest_run_id.is_(None),  # digests resume through their runs
        )
        .order_by(Delivery.article_id, Delivery.subscriber_id)
        .limit(limit)
    )
    return [(article_id, subscriber_id) for article_id, subscriber_id in rows]


SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=14)


def soft_bounce(session: Session, subscriber_id: int, error: str) -> bool:
    """A temporary refusal outlived every retry. The third within 14 days suppresses the
    address (mailbox providers read repeated soft bounces as a dead or full mailbox)."""
    current = now()
    session.add(SoftBounce(subscriber_id=subscriber_id, at=current, error=error[:2000]))
    session.flush()
    recent = session.scalar(
        select(func.count())
        .select_from(SoftBounce)
        .where(
            SoftBounce.subscriber_id == subscriber_id,
            SoftBounce.at > current - SOFT_BOUNCE_WINDOW,
        )
    )
    if int(recent or 0) >= SOFT_BOUNCE_LIMIT:
        suppress(session, subscriber_id, f"{SOFT_BOUNCE_LIMIT} soft bounces in 14 days: {error}")
        return True
    return False
