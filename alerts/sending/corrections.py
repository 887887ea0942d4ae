"""Correction emails: when a publisher marks an update as a correction, each reader who got
the article as an instant alert gets one short email saying what changed.

The notices written with the revision are the ledger (`revision_notices`, kind
`correction`): a batch is claimed with a token under a lease, each email goes through the
one send loop, and its notice is closed in the same commit as the relay's answer. The
loop's keys here are notice ids, one email each.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.mail import emails, smtp
from alerts.models import (
    ArticleRevision,
    DeliveryStatus,
    NoticeKind,
    RevisionNotice,
    Subscriber,
)
from alerts.sending import batches, claims, ledger, loop, suppression
from alerts.sending.policy import RetryPolicy

OWED = (
    RevisionNotice.kind == NoticeKind.CORRECTION,
    RevisionNotice.status == DeliveryStatus.PENDING,
)


def claim_next(session: Session, policy: RetryPolicy) -> ledger.Claim:
    """Take the next correction emails owed (at most a batch); commits. The claim's keys are
    notice ids."""
    token, ids = claims.claim(session, RevisionNotice, list(OWED), policy, now())
    held = list(
        session.scalars(
            select(RevisionNotice.id)
            .where(RevisionNotice.id.in_(ids), RevisionNotice.claim_token == token)
            .order_by(RevisionNotice.subscriber_id, RevisionNotice.id)
        )
    )
    session.commit()
    return ledger.Claim(token, held)


def renew(session: Session, token: str) -> None:
    session.execute(
        update(RevisionNotice)
        .where(RevisionNotice.claim_token == token)
        .values(claimed_at=now())
        .execution_options(synchronize_session=False)
    )


class CorrectionOutbox:
    """One batch of correction emails, one notice each."""

    kind = "correction"

    def __init__(
        self,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        claim: ledger.Claim,
    ) -> None:
        self.session = session
        self.settings = settings
        self.policy = policy
        self.token = claim.token
        rows = session.execute(
            select(
                RevisionNotice.id, RevisionNotice.subscriber_id, RevisionNotice.revision_id
            ).where(RevisionNotice.id.in_(claim.subscriber_ids))
        ).all()
        self.reader_of = {notice_id: subscriber_id for notice_id, subscriber_id, _ in rows}
        self.readers = batches.readers_of(session, list(set(self.reader_of.values())))
        self.revisions = {
            revision.id: revision
            for revision in session.scalars(
                select(ArticleRevision).where(
                    ArticleRevision.id.in_({revision_id for _, _, revision_id in rows})
                )
            )
        }
        self.revision_of = {notice_id: revision_id for notice_id, _, revision_id in rows}
        self.shapes: emails.Shapes = {}

    def _mine(self, key: int) -> ColumnElement[bool]:
        return and_(RevisionNotice.id == key, RevisionNotice.claim_token == self.token)

    def _close(self, key: int, **values: object) -> None:
        self.session.execute(
            update(RevisionNotice)
            .where(self._mine(key))
            .values(claim_token=None, updated_at=now(), **values)
            .execution_options(synchronize_session=False)
        )

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
        return reader.email, emails.correction(self.settings, reader, revision, self.shapes)

    def sent(self, key: int) -> None:
        current = now()
        self._close(
            key, status=DeliveryStatus.SENT, sent_at=current, attempts=RevisionNotice.attempts + 1
        )

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            suppression.suppress(self.session, self.reader_of[key], str(rejection))
            return "bounced"
        return self._later(key, str(rejection), about_address=rejection.recipient)

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error, about_address=False)

    def _later(self, key: int, error: str, about_address: bool) -> str:
        """A temporary failure: tried again after a backoff, until the retry horizon."""
        current = now()
        row = self.session.execute(
            select(RevisionNotice.attempts, RevisionNotice.retry_until).where(self._mine(key))
        ).one_or_none()
        if row is None:
            return "deferred"  # no longer ours
        attempts, retry_until = int(row[0]) + 1, row[1] or current + self.policy.horizon
        if current >= retry_until:
            self._close(
                key, status=DeliveryStatus.FAILED, attempts=attempts, last_error=error[:2000]
            )
            if about_address:
                suppression.soft_bounce(self.session, self.reader_of[key], error)
            return "failed"
        self._close(
            key,
            attempts=attempts,
            retry_until=retry_until,
            next_attempt_at=current + self.policy.delay_td(attempts),
            last_error=error[:2000],
        )
        return "deferred"

    def release(self, keys: Sequence[int], error: str) -> None:
        for key in keys:
            self._close(key, last_error=error[:2000])


def drain(
    session: Session,
    settings: emails.MailSettings,
    policy: RetryPolicy,
    connect: loop.Connect = smtp.connect,
) -> batches.Drain:
    """Send every correction email owed, batch after batch."""
    return batches.drain_batches(
        session,
        settings,
        policy,
        connect,
        claim_next=lambda: claim_next(session, policy),
        renew=lambda token: partial(renew, token=token),
        outbox=lambda claim: CorrectionOutbox(session, settings, policy, claim),
    )
