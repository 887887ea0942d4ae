"""Ledgers of one row per email (confirmation emails, correction notices): how a batch of
them is claimed, and how each row is closed with the relay's answer.

An outbox here is keyed by row id. Its subclass says which table (`model`), which rows are
owed (`owed`), and how one email is composed and refused; claiming, recording a send, a
retry after a backoff and giving a batch back are the same for every such ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, partial
from typing import Any, ClassVar, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, select, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.mail import emails, smtp
from alerts.models import ConfirmationEmail, DeliveryStatus, RevisionNotice, UTCDateTime
from alerts.sending import batches, claims, ledger, loop
from alerts.sending.policy import RetryPolicy

RowLedger = type[ConfirmationEmail] | type[RevisionNotice]


def claim_next(
    session: Session, model: RowLedger, owed: Sequence[Any], policy: RetryPolicy
) -> ledger.Claim:
    """Take the next rows owed (at most a batch), in reader order; commits. The claim's keys
    are row ids."""
    token, ids = claims.claim(session, model, list(owed), policy, now())
    held = list(
        session.scalars(
            select(model.id)
            .where(db.among(session, model.id, ids), model.claim_token == token)
            .order_by(model.subscriber_id, model.id)
        )
    )
    session.commit()
    return ledger.Claim(token, held)


@cache
def _sent(model: RowLedger) -> db.Prepared:
    """Closing a row as sent, once per email: compiled once per ledger."""
    table = cast(Table, model.__table__)
    return db.Prepared(
        update(table)
        .where(table.c.id == bindparam("row"), table.c.claim_token == bindparam("token"))
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=bindparam("at", type_=UTCDateTime()),
            updated_at=bindparam("at", type_=UTCDateTime()),
            attempts=table.c.attempts + 1,
            claim_token=None,
        )
    )


class RowOutbox:
    """One batch of a one-row-per-email ledger, held by the claim's token."""

    kind: str
    model: ClassVar[RowLedger]
    owed: ClassVar[tuple[ColumnElement[bool], ...]]

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

    @classmethod
    def drain(
        cls,
        session: Session,
        settings: emails.MailSettings,
        policy: RetryPolicy,
        connect: loop.Connect = smtp.connect,
    ) -> batches.Drain:
        """Send every email owed, batch after batch."""
        return batches.drain_batches(
            session,
            settings,
            policy,
            connect,
            claim_next=lambda: claim_next(session, cls.model, cls.owed, policy),
            renew=lambda token: partial(claims.renew, model=cls.model, token=token),
            outbox=lambda claim: cls(session, settings, policy, claim),
        )

    def _mine(self, key: int) -> ColumnElement[bool]:
        return and_(self.model.id == key, self.model.claim_token == self.token)

    def _close(self, key: int, **values: object) -> None:
        """Record on the row, if it is still this batch's, and let it go."""
        self.session.execute(
            update(self.model)
            .where(self._mine(key))
            .values(claim_token=None, updated_at=now(), **values)
            .execution_options(synchronize_session=False)
        )

    def compose(self, key: int) -> tuple[str, bytes] | None:
        """The reader's address and the email, or None (its row closed) when none is owed."""
        raise NotImplementedError

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        """Record the relay's refusal; returns what became of the email."""
        raise NotImplementedError

    def dropped(self, key: int, error: str) -> str:
        """Record a connection lost with the email's fate unknown; returns what became of it."""
        raise NotImplementedError

    def prepare(self, key: int) -> None:
        """Nothing ahead: each is composed under the reader's state at that moment."""

    def forget_prepared(self) -> None:
        pass

    def sent(self, key: int) -> None:
        _sent(self.model).run(self.session, {"row": key, "token": self.token, "at": now()})

    def _later(self, key: int, error: str) -> str:
        """A temporary failure: tried again after a backoff, until the retry horizon;
        returns "deferred", or "failed" once the horizon is past."""
        current = now()
        row = self.session.execute(
            select(self.model.attempts, self.model.retry_until).where(self._mine(key))
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
