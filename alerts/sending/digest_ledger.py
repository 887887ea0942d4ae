"""The ledger of digests: a digest run's readers (`digest_recipients`), each claimed by a
send task under a lease, and the articles of each digest in the send ledger (`deliveries`).

A reader's digest is claimed first; its articles are then claimed in the same ledger as
alerts, so an article sent as an alert or in another digest never appears again. Every
outcome is recorded with the claim's token; sent and skipped digests move the reader's
schedule on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import Prepared, insert_ignoring_duplicates
from alerts.digests.schedules import move_on
from alerts.models import (
    DELIVERY_PENDING,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    Frequency,
    RecipientStatus,
    Subscriber,
)
from alerts.sending import claims, suppression
from alerts.sending.policy import RetryPolicy

# Statements built once: they run once or twice per digest sent, so they must cost little.
_recipients = cast(Table, DigestRecipient.__table__)
_deliveries = cast(Table, Delivery.__table__)

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
        status=bindparam("new_status"),
        sent_at=bindparam("new_sent_at"),
        last_error=bindparam("new_error"),
        updated_at=bindparam("new_updated_at"),
        attempts=_deliveries.c.attempts + 1,
        claim_token=None,
    )
)
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
_CLAIM_ARTICLES = Prepared(
    lambda dialect: insert_ignoring_duplicates(dialect, _deliveries),
    columns=(
        "subscriber_id",
        "article_id",
        "status",
        "attempts",
        "created_at",
        "updated_at",
        "digest_run_id",
        "claim_token",
        "claimed_at",
        "revision_id",
    ),
)


@dataclass(frozen=True)
class RecipientClaim:
    token: str
    subscriber_ids: list[int]  # the readers this task holds, in id order
    slots: dict[int, datetime] = field(default_factory=dict)  # the due slot each one serves


# The smallest batch a run's last readers are taken in.
LAST_BATCHES = 50


def batch_size(session: Session, run_id: int, policy: RetryPolicy) -> int:
    """A large batch costs less per digest, but the run's last ones would leave the other
    send tasks idle while one of them finishes: once few readers are left, a batch is a
    share of what is left (guided self-scheduling), so the run's tasks finish together."""
    shares = 2 * max(policy.parallelism, 1)
    largest = policy.digest_batch_size
    left = session.scalar(
        select(func.count()).select_from(
            select(DigestRecipient.id)
            .where(
                DigestRecipient.run_id == run_id,
                DigestRecipient.status == RecipientStatus.QUEUED,
                DigestRecipient.claim_token.is_(None),  # not in another task's batch
            )
            .limit(largest * shares)  # counted no further than it matters
            .subquery()
        )
    )
    return max(min(largest, int(left or 0) // shares), min(LAST_BATCHES, largest))


def claim_next(session: Session, run_id: int, policy: RetryPolicy) -> RecipientClaim:
    """Take the run's next queued readers (at most a batch) that nobody holds; commits."""
    token, ids = claims.claim(
        session,
        DigestRecipient,
        [DigestRecipient.run_id == run_id, DigestRecipient.status == RecipientStatus.QUEUED],
        policy,
        now(),
        batch_size=batch_size(session, run_id, policy),
    )
    rows = session.execute(
        select(DigestRecipient.subscriber_id, DigestRecipient.slot)
        .where(DigestRecipient.id.in_(ids), DigestRecipient.claim_token == token)
        .order_by(DigestRecipient.subscriber_id)
    ).all()
    session.commit()
    return RecipientClaim(
        token,
        [subscriber_id for subscriber_id, _ in rows],
        {subscriber_id: slot for subscriber_id, slot in rows},
    )


def renew(session: Session, run_id: int, token: str) -> None:
    """Keep a running batch's lease fresh (the heartbeat). The readers' lease covers their
    articles: nobody else may take those while the reader is held."""
    session.execute(
        update(DigestRecipient)
        .where(DigestRecipient.run_id == run_id, DigestRecipient.claim_token == token)
        .values(claimed_at=now())
        .execution_options(synchronize_session=False)
    )


def claim_articles(
    session: Session,
    run_id: int,
    wanted: dict[int, list[int]],
    token: str,
    carries_held_from: datetime | None = None,
    versions: dict[int, int] | None = None,
) -> dict[int, list[int]]:
    """Record each digest's articles in the send ledger (reader -> article ids); returns what
    each digest may carry: an alert or another digest may have taken an article meanwhile.
    `carries_held_from`: when the digests were built; the run takes the alerts held past its
    readers' daily cap (a run scoped to one topic passes None, and takes none). `versions`:
    the version of each article the digests show (article -> revision id)."""
    versions = versions or {}
    current = now()
    rows = [
        (subscriber_id, article_id, versions.get(article_id, 0))
        for subscriber_id, article_ids in wanted.items()
        for article_id in article_ids
    ]
    if carries_held_from is not None and wanted:
        _take_held_past_cap(session, run_id, wanted, token, current, carries_held_from)
    if not rows:
        session.commit()
        return {}
    _CLAIM_ARTICLES.run_many(
        session,
        rows,
        ("subscriber_id", "article_id", "revision_id"),
        {
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "created_at": current,
            "updated_at": current,
            "digest_run_id": run_id,
            "claim_token": token,
            "claimed_at": current,
        },
    )
    readers = list(wanted)
    # Rows an earlier attempt of this same run left behind (released, or a dead task's)
    # become ours: we hold these readers, and a reader's lease covers their articles.
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id.in_(readers),
            Delivery.digest_run_id == run_id,
            DELIVERY_PENDING,
        )
        .values(claim_token=token, claimed_at=current, updated_at=current)
        .execution_options(synchronize_session=False)
    )
    held: dict[int, set[int]] = {}
    stale: list[dict[str, int]] = []
    for row_id, subscriber_id, article_id, version in session.execute(
        select(
            Delivery.id, Delivery.subscriber_id, Delivery.article_id, Delivery.revision_id
        ).where(Delivery.subscriber_id.in_(readers), Delivery.claim_token == token)
    ):
        held.setdefault(subscriber_id, set()).add(article_id)
        if version != versions.get(article_id, 0):  # carried from the cap, or an earlier try
            stale.append({"row": row_id, "version": versions.get(article_id, 0)})
    if stale:
        session.execute(
            update(_deliveries)
            .where(_deliveries.c.id == bindparam("row"))
            .values(revision_id=bindparam("version")),
            stale,
        )
    session.commit()
    return {
        subscriber_id: [a for a in article_ids if a in held.get(subscriber_id, ())]
        for subscriber_id, article_ids in wanted.items()
    }


def _take_held_past_cap(
    session: Session,
    run_id: int,
    wanted: dict[int, list[int]],
    token: str,
    current: datetime,
    built_at: datetime,
) -> None:
    """Alerts held past these readers' daily cap: the rows exist, and become this digest's.
    A held alert the digest does not carry no longer matches the reader (they changed what
    they follow): it is closed, not left waiting for a digest that will never take it. One
    held after the digests were built is left for the next digest."""
    rows = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Delivery.article_id, Delivery.updated_at).where(
            Delivery.subscriber_id.in_(list(wanted)),
            Delivery.status == DeliveryStatus.HELD,
            Delivery.held == "cap",
        )
    ).all()
    carried = [row.id for row in rows if row.article_id in set(wanted[row.subscriber_id])]
    dropped = [row.id for row in rows if row.id not in set(carried) and row.updated_at < built_at]
    for ids, values in (
        (carried, {"status": DeliveryStatus.PENDING, "digest_run_id": run_id,
                   "claim_token": token, "claimed_at": current}),
        (dropped, {"status": DeliveryStatus.SKIPPED, "last_error": "no longer matches"}),
    ):  # fmt: skip
        if ids:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(updated_at=current, **values)
                .execution_options(synchronize_session=False)
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
) -> None:
    """Record a reader's digest outcome; sent and skipped move their schedule on, to the
    first slot after both now and the slot this digest served (so a digest sent ahead of
    its time is not due again the same day)."""
    current = now()
    with db.cursor(session) as cursor:
        ours = _FINISH_RECIPIENT.run(
            cursor,
            {
                "run": run_id,
                "subscriber": reader.id,
                "token": token,
                "new_status": status,
                "new_count": article_count,
                "new_error": error[:2000] if error else None,
                "new_updated_at": current,
                "tried": 1 if delivery_status is not None else 0,
            },
        )
        if delivery_status is not None:
            # The articles this task still holds, even if the reader is no longer its own:
            # after a digest that went out, a task that took the reader over must not send
            # them again (its build finds them sent).
            _FINISH_DELIVERIES.run(
                cursor,
                {
                    "run": run_id,
                    "subscriber": reader.id,
                    "token": token,
                    "new_status": delivery_status,
                    "new_sent_at": current if delivery_status is DeliveryStatus.SENT else None,
                    "new_error": error[:2000] if error else None,
                    "new_updated_at": current,
                },
            )
        if ours and status in (RecipientStatus.SENT, RecipientStatus.SKIPPED):
            # Only by the task that holds the reader: one that took them over records theirs.
            # The end of the window this digest covered, not the time it finished: an article
            # arriving mid-batch belongs to the next digest.
            move_on(cursor, reader, frequency, until or current, max(current, slot or current))


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
    # Every article this run held for them, whoever held it: no longer owed to them.
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.digest_run_id == run_id,
            DELIVERY_PENDING,
        )
        .values(status=DeliveryStatus.SKIPPED, claim_token=None, last_error="not active")
        .execution_options(synchronize_session=False)
    )


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
