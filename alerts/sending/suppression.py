"""Bounces and suppression: an address the relay refuses for good gets no more email."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.models import SoftBounce, Subscriber, SubscriberStatus

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=14)


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
            feed_key=None,
            updated_at=now(),
        )
        .execution_options(synchronize_session=False)
    )


def soft_bounce(session: Session, subscriber_id: int, error: str) -> bool:
    """A temporary refusal of the address outlived its retries. The third within 14 days
    suppresses the address (mailbox providers read repeated soft bounces as a dead or full
    mailbox). Only replies about the address count: never the relay's own trouble."""
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
