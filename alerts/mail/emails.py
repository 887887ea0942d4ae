"""One function per email: it gathers the context, renders, and returns the message bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from alerts import tokens
from alerts.mail import message, smtp
from alerts.mail.render import renderer
from alerts.models import Subscriber, SubscriberStatus
from alerts.subscriptions import Choices


@dataclass(frozen=True)
class MailSettings:
    """The part of the configuration that sending needs, as plain values."""

    base_url: str
    mail_from: str
    site_name: str
    secret_key: str
    confirm_max_age: int
    smtp: smtp.SmtpSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings:
        return cls(
            base_url=config["BASE_URL"],
            mail_from=config["MAIL_FROM"],
            site_name=config["SITE_NAME"],
            secret_key=config["SECRET_KEY"],
            confirm_max_age=int(config["CONFIRM_MAX_AGE"]),
            smtp=smtp.SmtpSettings.from_url(
                config["SMTP_URL"], timeout=float(config["SMTP_TIMEOUT"])
            ),
        )


def confirm_token(
    settings: MailSettings, subscriber_id: int, nonce: str, changes: Choices | None
) -> str:
    payload: dict[str, Any] = {"s": subscriber_id, "n": nonce}
    if changes is not None:
        payload["c"] = changes.as_payload()
    return tokens.make(settings.secret_key, tokens.Purpose.CONFIRM, payload)


def confirmation(
    settings: MailSettings,
    subscriber: Subscriber,
    nonce: str,
    changes: Choices | None,
) -> bytes | None:
    """The double opt-in email. It holds no text the reader typed: only our words and a link."""
    if changes is None and subscriber.status is not SubscriberStatus.PENDING:
        return None  # confirmed (or gone) since the email was queued
    if changes is not None and subscriber.status is not SubscriberStatus.ACTIVE:
        return None
    token = confirm_token(settings, subscriber.id, nonce, changes)
    context = {
        "site_name": settings.site_name,
        "confirm_url": f"{settings.base_url}/confirm/{token}",
        "is_change": changes is not None,
        "valid_days": max(1, settings.confirm_max_age // 86400),
        "base_url": settings.base_url,
    }
    rendered = renderer().render("confirm", context)
    return message.build(rendered, sender=settings.mail_from, recipient=subscriber.email)


def send_confirmation(
    session: Session,
    settings: MailSettings,
    subscriber_id: int,
    nonce: str,
    changes: Choices | None,
) -> smtp.Rejection | None:
    """Send one confirmation email; connection errors raise so the task can retry."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirm_nonce != nonce:
        return None  # erased, or a newer link has gone out since
    raw = confirmation(settings, subscriber, nonce, changes)
    if raw is None:
        return None
    with smtp.connect(settings.smtp) as mailer:
        return mailer.send(raw, message.envelope_sender(settings.mail_from), subscriber.email)
