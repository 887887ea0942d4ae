"""Taking a batch of ledger rows under a lease: the one way alert deliveries, digest
recipients, correction notices and confirmation emails are claimed by a send task.

A row is free when nobody holds it or its holder's lease ran out (`stale_after`), and due
when it waits for no retry time. The claim writes a new token on the rows it takes; every
outcome is then recorded with that token, so a task whose lease was taken over records nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.db import rowcount
from alerts.models import (
    ConfirmationEmail,
    Delivery,
    DigestRecipient,
    RevisionNotice,
    Subscriber,
)
from alerts.sending.policy import RetryPolicy

Ledger = type[Delivery] | type[DigestRecipient] | type[RevisionNotice] | type[ConfirmationEmail]


def free(model: Ledger, current: datetime, policy: RetryPolicy) -> ColumnElement[bool]:
    """Held by nobody, or by a task whose lease ran out."""
    return or_(model.claim_token.is_(None), model.claimed_at < current - policy.stale_after)


def due(model: Ledger, current: datetime) -> ColumnElement[bool]:
    """Not waiting for a retry time."""
    return or_(model.next_attempt_at.is_(None), model.next_attempt_at <= current)


def renew(session: Session, model: Ledger, token: str) -> int:
    """Keep a batch's lease fresh (the heartbeat): every row the token holds; returns how
    many."""
    return rowcount(
        session.execute(
            update(model)
            .where(model.claim_token == token)
            .values(claimed_at=now())
            .execution_options(synchronize_session=False)
        )
    )


def claim(
    session: Session,
    model: Ledger,
    open_rows: list[Any],
    policy: RetryPolicy,
    current: datetime,
    batch_size: int | None = None,
) -> tuple[str, list[int]]:
    """Take at most a batch (`batch_size`, the policy's by default) of the free, due rows
    among `open_rows` (conditions), in reader order; returns the new token and the ids of
    the rows chosen (those it holds carry it)."""
    token = secrets.token_hex(8)
    chosen = (
        select(model.id)
        .where(*open_rows, free(model, current, policy), due(model, current))
        .order_by(model.subscriber_id)
        .limit(batch_size or policy.batch_size)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Rows another task is claiming right now are passed over, not waited for.
        chosen = chosen.with_for_update(skip_locked=True)
    # Chosen first, then updated: a LIMIT inside UPDATE ... WHERE id IN (...) may take more
    # rows than the limit on PostgreSQL, where the subquery can run again per row. On
    # SQLite two tasks may choose the same rows; the one that finds them taken chooses again.
    ids: list[int] = []
    for _ in range(20):
        ids = list(session.scalars(chosen))
        if not ids:
            break
        taken = rowcount(
            session.execute(
                update(model)
                .where(db.among(session, model.id, ids), *open_rows, free(model, current, policy))
                .values(claim_token=token, claimed_at=current, updated_at=current)
                .execution_options(synchronize_session=False)
            )
        )
        if taken:
            break
        session.commit()
    return token, ids


def readers_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, Subscriber]:
    """A batch's readers by id, loaded in one query."""
    return {
        reader.id: reader
        for reader in session.scalars(
            select(Subscriber).where(db.among(session, Subscriber.id, subscriber_ids))
        )
    }
