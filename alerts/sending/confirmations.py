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

from sqlalchemy import and_, bindparam, exists, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from alerts import db
from alerts.db import Prepared
from alerts.mail import emails, smtp
from alerts.models import (
    CONFIRMATION_PENDING,
    ConfirmationEmail,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    UTCDateTime,
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
# While signups keep coming, the woken sender looks again after this pause: what they added
# meanwhile goes out as one batch (a confirmation is a fifth of a second later at most).
GATHER_SECONDS = 0.2


# The reader's link and status as they are now, and whether another email with the same link
# makes this one redundant: a newer one waiting (the reader signed up again, or an admin
# resent, while this one waited for a retry), or one that went out since this one was asked
# for. An older one sent before it does not: a resend is what the reader asked for.
_NOW = Prepared(
    select(
        Subscriber.confirm_nonce,
        Subscriber.status,
        exists().where(
            ConfirmationEmail.subscriber_id == Subscriber.id,
            ConfirmationEmail.nonce == bindparam("nonce"),
            ConfirmationEmail.id != bindparam("row"),
            or_(
                and_(CONFIRMATION_PENDING, ConfirmationEmail.id > bindparam("row")),
                and_(
                    ConfirmationEmail.status == DeliveryStatus.SENT,
                    ConfirmationEmail.sent_at >= bindparam("asked", type_=UTCDateTime()),
                ),
            ),
        ),
    ).where(Subscriber.id == bindparam("reader"))
)


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
        # The reader as they are now, not as the batch found them, in one statement.
        [(nonce, status, superseded)] = _NOW.rows(
            self.session,
            {"reader": reader.id, "nonce": row.nonce, "row": row.id, "asked": row.created_at},
        )
        if nonce != row.nonce:
            # Confirmed, or a newer link went out since: this one would not work.
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="link replaced")
            return None
        if superseded:
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="superseded")
            return None
        status = SubscriberStatus(status)
        set_committed_value(reader, "confirm_nonce", nonce)
        set_committed_value(reader, "status", status)
        changes = Choices.from_payload(row.changes) if row.changes else None
        raw = emails.confirmation(self.settings, reader, row.nonce, changes)
        if raw is None:
            self._close(key, status=DeliveryStatus.SKIPPED, last_error="no longer pending")
            return None
        return reader.email, raw

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        if rejection.permanent:
            # Not suppressed: the address was never confirmed, and a typo bounces.
            self._close(key, status=DeliveryStatus.BOUNCED, last_error=str(rejection)[:2000])
            return "bounced"
        return self._later(key, str(rejection))

    def dropped(self, key: int, error: str) -> str:
        return self._later(key, error)


drain = ConfirmationOutbox.drain
