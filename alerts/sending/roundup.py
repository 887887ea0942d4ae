"""The round-up at the end of a reader's quiet hours: every alert held during them, in one
email, sent once, through the same claim, lease and send loop as every other email.

The held delivery rows are the ledger: a batch of readers whose quiet hours are over is
claimed by writing a token on all their held rows; the round-up is sent; the rows become
sent in the same commit as the relay's answer. A worker that dies mid-batch leaves a lease
that goes stale and is taken over, as for alerts and digests.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from alerts import db, matching, revisions
from alerts.clock import now
from alerts.digests import DigestItem
from alerts.mail import emails, followups, smtp
from alerts.models import Article, ArticleTopic, Delivery, DeliveryStatus, Subscriber
from alerts.sending import batches, claims, corrections, ledger, loop, suppression
from alerts.sending.hold import QUIET
from alerts.sending.policy import RetryPolicy
from alerts.topic_tree import TopicTree


def _due(current: datetime, policy: RetryPolicy) -> ColumnElement[bool]:
    """Held in quiet hours that are over, and held by no live task."""
    return and_(
        Delivery.status == DeliveryStatus.HELD,
        Delivery.held == QUIET,
        Delivery.held_until <= current,
        claims.free(Delivery, current, policy),
    )


def claim_next(session: Session, policy: RetryPolicy) -> ledger.Claim:
    """Take the next readers whose quiet hours are over, with all their held alerts; commits."""
    current = now()
    token = secrets.token_hex(8)
    readers = list(
        session.scalars(
            select(Delivery.subscriber_id)
            .where(_due(current, policy))
            .distinct()
            .order_by(Delivery.subscriber_id)
            .limit(policy.batch_size)
        )
    )
    if readers:
        session.execute(
            update(Delivery)
            .where(db.among(session, Delivery.subscriber_id, readers), _due(current, policy))
            .values(claim_token=token, claimed_at=current)
            .execution_options(synchronize_session=False)
        )
    held = sorted(
        set(session.scalars(select(Delivery.subscriber_id).where(Delivery.claim_token == token)))
    )
    session.commit()
    return ledger.Claim(token, held)


class RoundupOutbox:
    """One batch of round-ups, one reader each."""

    kind = "alert"

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
        self.readers = claims.readers_of(session, claim.subscriber_ids)
        self.tree = TopicTree.load(session)
        self.versions: dict[int, dict[int, int]] = {}  # reader -> article -> version carried

    def _mine(self, key: int) -> ColumnElement[bool]:
        return and_(Delivery.subscriber_id == key, Delivery.claim_token == self.token)

    def _close(self, key: int, articles: list[int] | None = None, **values: object) -> None:
        """Close the reader's rows this batch holds (of `articles` only, if given)."""
        only = [Delivery.article_id.in_(articles)] if articles is not None else []
        self.session.execute(
            update(Delivery)
            .where(self._mine(key), *only)
            .values(claim_token=None, updated_at=now(), **values)
            .execution_options(synchronize_session=False)
        )

    def prepare(self, key: int) -> None:
        """Nothing ahead: few are sent, and each is composed under the reader's checks."""

    def forget_prepared(self) -> None:
        pass

    def compose(self, key: int) -> tuple[str, bytes] | None:
        reader = self.readers.get(key)
        current = now()
        if reader is None or not self.session.scalar(
            select(Subscriber.id).where(Subscriber.id == key, Subscriber.receiving(current))
        ):
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="not receiving")
            return None
        articles = revisions.load(
            self.session, Article.id.in_(select(Delivery.article_id).where(self._mine(key)))
        )
        wants = matching.interests(self.session, [key], matching.ALL_FREQUENCIES).get(key)
        items, gone = [], []
        for article in articles:
            own = self.session.scalars(
                select(ArticleTopic.topic_id).where(ArticleTopic.article_id == article.id)
            ).all()
            reason = (
                matching.match(wants, matching.scope_of(article, own, self.tree), self.tree)
                if wants is not None
                else None
            )
            if reason is None:
                gone.append(article.id)  # they no longer follow what it matched
            else:
                items.append(DigestItem(article, reason))
        if gone:
            self.session.execute(
                update(Delivery)
                .where(self._mine(key), Delivery.article_id.in_(gone))
                .values(status=DeliveryStatus.SKIPPED, claim_token=None, last_error="no match")
                .execution_options(synchronize_session=False)
            )
        if not items:
            return None
        # What the email carries, and the versions it shows: what `sent` records.
        self.versions[key] = {item.article.id: item.article.version for item in items}
        return reader.email, followups.roundup(self.settings, reader, items)

    def sent(self, key: int) -> None:
        current = now()
        versions = self.versions.get(key, {})
        for article_id, version in versions.items():
            self.session.execute(
                update(Delivery)
                .where(self._mine(key), Delivery.article_id == article_id)
                .values(revision_id=version)
                .execution_options(synchronize_session=False)
            )
        # The articles the email carried: one that no longer matched was closed by compose
        # or, if that was rolled back (a lost connection), is met again at the next try.
        self._close(
            key,
            list(versions),
            status=DeliveryStatus.SENT,
            sent_at=current,
            attempts=Delivery.attempts + 1,
        )
        # A correction made while it was being sent is owed to the reader.
        corrections.notice_roundup(self.session, self.readers[key], versions, current)

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            suppression.suppress(self.session, key, str(rejection))
            return "bounced"
        return self._later(key, str(rejection), about_address=rejection.recipient)

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error, about_address=False)

    def _later(self, key: int, error: str, about_address: bool) -> str:
        """A temporary failure: the round-up is tried again after a backoff, still as one
        email, until the retry horizon; then failed."""
        current = now()
        attempts, retry_until = self.session.execute(
            select(Delivery.attempts, Delivery.retry_until).where(self._mine(key)).limit(1)
        ).one()
        attempts, retry_until, again = self.policy.after_failure(
            int(attempts), retry_until, current
        )
        if again is None:
            self._close(key, status=DeliveryStatus.FAILED, last_error=error[:2000])
            if about_address:
                suppression.soft_bounce(self.session, key, error)
            return "failed"
        self._close(
            key,
            attempts=attempts,
            retry_until=retry_until,
            held_until=again,
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
    """Send every round-up due, batch after batch."""
    return batches.drain_batches(
        session,
        settings,
        policy,
        connect,
        claim_next=lambda: claim_next(session, policy),
        renew=lambda token: partial(claims.renew, model=Delivery, token=token),
        outbox=lambda claim: RoundupOutbox(session, settings, policy, claim),
    )
