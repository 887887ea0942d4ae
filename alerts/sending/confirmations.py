"""Confirmation emails (the double opt-in): owed from the commit of the signup that asks for
one, sent in batches over one connection, closed with the relay's answer.

The signup writes a `confirmation_emails` row in its own transaction
(`subscriptions.lifecycle`), so an email is owed
exactly when the signup is recorded: a broker that is down when the reader presses the
button delays the email, never loses it. After the commit the web process wakes the sender
(`WAKE_KEY`: one task queued at a time, however many readers sign up meanwhile); beat drains
whatever a lost wake-up left. The rows are claimed with a token under a lease, each email
goes through the one send loop, and its row is closed in the same commit as the relay's
answer. The loop's keys here are row ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from alerts.clock import now
from alerts.mail import emails, smtp
from alerts.models import (
    CONFIRMATION_PENDING,
    ConfirmationEmail,
    DeliveryStatus,
    Subscriber,
    Subscription,
)
from alerts.sending import batches, claims, ledger, loop
from alerts.sending.policy import RetryPolicy
from alerts.subscriptions.forms import Choices

# Set by the web process when it queues the sender, deleted by the task before it looks for
# rows: a signup that finds it set knows a task that has not looked yet will see its row.
WAKE_KEY = "alerts:confirmations:wake"
# How long a wake-up may stand without its task starting (a message lost with the broker):
# after that the next signup queues another; beat drains in between.
WAKE_TTL = 60

OWED = (CONFIRMATION_PENDING,)


def claim_next(session: Session, policy: RetryPolicy) -> ledger.Claim:
    """Take the next confirmation emails owed (at most a batch); commits. The claim's keys
    are row ids."""
    token, ids = claims.claim(session, ConfirmationEmail, list(OWED), policy, now())
    held = list(
        session.scalars(
            select(ConfirmationEmail.id)
            .where(ConfirmationEmail.id.in_(ids), ConfirmationEmail.claim_token == token)
            .order_by(ConfirmationEmail.subscriber_id, ConfirmationEmail.id)
        )
    )
    session.commit()
    return ledger.Claim(token, held)


class ConfirmationOutbox:
    """One batch of confirmation emails, one row each."""

    kind = "confirmation"

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
        self.rows = {
            row.id: row
            for row in session.scalars(
                select(ConfirmationEmail).where(ConfirmationEmail.id.in_(claim.subscriber_ids))
            )
        }
        # Readers with the topics the email lists, in two queries for the whole batch.
        self.readers = {
            reader.id: reader
            for reader in session.scalars(
                select(Subscriber)
                .where(Subscriber.id.in_({row.subscriber_id for row in self.rows.values()}))
                .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
            )
        }

    def _mine(self, key: int) -> ColumnElement[bool]:
        return and_(ConfirmationEmail.id == key, ConfirmationEmail.claim_token == self.token)

    def _close(self, key: int, **values: object) -> None:
        self.session.execute(
            update(ConfirmationEmail)
            .where(self._mine(key))
            .values(claim_token=None, updated_at=now(), **values)
            .execution_options(synchronize_session=False)
        )

    def prepare(self, key: int) -> None:
        """Nothing ahead: each is composed under the reader's current state."""

    def forget_prepared(self) -> None:
        pass

    def compose(self, key: int) -> tuple[str, bytes] | None:
        row = self.rows.get(key)
        reader = self.readers.get(row.subscriber_id) if row is not None else None
        if row is None or reader is None:
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="reader erased")
            return None
        # The reader as they are now, not as the batch found them.
        nonce, status = self.session.execute(
            select(Subscriber.confirm_nonce, Subscriber.status).where(Subscriber.id == reader.id)
        ).one()
        if nonce != row.nonce:
            # Confirmed, or a newer link went out since: this one would not work.
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="link replaced")
            return None
        if self._superseded(row):
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="superseded")
            return None
        set_committed_value(reader, "confirm_nonce", nonce)
        set_committed_value(reader, "status", status)
        changes = Choices.from_payload(row.changes) if row.changes else None
        raw = emails.confirmation(self.settings, reader, row.nonce, changes)
        if raw is None:
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="no longer pending")
            return None
        return reader.email, raw

    def _superseded(self, row: ConfirmationEmail) -> bool:
        """Another email with the same link makes this one redundant: a newer one waiting (the
        reader signed up again, or an admin resent, while this one waited for a retry), or one
        that went out since this one was asked for. An older one sent before it does not:
        a resend is what the reader asked for."""
        same_link = (
            ConfirmationEmail.subscriber_id == row.subscriber_id,
            ConfirmationEmail.nonce == row.nonce,
            ConfirmationEmail.id != row.id,
        )
        other = self.session.scalar(
            select(ConfirmationEmail.id)
            .where(
                *same_link,
                or_(
                    and_(CONFIRMATION_PENDING, ConfirmationEmail.id > row.id),
                    and_(
                        ConfirmationEmail.status == DeliveryStatus.SENT,
                        ConfirmationEmail.sent_at >= row.created_at,
                    ),
                ),
            )
            .limit(1)
        )
        return other is not None

    def sent(self, key: int) -> None:
        self._close(
            key,
            status=DeliveryStatus.SENT,
            sent_at=now(),
            attempts=ConfirmationEmail.attempts + 1,
        )

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            # Not suppressed: the address was never confirmed, and a typo bounces.
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            return "bounced"
        return self._later(key, str(rejection))

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error)

    def _later(self, key: int, error: str) -> str:
        """A temporary failure: tried again after a backoff, until the retry horizon."""
        current = now()
        row = self.session.execute(
            select(ConfirmationEmail.attempts, ConfirmationEmail.retry_until).where(self._mine(key))
        ).one_or_none()
        if row is None:
            return "deferred"  # no longer ours
        attempts, retry_until, again = self.policy.after_failure(int(row[0]), row[1], current)
        if again is None:
            self._close(
                key, status=DeliveryStatus.FAILED, attempts=attempts, last_error=error[:2000]
            )
            return "failed"
        self._close(
            key,
            attempts=attempts,
            retry_until=retry_until,
            next_attempt_at=again,
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
    """Send every confirmation email owed, batch after batch."""
    return batches.drain_batches(
        session,
        settings,
        policy,
        connect,
        claim_next=lambda: claim_next(session, policy),
        renew=lambda token: partial(claims.renew, model=ConfirmationEmail, token=token),
        outbox=lambda claim: ConfirmationOutbox(session, settings, policy, claim),
    )
