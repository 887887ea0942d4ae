"""The send ledger of alerts: a delivery row per (reader, article), pending until sent.

Fan-out writes the rows; a send task claims the next pending ones of an article under a
lease (its token), and every outcome is recorded with that token, so a task whose lease was
taken over records nothing. The reader's status is checked at claim time: an unsubscribe or
a pause stops the very next batch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import Prepared, insert_ignoring_duplicates, rowcount
from alerts.models import DELIVERY_PENDING, Delivery, DeliveryStatus, Subscriber
from alerts.sending import claims, suppression
from alerts.sending.policy import RetryPolicy

_deliveries = cast(Table, Delivery.__table__)


@dataclass(frozen=True)
class Claim:
    token: str
    subscriber_ids: list[int]  # the readers this task holds, in id order


def write_pending(session: Session, article_id: int, subscriber_ids: Collection[int]) -> None:
    """Record that these readers are owed the article (a row that exists is left alone)."""
    if not subscriber_ids:
        return
    current = now()
    session.connection().execute(
        insert_ignoring_duplicates(session, _deliveries),
        [
            {
                "subscriber_id": subscriber_id,
                "article_id": article_id,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": current,
                "updated_at": current,
            }
            for subscriber_id in subscriber_ids
        ],
    )


def claim_next(session: Session, article_id: int, policy: RetryPolicy) -> Claim:
    """Take the article's next pending readers (at most a batch); commits. Rows of readers who
    are no longer receiving (unsubscribed, bounced, paused) are closed as skipped."""
    current = now()
    token, ids = claims.claim(
        session,
        Delivery,
        [
            Delivery.article_id == article_id,
            DELIVERY_PENDING,
            Delivery.digest_run_id.is_(None),  # a digest's rows are finished by its run
        ],
        policy,
        current,
    )
    rows = session.execute(
        select(Delivery.subscriber_id, Subscriber.receiving(current))
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(db.among(session, Delivery.id, ids), Delivery.claim_token == token)
        .order_by(Delivery.subscriber_id)
    ).all()
    gone = [subscriber_id for subscriber_id, receiving in rows if not receiving]
    if gone:
        session.execute(
            update(Delivery)
            .where(
                Delivery.article_id == article_id,
                db.among(session, Delivery.subscriber_id, gone),
                Delivery.claim_token == token,
            )
            .values(
                status=DeliveryStatus.SKIPPED,
                claim_token=None,
                last_error="not receiving when its turn came",
                updated_at=current,
            )
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return Claim(token, [subscriber_id for subscriber_id, receiving in rows if receiving])


# Built once: recording an outcome happens once per email, so it must cost little.
_SENT = Prepared(
    update(_deliveries)
    .where(
        _deliveries.c.article_id == bindparam("article"),
        _deliveries.c.subscriber_id == bindparam("subscriber"),
        _deliveries.c.claim_token == bindparam("token"),
    )
    .values(
        status=DeliveryStatus.SENT.value,
        revision_id=bindparam("revision"),
        sent_at=bindparam("at"),
        updated_at=bindparam("at"),
        attempts=_deliveries.c.attempts + 1,
        last_error=None,
        next_attempt_at=None,
        claim_token=None,
    )
)


def record_sent(
    session: Session, token: str, article_id: int, subscriber_id: int, revision: int
) -> None:
    """The relay took the alert, which carried the article's version `revision`. Its own
    transaction when none is open (a capped reader's count holds one: recorded in it)."""
    _SENT.run_alone(
        session,
        {
            "article": article_id,
            "subscriber": subscriber_id,
            "token": token,
            "at": now(),
            "revision": revision,
        },
    )


def _held(token: str, article_id: int, subscriber_id: int) -> tuple[Any, ...]:
    return (
        Delivery.article_id == article_id,
        Delivery.subscriber_id == subscriber_id,
        Delivery.claim_token == token,
    )


def record_bounced(
    session: Session, token: str, article_id: int, subscriber_id: int, error: str
) -> None:
    """A permanent refusal of the address: this delivery bounced and the address is
    suppressed (no email of any kind goes to it any more)."""
    current = now()
    session.execute(
        update(Delivery)
        .where(*_held(token, article_id, subscriber_id))
        .values(
            status=DeliveryStatus.BOUNCED,
            attempts=Delivery.attempts + 1,
            last_error=error[:2000],
            claim_token=None,
            updated_at=current,
        )
        .execution_options(synchronize_session=False)
    )
    suppression.suppress(session, subscriber_id, error)


def record_temporary(
    session: Session,
    token: str,
    article_id: int,
    subscriber_id: int,
    error: str,
    policy: RetryPolicy,
    about_address: bool,
) -> bool:
    """A temporary failure of this one message: retried after a backoff until the horizon
    has passed since the first one, then failed (a soft bounce when the reply was about the
    address). Returns True when the delivery failed for good."""
    current = now()
    row = session.execute(
        select(Delivery.attempts, Delivery.retry_until).where(
            *_held(token, article_id, subscriber_id)
        )
    ).one_or_none()
    if row is None:
        return False  # no longer ours
    attempts, retry_until = int(row[0]) + 1, row[1]
    failed = retry_until is not None and current >= retry_until
    values: dict[str, object] = {
        "attempts": attempts,
        "last_error": error[:2000],
        "claim_token": None,
        "updated_at": current,
    }
    if failed:
        values["status"] = DeliveryStatus.FAILED
    else:
        values["next_attempt_at"] = current + policy.delay_td(attempts)
        values["retry_until"] = retry_until or current + policy.horizon
    session.execute(
        update(Delivery)
        .where(*_held(token, article_id, subscriber_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if failed and about_address:
        suppression.soft_bounce(session, subscriber_id, error)
    return failed


def release(
    session: Session, token: str, article_id: int, subscriber_ids: Collection[int], error: str
) -> None:
    """Give rows back untried (the relay's trouble, not theirs): no attempt is counted."""
    if not subscriber_ids:
        return
    session.execute(
        update(Delivery)
        .where(
            Delivery.article_id == article_id,
            db.among(session, Delivery.subscriber_id, list(subscriber_ids)),
            Delivery.claim_token == token,
        )
        .values(claim_token=None, last_error=error[:2000], updated_at=now())
        .execution_options(synchronize_session=False)
    )


def renew(session: Session, token: str, article_id: int) -> int:
    """Keep the lease of a running batch fresh (the heartbeat calls this); returns the rows
    still held."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.article_id == article_id,
            DELIVERY_PENDING,
            Delivery.digest_run_id.is_(None),
            Delivery.claim_token == token,
        )
        .values(claimed_at=now())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def next_retry_at(session: Session, article_id: int) -> datetime | None:
    """When the article's earliest waiting retry is due (None: no retry is waiting)."""
    moment: datetime | None = session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.article_id == article_id,
            DELIVERY_PENDING,
            Delivery.digest_run_id.is_(None),
        )
    )
    return moment
