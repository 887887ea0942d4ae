"""The relay's circuit breaker, shared by every worker through the database.

A relay that cannot be reached, or that drops us before accepting anything, is an outage,
not the readers' fault: no batch starts while the breaker is open, the batches that found it
down hand their readers back untried, and the first task after `retry_at` probes it again.
Each failed probe doubles the wait (up to RELAY_BACKOFF_MAX); one good connection closes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import insert_ignoring_duplicates, rowcount
from alerts.mail.smtp import SmtpSettings
from alerts.models import RelayStatus
from alerts.sending.policy import RetryPolicy


def key_of(settings: SmtpSettings) -> str:
    return f"{settings.host}:{settings.port}"


def down_until(session: Session, relay: str) -> datetime | None:
    """When the relay may be tried again, while the breaker is open; else None."""
    retry_at: datetime | None = session.scalar(
        select(RelayStatus.retry_at).where(RelayStatus.relay == relay)
    )
    return retry_at if retry_at is not None and retry_at > now() else None


def may_send(session: Session, relay: str, policy: RetryPolicy) -> datetime | None:
    """None when a batch may start; else when to look again. Once the breaker's wait is
    over, one task only (the one whose update matches) probes the relay: the others wait
    for its outcome instead of all connecting at once. Commits."""
    down = down_until(session, relay)
    if down is not None:
        return down
    current = now()
    failures = session.scalar(select(RelayStatus.failures).where(RelayStatus.relay == relay))
    if not failures:
        return None
    probe_until = current + timedelta(seconds=policy.relay_delay(int(failures)))
    probing = rowcount(
        session.execute(
            update(RelayStatus)
            .where(
                RelayStatus.relay == relay,
                RelayStatus.failures > 0,
                or_(RelayStatus.retry_at.is_(None), RelayStatus.retry_at <= current),
            )
            .values(retry_at=probe_until, updated_at=current)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    return None if probing else down_until(session, relay) or probe_until


def trouble(session: Session, relay: str, error: str, policy: RetryPolicy) -> datetime:
    """Record one more failure in a row and open the breaker; returns when to probe again.
    The caller commits."""
    current = now()
    session.execute(
        insert_ignoring_duplicates(session, RelayStatus.__table__),
        [{"relay": relay, "failures": 0, "updated_at": current}],
    )
    failures = int(
        session.scalar(select(RelayStatus.failures).where(RelayStatus.relay == relay)) or 0
    )
    retry_at = current + timedelta(seconds=policy.relay_delay(failures + 1))
    session.execute(
        update(RelayStatus)
        .where(RelayStatus.relay == relay)
        .values(
            failures=RelayStatus.failures + 1,
            down_since=session.scalar(
                select(RelayStatus.down_since).where(RelayStatus.relay == relay)
            )
            or current,
            retry_at=retry_at,
            last_error=error[:2000],
            updated_at=current,
        )
        .execution_options(synchronize_session=False)
    )
    return retry_at


def recovered(session: Session, relay: str) -> None:
    """The relay accepted a message: close the breaker (a no-op write when it was closed)."""
    current = now()
    session.execute(
        update(RelayStatus)
        .where(RelayStatus.relay == relay, RelayStatus.failures > 0)
        .values(failures=0, down_since=None, retry_at=None, last_ok_at=current, updated_at=current)
        .execution_options(synchronize_session=False)
    )


def status(session: Session) -> list[RelayStatus]:
    """Every relay the workers have had trouble with, for the dashboard."""
    return list(session.scalars(select(RelayStatus).order_by(RelayStatus.relay)))
