"""The outcomes of digests: a reader's digest recorded in its run (`digest_recipients`) and
its articles in the send ledger (`deliveries`), with the token of the claim
(`digest_claims`). Sent and skipped digests move the reader's schedule on.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import cast

from sqlalchemy import (
    Select,
    Table,
    Update,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import Prepared
from alerts.digests.schedules import (
    MOVE_ON_CLOCK,
    ensure_digest,
    move_on,
    move_on_in_their_clock_now,
    moving_on,
)
from alerts.models import (
    DELIVERY_PENDING,
    HELD_FOR_NEXT_DIGEST,
    NOT_HELD_FOR_NEXT_DIGEST,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    DigestSchedule,
    Frequency,
    RecipientStatus,
    Subscriber,
    SubscriberStatus,
)
from alerts.sending import suppression
from alerts.sending.hold import CARRY
from alerts.sending.policy import RetryPolicy

# Statements built once: they run once or twice per digest sent, so they must cost little.
_recipients = cast(Table, DigestRecipient.__table__)
_deliveries = cast(Table, Delivery.__table__)
_schedules = cast(Table, DigestSchedule.__table__)

_FINISH_RECIPIENT = Prepared(
    update(_recipients)
    .where(
        _recipients.c.run_id == bindparam("run"),
        _recipients.c.subscriber_id == bindparam("subscriber"),
        _recipients.c.claim_token == bindparam("token"),
    )
    .values(
        status=bindparam("new_status"),
        article_count=bindparam("new_count"),
        last_error=bindparam("new_error"),
        updated_at=bindparam("new_updated_at"),
        attempts=_recipients.c.attempts + bindparam("tried"),
        claim_token=None,
    )
)
_FINISH_DELIVERIES = Prepared(
    update(_deliveries)
    .where(
        # By run and reader (an index): not every article the reader was ever sent.
        _deliveries.c.digest_run_id == bindparam("run"),
        _deliveries.c.subscriber_id == bindparam("subscriber"),
        _deliveries.c.claim_token == bindparam("token"),
    )
    .values(
        status=bindparam("delivery_status"),
        sent_at=bindparam("delivery_sent_at"),
        last_error=bindparam("new_error"),
        updated_at=bindparam("new_updated_at"),
        attempts=_deliveries.c.attempts + 1,
        claim_token=None,
    )
)


def _finish_in_one(articles: bool, moves: bool) -> Select[tuple[int, int]]:
    """`finish` in one statement, for PostgreSQL: the reader's digest, its articles (when
    `articles`) and their schedule (when `moves`, only if the digest was this task's and the
    reader's clock is the one loaded) in data-modifying CTEs. Gives (the digest was ours, the
    schedule moved on)."""
    recipient = (
        cast(Update, _FINISH_RECIPIENT.statement)
        .returning(_recipients.c.subscriber_id)
        .cte("recipient")
    )
    moved = (
        cast(Update, MOVE_ON_CLOCK.statement)
        .where(_schedules.c.subscriber_id.in_(select(recipient.c.subscriber_id)))
        .returning(_schedules.c.subscriber_id)
        .cte("moved")
    )
    statement = select(
        select(func.count()).select_from(recipient).scalar_subquery(),
        select(func.count()).select_from(moved).scalar_subquery() if moves else literal(0),
    )
    if articles:
        statement = statement.add_cte(cast(Update, _FINISH_DELIVERIES.statement).cte("articles"))
    return statement


_FINISH_IN_ONE = {
    (articles, moves): Prepared(_finish_in_one(articles, moves))
    for articles in (False, True)
    for moves in (False, True)
}
_RELEASE_DELIVERIES = Prepared(
    update(_deliveries)
    .where(
        # By run and reader (an index): not every article the reader was ever sent.
        _deliveries.c.digest_run_id == bindparam("run"),
        _deliveries.c.subscriber_id == bindparam("subscriber"),
        _deliveries.c.claim_token == bindparam("token"),
    )
    .values(
        claim_token=None,
        last_error=bindparam("new_error"),
        updated_at=bindparam("new_updated_at"),
    )
)


def finish(
    session: Session,
    run_id: int,
    reader: Subscriber,
    token: str,
    status: RecipientStatus,
    *,
    frequency: Frequency,
    slot: datetime | None = None,
    until: datetime | None = None,
    article_count: int = 0,
    error: str | None = None,
    delivery_status: DeliveryStatus | None = None,
    alone: bool = False,
) -> None:
    """Record a reader's digest outcome; sent and skipped move their schedule on, to the
    first slot after both now and the slot this digest served (so a digest sent ahead of
    its time is not due again the same day). `alone`: nothing else is to be recorded with
    it, so on PostgreSQL it may be a transaction of its own (`db.alone`)."""
    current = now()
    values = {
        "run": run_id,
        "subscriber": reader.id,
        "token": token,
        "new_status": status,
        "new_count": article_count,
        "new_error": error[:2000] if error else None,
        "new_updated_at": current,
        "tried": 1 if delivery_status is not None else 0,
        "delivery_status": delivery_status,
        "delivery_sent_at": current if delivery_status is DeliveryStatus.SENT else None,
    }
    # The end of the window this digest covered, not the time it finished: an article
    # arriving mid-batch belongs to the next digest.
    covered, after = until or current, max(current, slot or current)
    moves = status in (RecipientStatus.SENT, RecipientStatus.SKIPPED)
    if session.get_bind().dialect.name == "postgresql":
        # One round trip where BEGIN, three updates and COMMIT took five.
        if moves:
            values.update(moving_on(reader, frequency, covered, after))
        with db.alone(session) if alone else db.cursor(session) as cursor:
            statement = _FINISH_IN_ONE[(delivery_status is not None, moves)]
            ours, moved = statement.rows(cursor, values)[0]
        if ours and moves and not moved:
            # Their hour or zone changed since they were loaded (rare): in their clock as it
            # is now. A separate transaction when the first was alone: a crash between the
            # two leaves the schedule where it was, and the next run sends what is new.
            with db.cursor(session) as cursor:
                move_on_in_their_clock_now(cursor, reader.id, frequency, covered, after)
        return
    with db.cursor(session) as cursor:
        ours = _FINISH_RECIPIENT.run(cursor, values)
        if delivery_status is not None:
            # The articles this task still holds, even if the reader is no longer its own:
            # after a digest that went out, a task that took the reader over must not send
            # them again (its build finds them sent).
            _FINISH_DELIVERIES.run(cursor, values)
        if ours and moves:
            # Only by the task that holds the reader: one that took them over records theirs.
            move_on(cursor, reader, frequency, covered, after)


def skip_inactive(session: Session, run_id: int, subscriber_id: int, token: str) -> None:
    """No longer active: no email, and no schedule to move on."""
    session.execute(
        update(DigestRecipient)
        .where(
            DigestRecipient.run_id == run_id,
            DigestRecipient.subscriber_id == subscriber_id,
            DigestRecipient.claim_token == token,
        )
        .values(status=RecipientStatus.SKIPPED, claim_token=None, last_error="not active")
        .execution_options(synchronize_session=False)
    )
    # The articles this run claimed for them are held for their next digest: a paused reader
    # is still owed them. A row held that way before (an alert past the cap) is held again; a
    # digest's own claim becomes a "carry" row: deleted, it would be lost to a reader who also
    # moved its topic to another frequency, whose new schedule starts after it. A reader who
    # left or bounced is owed nothing: their claims are deleted. Not rows another task holds:
    # its email may be on its way, and that task records it (or hands the rows back, to be
    # given back here next time).
    mine = [
        Delivery.subscriber_id == subscriber_id,
        Delivery.digest_run_id == run_id,
        DELIVERY_PENDING,
        or_(Delivery.claim_token.is_(None), Delivery.claim_token == token),
    ]
    reader = session.get(Subscriber, subscriber_id)
    paused = reader if reader is not None and reader.status is SubscriberStatus.ACTIVE else None
    if paused is None:
        session.execute(
            delete(Delivery)
            .where(*mine, NOT_HELD_FOR_NEXT_DIGEST)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(Delivery)
        .where(*mine)
        .values(
            status=DeliveryStatus.HELD,
            held=case((HELD_FOR_NEXT_DIGEST, Delivery.held), else_=literal(CARRY)),
            digest_run_id=None,
            claim_token=None,
            claimed_at=None,
            updated_at=now(),
        )
        .execution_options(synchronize_session=False)
    )
    if paused is not None:
        ensure_digest(session, paused)


def _release_articles(
    session: Session, run_id: int, subscriber_id: int, token: str, error: str
) -> None:
    _RELEASE_DELIVERIES.run(
        session,
        {
            "run": run_id,
            "subscriber": subscriber_id,
            "token": token,
            "new_error": error[:2000],
            "new_updated_at": now(),
        },
    )


def release(
    session: Session, run_id: int, subscriber_ids: Collection[int], token: str, error: str
) -> None:
    """Hand readers back untried (the relay's trouble): nothing is counted against them."""
    for subscriber_id in subscriber_ids:
        session.execute(
            update(DigestRecipient)
            .where(
                DigestRecipient.run_id == run_id,
                DigestRecipient.subscriber_id == subscriber_id,
                DigestRecipient.claim_token == token,
            )
            .values(claim_token=None, last_error=error[:2000], updated_at=now())
            .execution_options(synchronize_session=False)
        )
        _release_articles(session, run_id, subscriber_id, token, error)


def defer(
    session: Session,
    run_id: int,
    reader: Subscriber,
    token: str,
    error: str,
    policy: RetryPolicy,
    about_address: bool,
    *,
    frequency: Frequency,
) -> bool:
    """A temporary failure of this reader's digest: retried after a backoff until the
    horizon has passed since the first one, then failed (a soft bounce when the reply was
    about the address). Returns True when it failed for good."""
    current = now()
    row = session.execute(
        select(DigestRecipient.attempts, DigestRecipient.retry_until).where(
            DigestRecipient.run_id == run_id,
            DigestRecipient.subscriber_id == reader.id,
            DigestRecipient.claim_token == token,
        )
    ).one_or_none()
    if row is None:
        return False
    attempts, retry_until = int(row[0]) + 1, row[1]
    if retry_until is not None and current >= retry_until:
        finish(
            session,
            run_id,
            reader,
            token,
            RecipientStatus.FAILED,
            frequency=frequency,
            error=error,
            delivery_status=DeliveryStatus.FAILED,
        )
        if about_address:
            suppression.soft_bounce(session, reader.id, error)
        return True
    session.execute(
        update(DigestRecipient)
        .where(
            DigestRecipient.run_id == run_id,
            DigestRecipient.subscriber_id == reader.id,
            DigestRecipient.claim_token == token,
        )
        .values(
            claim_token=None,
            attempts=attempts,
            next_attempt_at=current + policy.delay_td(attempts),
            retry_until=retry_until or current + policy.horizon,
            last_error=error[:2000],
            updated_at=current,
        )
        .execution_options(synchronize_session=False)
    )
    _release_articles(session, run_id, reader.id, token, error)
    return False
