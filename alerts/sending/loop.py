"""The one send loop, for alerts and digests alike: one SMTP connection per batch, each
outcome committed before the next message, the relay's trouble kept apart from the readers'.

The loop knows nothing of articles or digests: an `Outbox` composes each reader's message
and records what happened to it in its own ledger (listmonk's manager works the same way,
against a store and a messenger).
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from alerts import db, metrics
from alerts.mail import smtp
from alerts.sending import relay
from alerts.sending.lease import Lease
from alerts.sending.policy import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

Connect = Callable[[smtp.SmtpSettings], AbstractContextManager[smtp.Mailer]]


class Outbox(Protocol):
    """One batch of one kind of email, as the send loop sees it. Every method records in the
    session; the loop commits after each message."""

    kind: str  # "alert" or "digest", as the metrics name it

    def compose(self, key: int) -> tuple[str, bytes] | None:
        """(address, message bytes) for this reader, or None when nothing is to be sent
        (recorded as skipped by the outbox)."""

    def prepare(self, key: int) -> None:
        """Work compose(key) would do that records nothing and reads nothing from the
        database (rendering), done ahead while the relay reads the previous message; compose
        uses it if it still holds."""

    def forget_prepared(self) -> None:
        """Drop what was prepared: the session rolled back."""

    def sent(self, key: int) -> None:
        """The relay accepted the message."""

    def refused(self, key: int, rejection: smtp.Rejection) -> str:
        """The relay refused this message or its address: returns "bounced" (permanent),
        "deferred" (retried later) or "failed" (past the retry horizon)."""

    def dropped(self, key: int, error: str) -> str:
        """The connection broke after the message's data was sent: the relay may have kept
        it. Returns "deferred" or "failed"."""

    def release(self, keys: Sequence[int], error: str) -> None:
        """Hand these back untried: the relay's trouble, nothing is counted against them."""


@dataclass
class Outcome:
    sent: int = 0
    bounced: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    dropped: int = 0  # connections lost after a message's data: possible duplicates
    relay_down_until: datetime | None = None
    lease_lost: bool = False

    COUNTS = ("sent", "bounced", "deferred", "failed", "skipped", "dropped")

    def add(self, other: Outcome) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.relay_down_until = other.relay_down_until or self.relay_down_until
        self.lease_lost = self.lease_lost or other.lease_lost

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def handled(self) -> int:
        """Rows the batch closed or put off, whatever became of them."""
        return sum(getattr(self, name) for name in self.COUNTS)


def _prepare(outbox: Outbox, key: int | None) -> None:
    """Between a message's data and the relay's answer, nothing may fail: anything wrong with
    the next reader's message is met again, and recorded, when it is composed."""
    if key is not None:
        try:
            outbox.prepare(key)
        except Exception:
            log.debug("preparing %s %s failed; composed again in turn", outbox.kind, key)


def _compose(session: Session, outbox: Outbox, key: int) -> tuple[str, bytes] | None:
    """The reader's message; when there is none, the outbox recorded why: committed."""
    composed = outbox.compose(key)
    if composed is None:
        session.commit()
    return composed


def _record(
    session: Session,
    outbox: Outbox,
    key: int,
    rejection: smtp.Rejection | None,
    relay_back: str | None,
) -> str:
    """Record what became of a message the relay answered, and commit; returns it."""
    if rejection is not None:
        result = outbox.refused(key, rejection)
    else:
        outbox.sent(key)
        result = "sent"
        if relay_back is not None:
            relay.recovered(session, relay_back)
    session.commit()
    return result


def send(
    session: Session,
    outbox: Outbox,
    keys: Sequence[int],
    settings: smtp.SmtpSettings,
    sender: str,
    policy: RetryPolicy,
    lease: Lease | None = None,
    connect: Connect = smtp.connect,
) -> Outcome:
    """Send the batch in order over one connection (a new one after a drop)."""
    outcome = Outcome()
    relay_key = relay.key_of(settings)
    remaining = deque(keys)
    failures = 0  # connections in a row that broke before the relay accepted anything
    ahead = True  # the next reader's message is prepared while the relay reads one

    def rolled_back() -> None:
        # The batch's objects are expired: preparing would read them again between a
        # message's data and its answer. Composed in turn from here on.
        nonlocal ahead
        ahead = False
        outbox.forget_prepared()

    def outlasting(step: Callable[[], T]) -> T:
        # Run again over a new connection if the database's was lost, up to the lease's
        # stale limit (past it, another worker may take the rows over).
        return db.outlasting_lost_connections(
            session, step, policy.stale_after.total_seconds(), rolled_back
        )

    while remaining:
        accepted = 0
        mailer: smtp.Mailer | None = None
        try:
            with connect(settings) as mailer:
                while remaining:
                    key = remaining[0]
                    composed = outlasting(partial(_compose, session, outbox, key))
                    if lease is not None and lease.lost:
                        # Another worker may take these over any moment: send none of them.
                        outcome.lease_lost = True
                        session.rollback()
                        return outcome
                    result = "skipped"
                    if composed is None:
                        outcome.skipped += 1
                    else:
                        address, raw = composed
                        started = time.perf_counter()
                        upcoming = remaining[1] if ahead and len(remaining) > 1 else None
                        rejection = mailer.send(
                            raw, sender, address, partial(_prepare, outbox, upcoming)
                        )
                        took = time.perf_counter() - started
                        # Recorded before the next message: a crash from here on repeats
                        # nothing. Only a message accepted proves the relay is back: one that
                        # answers connections and then refuses stays "down".
                        result = outlasting(
                            partial(
                                _record,
                                session,
                                outbox,
                                key,
                                rejection,
                                None if accepted else relay_key,
                            )
                        )
                        if result == "sent":
                            accepted += 1
                            failures = 0
                        outcome.count(result)
                    remaining.popleft()
                    if composed is not None:  # counted once recorded; counting never raises
                        metrics.smtp_latency(outbox.kind, took)
                        metrics.email(outbox.kind, result)
        except (OSError, smtplib.SMTPException) as error:
            session.rollback()
            rolled_back()
            text = f"{type(error).__name__}: {error}"
            if mailer is not None and mailer.in_data and remaining:
                # The relay may have kept it; SMTP cannot tell. Retried after a backoff of
                # its own, so a message that breaks the connection cannot stall the batch.
                result = outbox.dropped(remaining.popleft(), text)
                outcome.count(result)
                outcome.dropped += 1
                session.commit()
                metrics.email(outbox.kind, result)
            if accepted == 0:
                failures += 1
            if failures > policy.reconnects:
                outbox.release(list(remaining), text)
                outcome.relay_down_until = relay.trouble(session, relay_key, text, policy)
                session.commit()
                return outcome
            if accepted == 0:
                time.sleep(min(0.2 * 2**failures, 2.0))
    return outcome
