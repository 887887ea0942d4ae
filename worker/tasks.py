"""Celery tasks: thin adapters that take ids and plain values and call the domain."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Any

from celery import shared_task
from flask import current_app

from alerts import db, subscriptions
from alerts.mail import emails
from alerts.subscriptions import Choices

log = logging.getLogger(__name__)

# Connection trouble and 4xx replies are worth retrying; the backoff doubles up to ten minutes.
TRANSIENT_ERRORS = (OSError, smtplib.SMTPException)


@shared_task(
    name="alerts.send_confirmation",
    bind=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=8,
)
def send_confirmation(
    self: Any, subscriber_id: int, nonce: str, changes: dict[str, Any] | None = None
) -> None:
    settings = emails.MailSettings.from_config(current_app.config)
    choices = Choices.from_payload(changes) if changes else None
    rejection = emails.send_confirmation(db.session(), settings, subscriber_id, nonce, choices)
    if rejection is not None and not rejection.permanent:
        raise smtplib.SMTPResponseException(rejection.code, rejection.message)
    if rejection is not None:
        log.warning(
            "confirmation to subscriber %s refused: %s %s",
            subscriber_id,
            rejection.code,
            rejection.message,
        )


@shared_task(name="alerts.purge_unconfirmed")
def purge_unconfirmed() -> int:
    session = db.session()
    days = int(current_app.config["UNCONFIRMED_RETENTION_DAYS"])
    removed = subscriptions.purge_unconfirmed(session, timedelta(days=days))
    session.commit()
    log.info("purged %d unconfirmed sign-ups", removed)
    return removed
