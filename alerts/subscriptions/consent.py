"""Consent records: what a reader agreed to or changed, when and from where (GDPR art. 7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.db import Prepared
from alerts.models import ConsentRecord, Subscriber

_CONSENTS = cast(Table, ConsentRecord.__table__)
_RECORD = Prepared(
    insert(_CONSENTS),
    columns=(
        "subscriber_id",
        "action",
        "source",
        "given_at",
        "ip_address",
        "user_agent",
        "form_version",
        "recorded_by",
    ),
)


@dataclass(frozen=True)
class Consent:
    """Where a consent came from, kept as proof."""

    form_version: str
    source: str = "signup form"
    ip_address: str | None = None
    user_agent: str | None = None


def record(
    session: Session,
    subscriber: Subscriber | int,
    action: str,
    consent: Consent,
    recorded_by: str | None = None,
) -> None:
    """Keep what the reader (or their id) did, with where it came from (and who recorded it
    for them). Part of the caller's transaction."""
    session.flush()  # the reader it is about may be new in the session
    _RECORD.run(
        session,
        {
            "subscriber_id": subscriber if isinstance(subscriber, int) else subscriber.id,
            "action": action[:32],
            "source": consent.source,
            "given_at": now(),
            "ip_address": consent.ip_address,
            "user_agent": consent.user_agent,
            "form_version": consent.form_version,
            "recorded_by": recorded_by[:200] if recorded_by else None,
        },
    )
