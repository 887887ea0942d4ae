"""The confirmation emails a reader is owed (the double opt-in): taking the right to send
one (at most one an interval), recording it owed in the caller's transaction, an admin's
resend and lifting of a suppression. `alerts.sending.confirmations` sends them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from alerts import metrics
from alerts.clock import now
from alerts.db import Prepared, call_after_commit
from alerts.models import ConfirmationEmail, DeliveryStatus, Subscriber, SubscriberStatus
from alerts.subscriptions.forms import Choices

_CONFIRMATION_EMAILS = cast(Table, ConfirmationEmail.__table__)
_OWE = Prepared(
    insert(_CONFIRMATION_EMAILS),
    columns=("subscriber_id", "nonce", "changes", "status", "attempts", "created_at", "updated_at"),
)


@dataclass(frozen=True)
class ConfirmationRequest:
    """A confirmation email now owed (its row is written): the sender is woken after commit."""

    subscriber_id: int
    nonce: str
    changes: Choices | None = None


def claim_confirmation(
    session: Session,
    subscriber: Subscriber,
    interval: timedelta,
    nonce: str,
    changes: Choices | None = None,
) -> bool:
    """Atomically take the right to send a confirmation email (at most one per interval),
    and record it as owed, in the caller's transaction: it goes out once that commits."""
    current = now()
    claimed = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber.id,
            or_(
                Subscriber.confirmation_sent_at.is_(None),
                Subscriber.confirmation_sent_at <= current - interval,
            ),
        )
        .values(confirmation_sent_at=current, confirm_nonce=nonce, updated_at=current)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    # What the UPDATE wrote, without reading the row back.
    for name, value in (
        ("confirmation_sent_at", current),
        ("confirm_nonce", nonce),
        ("updated_at", current),
    ):
        set_committed_value(subscriber, name, value)
    owe_confirmation(session, subscriber.id, nonce, changes, current)
    return True


def owe_confirmation(
    session: Session, subscriber_id: int, nonce: str, changes: Choices | None, at: datetime
) -> None:
    """The confirmation email is owed from the caller's commit (alerts.sending.confirmations
    sends it)."""
    _OWE.run(
        session,
        {
            "subscriber_id": subscriber_id,
            "nonce": nonce,
            "changes": changes.as_payload() if changes is not None else None,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        },
    )


def owe_queued_confirmation(
    session: Session, subscriber_id: int, nonce: str, changes: dict[str, Any] | None
) -> bool:
    """A confirmation queued as a task by a release before the ledger: owed now, if its link
    is still the reader's and the ledger has no email for it yet."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirm_nonce != nonce:
        return False
    known = session.scalar(
        select(ConfirmationEmail.id).where(
            ConfirmationEmail.subscriber_id == subscriber_id, ConfirmationEmail.nonce == nonce
        )
    )
    if known is not None:
        return False
    choices = Choices.from_payload(changes) if changes else None
    owe_confirmation(session, subscriber_id, nonce, choices, now())
    return True


def resend_confirmation(
    session: Session, subscriber_id: int, resend_interval: timedelta
) -> ConfirmationRequest | None:
    """An admin sends a pending reader their confirmation link again (the same link, at most
    one email per interval); None for a reader not pending, or one sent too recently."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status is not SubscriberStatus.PENDING:
        return None
    return email_link_again(session, subscriber, resend_interval)


def email_link_again(
    session: Session, subscriber: Subscriber, resend_interval: timedelta
) -> ConfirmationRequest | None:
    """A pending reader's link (the one they have, or a first one) owed in an email, at most
    one an interval; counted as a signup once the caller commits."""
    nonce = subscriber.confirm_nonce or secrets.token_hex(8)
    if not claim_confirmation(session, subscriber, resend_interval, nonce):
        return None
    call_after_commit(session, metrics.signed_up)
    return ConfirmationRequest(subscriber.id, nonce)


def reactivate(
    session: Session, subscriber_id: int, resend_interval: timedelta
) -> ConfirmationRequest | None:
    """An admin lifts a suppression: the reader is pending again and must confirm again."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status is not SubscriberStatus.BOUNCED:
        return None
    subscriber.status = SubscriberStatus.PENDING
    subscriber.suppressed_at = None
    subscriber.confirmed_at = None
    nonce = subscriber.confirm_nonce or secrets.token_hex(8)
    session.flush()
    if not claim_confirmation(session, subscriber, resend_interval, nonce):
        return None  # pending again; a confirmation went less than an hour ago
    return ConfirmationRequest(subscriber.id, nonce)
