"""Correction emails: when a publisher marks an update as a correction, each reader who got
the article as an instant alert, in an older version, gets one short email saying what
changed.

The readers are found by `sweep`, first thing in every drain: alerts recorded as sent with
an older version of the article (`deliveries.revision_id`). It looks again at each drain
while the article still has alerts to send (one being sent as the correction was made
carries the old version, and is recorded after), and is done once none is left. Quiet-hours
round-ups record theirs as they are sent (`notice_roundup`).

The notices are the ledger (`revision_notices`, kind `correction`): a batch is claimed with
a token under a lease, each email goes through the one send loop, and its notice is closed
in the same commit as the relay's answer. The loop's keys here are notice ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from alerts import db, revisions
from alerts.clock import now
from alerts.db import insert_ignoring_duplicates
from alerts.mail import emails, followups, smtp
from alerts.models import (
    DELIVERY_PENDING,
    Article,
    ArticleRevision,
    Delivery,
    DeliveryStatus,
    NoticeKind,
    RevisionNotice,
    Subscriber,
)
from alerts.sending import batches, claims, hold, ledger, loop, rows, suppression
from alerts.sending.policy import RetryPolicy

OWED = (
    RevisionNotice.kind == NoticeKind.CORRECTION,
    RevisionNotice.status == DeliveryStatus.PENDING,
)


# A sweep after the first looks at alerts recorded since the one before, less this margin
# (an outcome recorded just before a sweep may commit just after it).
SWEEP_OVERLAP = timedelta(minutes=10)

_notices = cast(Table, RevisionNotice.__table__)


def _notice_rows(revision: ArticleRevision, current: datetime) -> Select[*tuple[Any, ...]]:
    return select(
        literal(revision.id),
        Delivery.subscriber_id,
        literal(NoticeKind.CORRECTION.value),
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(current, Delivery.created_at.type),
        literal(current, Delivery.created_at.type),
    ).where(
        Delivery.article_id == revision.article_id,
        Delivery.status == DeliveryStatus.SENT,
        Delivery.digest_run_id.is_(None),  # an alert (a digest's readers learn in a digest)
        func.coalesce(Delivery.revision_id, 0) < revision.id,
        # Unless they turned correction emails off (a digest of theirs tells them).
        Delivery.subscriber_id.in_(select(Subscriber.id).where(Subscriber.corrections)),
    )


def _insert_notices(session: Session, rows: Select[*tuple[Any, ...]]) -> None:
    session.execute(
        insert_ignoring_duplicates(session, _notices).from_select(
            ["revision_id", "subscriber_id", "kind", "status", "attempts", "created_at",
             "updated_at"],
            rows,
        )
    )  # fmt: skip


def sweep(session: Session) -> int:
    """Write a notice for every reader owed a correction email and not yet noted, for each
    correction still open; returns how many corrections are still open. Commits."""
    current = now()
    still_open = 0
    for revision in session.scalars(
        select(ArticleRevision).where(
            ArticleRevision.correction, ArticleRevision.notices_done_at.is_(None)
        )
    ):
        # Asked first: once nothing is left to send, what follows finds every alert sent.
        sending = session.scalar(
            select(Article.id).where(
                Article.id == revision.article_id,
                or_(
                    Article.fanned_out_at.is_(None),
                    exists().where(
                        Delivery.article_id == Article.id,
                        Delivery.digest_run_id.is_(None),
                        DELIVERY_PENDING,
                    ),
                ),
            )
        )
        rows = _notice_rows(revision, current)
        if revision.swept_at is not None:
            rows = rows.where(Delivery.updated_at >= revision.swept_at - SWEEP_OVERLAP)
        _insert_notices(session, rows)
        revision.swept_at = current
        if sending is None:
            revision.notices_done_at = current
        else:
            still_open += 1
    session.commit()
    return still_open


def notice_roundup(
    session: Session, subscriber: Subscriber, versions: dict[int, int], current: datetime
) -> None:
    """A round-up just sent carried these versions of its articles (article -> version): a
    correction made since is owed to its reader."""
    if not subscriber.corrections or not versions:
        return
    for revision in session.scalars(
        select(ArticleRevision).where(
            ArticleRevision.correction, ArticleRevision.article_id.in_(list(versions))
        )
    ):
        if revision.id > versions[revision.article_id]:
            rows = _notice_rows(revision, current).where(Delivery.subscriber_id == subscriber.id)
            _insert_notices(session, rows)


class CorrectionOutbox(rows.RowOutbox):
    """One batch of correction emails, one notice each."""

    kind = "correction"
    model = RevisionNotice
    owed = OWED

    def __init__(
        self,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        claim: ledger.Claim,
    ) -> None:
        super().__init__(session, settings, policy, claim)
        notices = session.execute(
            select(
                RevisionNotice.id, RevisionNotice.subscriber_id, RevisionNotice.revision_id
            ).where(db.among(session, RevisionNotice.id, claim.subscriber_ids))
        ).all()
        self.reader_of = {notice_id: subscriber_id for notice_id, subscriber_id, _ in notices}
        self.readers = claims.readers_of(session, list(set(self.reader_of.values())))
        self.revisions = {
            revision.id: revision
            for revision in session.scalars(
                select(ArticleRevision).where(
                    ArticleRevision.id.in_({revision_id for _, _, revision_id in notices})
                )
            )
        }
        self.revision_of = {notice_id: revision_id for notice_id, _, revision_id in notices}
        self.shapes: emails.Shapes = {}

    def compose(self, key: int) -> tuple[str, bytes] | None:
        reader = self.readers.get(self.reader_of.get(key, 0))
        revision = self.revisions.get(self.revision_of.get(key, 0))
        current = now()
        if (
            reader is None
            or revision is None
            or not self.session.scalar(
                select(Subscriber.id).where(
                    Subscriber.id == reader.id, Subscriber.receiving(current)
                )
            )
        ):
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="not receiving")
            return None
        if not reader.corrections:
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="turned off")
            return None
        quiet = hold.quiet_until(reader, current)
        if quiet is not None:  # not news that cannot wait: after their quiet hours
            self._close(key, next_attempt_at=quiet)
            return None
        sent = self._as_sent(reader.id, revision)
        return reader.email, followups.correction(
            self.settings, reader, revision, sent, self.shapes
        )

    def _as_sent(self, subscriber_id: int, revision: ArticleRevision) -> ArticleRevision:
        """The first change after the version the reader has (from their alert, or an
        earlier notice): its "before" is what they were sent."""
        carried = self.session.scalar(
            select(func.coalesce(Delivery.revision_id, 0)).where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.article_id == revision.article_id,
            )
        )
        told = revisions.told_up_to(
            self.session, [subscriber_id], [revision.article_id], before=revision.id
        )
        base = max([int(carried or 0), *told.values()])
        first = self.session.scalar(
            select(ArticleRevision)
            .where(
                ArticleRevision.article_id == revision.article_id,
                ArticleRevision.id > base,
                ArticleRevision.id <= revision.id,
            )
            .order_by(ArticleRevision.id)
            .limit(1)
        )
        return first or revision

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            suppression.suppress(self.session, self.reader_of[key], str(rejection))
            return "bounced"
        return self._later_about(key, str(rejection), about_address=rejection.recipient)

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error)

    def _later_about(self, key: int, error: str, about_address: bool) -> str:
        """Retried later; a failure about the address that outlasts the retries counts
        against it."""
        outcome = self._later(key, error)
        if outcome == "failed" and about_address:
            suppression.soft_bounce(self.session, self.reader_of[key], error)
        return outcome


def drain(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    connect: loop.Connect = smtp.connect,
) -> batches.Drain:
    """Find who is owed a correction email, and send them all, batch after batch."""
    sweep(session)
    return CorrectionOutbox.drain(session, settings, policy, connect)
