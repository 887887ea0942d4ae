"""Claiming digests: a digest run's readers (`digest_recipients`), each taken by a send task
under a lease, and then the articles of each digest in the send ledger (`deliveries`), the
same ledger as alerts, so an article sent as an alert or in another digest never appears
again. The outcomes are recorded by `digest_ledger` with the claim's token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import Prepared, insert_ignoring_duplicates, rowcount
from alerts.digests.schedules import ensure_digest
from alerts.models import (
    DELIVERY_PENDING,
    FOR_NEXT_DIGEST,
    HELD_FOR_NEXT_DIGEST,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    RecipientStatus,
    Subscriber,
    UTCDateTime,
)
from alerts.sending import claims, hold
from alerts.sending.policy import RetryPolicy

_deliveries = cast(Table, Delivery.__table__)

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

# PostgreSQL: the rows given as arrays, the ones already there (sent, or another email's)
# left as they are.
_CLAIM_ARTICLES_AT_ONCE = text(
    "INSERT INTO deliveries (subscriber_id, article_id, revision_id, status, attempts,"
    " created_at, updated_at, digest_run_id, claim_token, claimed_at)"
    " SELECT s, a, r, :status, 0, :at, :at, :run, :token, :at"
    " FROM unnest(CAST(:subscribers AS INTEGER[]), CAST(:articles AS INTEGER[]),"
    " CAST(:revisions AS INTEGER[])) AS rows (s, a, r)"
    " ON CONFLICT DO NOTHING"
).bindparams(bindparam("at", type_=UTCDateTime()))


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
        .where(db.among(session, DigestRecipient.id, ids), DigestRecipient.claim_token == token)
        .order_by(DigestRecipient.subscriber_id)
    ).all()
    session.commit()
    return RecipientClaim(
        token,
        [subscriber_id for subscriber_id, _ in rows],
        {subscriber_id: slot for subscriber_id, slot in rows},
    )


def renew(session: Session, run_id: int, token: str) -> int:
    """Keep a running batch's lease fresh (the heartbeat); returns the readers still held.
    The readers' lease covers their articles: nobody else may take those while the reader
    is held."""
    return rowcount(
        session.execute(
            update(DigestRecipient)
            .where(DigestRecipient.run_id == run_id, DigestRecipient.claim_token == token)
            .values(claimed_at=now())
            .execution_options(synchronize_session=False)
        )
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
    if wanted:
        _forget_unwanted(session, run_id, wanted, current)
    if carries_held_from is not None and wanted:
        _take_held_for_next_digest(session, run_id, wanted, token, current, carries_held_from)
    if not rows:
        session.commit()
        return {}
    if session.get_bind().dialect.name == "postgresql":
        # One statement for the batch's rows: row by row, PostgreSQL spent more on starting
        # 20,000 statements than on the rows.
        subscriber_ids, article_ids, revision_ids = (
            list(column) for column in zip(*rows, strict=True)
        )
        session.execute(
            _CLAIM_ARTICLES_AT_ONCE,
            {
                "subscribers": subscriber_ids,
                "articles": article_ids,
                "revisions": revision_ids,
                "status": DeliveryStatus.PENDING.value,
                "at": current,
                "run": run_id,
                "token": token,
            },
        )
    else:
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
    # become ours: we hold these readers, and a reader's lease covers their articles. (Not
    # the rows just written: rewriting a batch's 20,000 rows cost as much as writing them.)
    session.execute(
        update(Delivery)
        .where(
            db.among(session, Delivery.subscriber_id, readers),
            Delivery.digest_run_id == run_id,
            DELIVERY_PENDING,
            or_(Delivery.claim_token.is_(None), Delivery.claim_token != token),
        )
        .values(claim_token=token, claimed_at=current, updated_at=current)
        .execution_options(synchronize_session=False)
    )
    held: dict[int, set[int]] = {}
    stale: list[dict[str, int]] = []
    for row_id, subscriber_id, article_id, version in session.execute(
        select(
            Delivery.id, Delivery.subscriber_id, Delivery.article_id, Delivery.revision_id
        ).where(db.among(session, Delivery.subscriber_id, readers), Delivery.claim_token == token)
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


def _forget_unwanted(
    session: Session, run_id: int, wanted: dict[int, list[int]], current: datetime
) -> None:
    """Rows an earlier attempt of this run claimed for articles these digests no longer carry
    (the reader changed what they follow meanwhile). Left pending, such a row would be taken
    by this digest and recorded as sent unsent, or, if this digest is empty, stay pending for
    a run that is over and keep the article out of every later digest. Deleted, it would be
    lost to a reader who moved its topic to another digest that went out meanwhile (its
    window is past the article, and it could not claim it then). So the row is held for the
    reader's next digest, whatever its window or frequency: it carries the article if they
    still follow it, and closes it if not. A row held that way already (an alert past the
    cap) is closed as no longer matching: it was built for any of the reader's frequencies.
    (Another digest of the reader's, sent between the attempts, does not drop the rows: the
    retry's build carries what its run claimed whatever the window.)"""
    carried = {subscriber_id: set(article_ids) for subscriber_id, article_ids in wanted.items()}
    gone = [
        (row_id, subscriber_id, held)
        for row_id, subscriber_id, article_id, held in session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.article_id, Delivery.held).where(
                db.among(session, Delivery.subscriber_id, list(wanted)),
                Delivery.digest_run_id == run_id,
                DELIVERY_PENDING,
            )
        )
        if article_id not in carried[subscriber_id]
    ]
    claimed = {row_id: reader for row_id, reader, held in gone if held not in FOR_NEXT_DIGEST}
    capped = [row_id for row_id, _, held in gone if held in FOR_NEXT_DIGEST]
    for ids, values in (
        (list(claimed), {"status": DeliveryStatus.HELD, "held": hold.CARRY,
                         "digest_run_id": None, "claimed_at": None}),
        (capped, {"status": DeliveryStatus.SKIPPED, "last_error": "no longer matches"}),
    ):  # fmt: skip
        if ids:
            session.execute(
                update(Delivery)
                .where(db.among(session, Delivery.id, ids), DELIVERY_PENDING)
                .values(claim_token=None, updated_at=current, **values)
                .execution_options(synchronize_session=False)
            )
    # A reader who moved the article's topic to instant alerts may have no digest left.
    for subscriber_id in set(claimed.values()):
        reader = session.get(Subscriber, subscriber_id)
        if reader is not None:
            ensure_digest(session, reader)


def _take_held_for_next_digest(
    session: Session,
    run_id: int,
    wanted: dict[int, list[int]],
    token: str,
    current: datetime,
    built_at: datetime,
) -> None:
    """Rows held for these readers' next digest (an alert past their daily cap, say): the rows
    exist, and become this digest's. One the digest does not carry no longer matches the
    reader (they changed what they follow): it is closed, not left waiting for a digest that
    will never take it. One held after the digests were built is left for the next digest."""
    rows = session.execute(
        select(Delivery.id, Delivery.subscriber_id, Delivery.article_id, Delivery.updated_at).where(
            db.among(session, Delivery.subscriber_id, list(wanted)),
            Delivery.status == DeliveryStatus.HELD,
            HELD_FOR_NEXT_DIGEST,
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
            # Still held: another run built from the same rows may have taken them since
            # (PostgreSQL checks the condition again once the other's lock is gone).
            session.execute(
                update(Delivery)
                .where(db.among(session, Delivery.id, ids), Delivery.status == DeliveryStatus.HELD)
                .values(updated_at=current, **values)
                .execution_options(synchronize_session=False)
            )
