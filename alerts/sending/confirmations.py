"""Confirmation emails (the double opt-in): owed from the commit of the signup that asks for
one, sent in batches over one connection, closed with the relay's answer.

The signup writes a `confirmation_emails` row in its own transaction
(`subscriptions.lifecycle`), so an email is owed
exactly when the signup is recorded: a broker that is down when the reader presses the
button delays the email, never loses it. After the commit the web process wakes the sender
(`WAKE_KEY`: one task queued at a time, however many readers sign up meanwhile); beat drains
whatever a lost wake-up left. The rows are claimed with a token under a lease, each email
goes through the one send loop, and its row is closed in the same commit as the relay's
answer (`rows`). The loop's keys here are row ids.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from alerts import db
from alerts.mail import emails, smtp
from alerts.models import (
    CONFIRMATION_PENDING,
    ConfirmationEmail,
    DeliveryStatus,
    Subscriber,
    Subscription,
)
from alerts.sending import ledger, rows
from alerts.sending.policy import RetryPolicy
from alerts.subscriptions.forms import Choices

# Set by the web process when it queues the sender, deleted by the task before it looks for
# rows: a signup that finds it set knows a task that has not looked yet will see its row.
WAKE_KEY = "alerts:confirmations:wake"
# How long a wake-up may stand without its task starting (a message lost with the broker):
# after that the next signup queues another; beat drains in between.
WAKE_TTL = 60


class ConfirmationOutbox(rows.RowOutbox):
    """One batch of confirmation emails, one row each."""

    kind = "confirmation"
    model = ConfirmationEmail
    owed = (CONFIRMATION_PENDING,)

    def __init__(
        self,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        claim: ledger.Claim,
    ) -> None:
        super().__init__(session, settings, policy, claim)
        self.rows = {
            row.id: row
            for row in session.scalars(
                select(ConfirmationEmail).where(
                    db.among(session, ConfirmationEmail.id, claim.subscriber_ids)
                )
            )
        }
        # Readers with the topics the email lists, in two queries for the whole batch.
        self.readers = {
            reader.id: reader
            for reader in session.scalars(
                select(Subscriber)
                .where(
                    db.among(
                        session, Subscriber.id, {row.subscriber_id for row in self.rows.values()}
                    )
                )
                .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
            )
        }

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

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            # Not suppressed: the address was never confirmed, and a typo bounces.
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            return "bounced"
        return self._later(key, str(rejection))

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error)


drain = ConfirmationOutbox.drain
