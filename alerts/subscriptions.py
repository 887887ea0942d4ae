"""Signing up, confirming and housekeeping of subscribers: plain domain code over a session."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alerts import digests
from alerts.clock import now
from alerts.models import (
    ConsentRecord,
    Frequency,
    Language,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)

MAX_EMAIL_LENGTH = 254


class InvalidSignup(ValueError):
    """The signup cannot be taken; `errors` maps each bad field to a message for the reader."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class LinkNotValid(Exception):
    """A confirmation link that points at nobody (erased, or never issued)."""


@dataclass(frozen=True)
class Choices:
    """What a reader asked for: topic slugs, language codes, one frequency for those topics."""

    topics: tuple[str, ...]
    languages: tuple[str, ...]
    frequency: Frequency

    def as_payload(self) -> dict[str, Any]:
        return {
            "topics": list(self.topics),
            "languages": list(self.languages),
            "frequency": self.frequency.value,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Choices:
        return cls(
            topics=tuple(payload["topics"]),
            languages=tuple(payload["languages"]),
            frequency=Frequency(payload["frequency"]),
        )


@dataclass(frozen=True)
class Consent:
    """Where a consent came from, kept as proof (GDPR art. 7)."""

    form_version: str
    source: str = "signup form"
    ip_address: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class ConfirmationRequest:
    """A confirmation email to send: queued after commit, sent by a task."""

    subscriber_id: int
    nonce: str
    changes: Choices | None = None


class ConfirmResult(enum.StrEnum):
    CONFIRMED = "confirmed"
    CHANGED = "changed"
    ALREADY_CONFIRMED = "already confirmed"
    SPENT = "spent"


def normalize_email(raw: str) -> str:
    """The address as email-validator normalizes it; raises InvalidSignup on a bad one."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidSignup({"email": "Enter your email address."})
    if len(candidate) > MAX_EMAIL_LENGTH or any(ch in candidate for ch in "\r\n\0"):
        raise InvalidSignup({"email": "Enter a valid email address, like name@example.org."})
    try:
        # No SMTPUTF8 local parts: not every server on the way can deliver them.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise InvalidSignup({"email": f"Enter a valid email address: {error}"}) from error
    normalized: str = result.normalized
    return normalized


def validate(
    session: Session,
    email: str,
    topics: Sequence[str],
    languages: Sequence[str],
    frequency: str,
) -> tuple[str, Choices]:
    """Check every field at once, so the form can show each message next to its field."""
    errors: dict[str, str] = {}
    normalized = ""
    try:
        normalized = normalize_email(email)
    except InvalidSignup as error:
        errors.update(error.errors)

    wanted_topics = tuple(dict.fromkeys(slug.strip() for slug in topics if slug.strip()))
    if not wanted_topics:
        errors["topics"] = "Choose at least one topic."
    else:
        known = set(session.scalars(select(Topic.slug).where(Topic.slug.in_(wanted_topics))))
        unknown = [slug for slug in wanted_topics if slug not in known]
        if unknown:
            errors["topics"] = "Unknown topic: " + ", ".join(sorted(unknown)[:5]) + "."

    wanted_languages = tuple(dict.fromkeys(code.strip() for code in languages if code.strip()))
    if not wanted_languages:
        errors["languages"] = "Choose at least one language."
    else:
        known_codes = set(
            session.scalars(select(Language.code).where(Language.code.in_(wanted_languages)))
        )
        if set(wanted_languages) - known_codes:
            errors["languages"] = "Choose languages from the list."

    try:
        chosen_frequency = Frequency(frequency)
    except ValueError:
        errors["frequency"] = "Choose how often you want emails."
        chosen_frequency = Frequency.IMMEDIATE

    if errors:
        raise InvalidSignup(errors)
    return normalized, Choices(wanted_topics, wanted_languages, chosen_frequency)


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(func.lower(Subscriber.email) == email.lower()))


def subscribe(
    session: Session,
    email: str,
    choices: Choices,
    consent: Consent,
    *,
    resend_interval: timedelta,
) -> ConfirmationRequest | None:
    """Record a signup; returns the confirmation email to send, or None when one went recently.

    The caller commits and then queues the email. What the reader sees must not depend on
    the result: it never tells whether the address was known.
    """
    subscriber = find_by_email(session, email)
    if subscriber is None:
        subscriber = _create_pending(session, email)

    if subscriber.status is SubscriberStatus.ACTIVE:
        # An active reader's choices change only through the emailed link, never the form.
        nonce = secrets.token_hex(8)
        if not _claim_confirmation(session, subscriber, resend_interval, nonce):
            return None
        return ConfirmationRequest(subscriber.id, nonce, changes=choices)

    if subscriber.status is not SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.PENDING
        subscriber.confirm_nonce = None
        subscriber.confirmed_at = None
        # A reader coming back confirms again, whenever the last email went.
        subscriber.confirmation_sent_at = None
    _replace_choices(session, subscriber, choices)
    session.add(
        ConsentRecord(
            subscriber_id=subscriber.id,
            action="signup",
            source=consent.source,
            ip_address=consent.ip_address,
            user_agent=consent.user_agent,
            form_version=consent.form_version,
        )
    )
    # A pending reader keeps one link: signing up again updates what it confirms.
    nonce = subscriber.confirm_nonce or secrets.token_hex(8)
    if not _claim_confirmation(session, subscriber, resend_interval, nonce):
        return None
    return ConfirmationRequest(subscriber.id, nonce)


def _create_pending(session: Session, email: str) -> Subscriber:
    subscriber = Subscriber(email=email, status=SubscriberStatus.PENDING)
    try:
        with session.begin_nested():
            session.add(subscriber)
    except IntegrityError:
        # Another request created the same address a moment ago: use that one.
        existing = find_by_email(session, email)
        if existing is None:
            raise
        return existing
    return subscriber


def _claim_confirmation(
    session: Session, subscriber: Subscriber, interval: timedelta, nonce: str
) -> bool:
    """Atomically take the right to send a confirmation email: at most one per interval."""
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
    session.refresh(subscriber)
    return bool(getattr(claimed, "rowcount", 0) == 1)


def _replace_choices(session: Session, subscriber: Subscriber, choices: Choices) -> None:
    session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    session.execute(
        delete(SubscriberLanguage).where(SubscriberLanguage.subscriber_id == subscriber.id)
    )
    session.expire(subscriber, ["subscriptions", "languages"])
    _add_choices(session, subscriber, choices)


def _add_choices(session: Session, subscriber: Subscriber, choices: Choices) -> None:
    """Follow the chosen topics at the chosen frequency, keeping every other subscription."""
    topic_ids = dict(
        session.execute(select(Topic.slug, Topic.id).where(Topic.slug.in_(choices.topics))).all()
    )
    current = {s.topic_id: s for s in subscriber.subscriptions}
    for slug in choices.topics:
        topic_id = topic_ids[slug]
        if topic_id in current:
            current[topic_id].frequency = choices.frequency
        else:
            session.add(
                Subscription(
                    subscriber_id=subscriber.id, topic_id=topic_id, frequency=choices.frequency
                )
            )
    have = set(subscriber.language_codes)
    for code in choices.languages:
        if code not in have:
            session.add(SubscriberLanguage(subscriber_id=subscriber.id, language_code=code))
    session.flush()
    session.expire(subscriber, ["subscriptions", "languages"])


def confirm(
    session: Session,
    subscriber_id: int,
    nonce: str,
    changes: Choices | None,
    consent: Consent,
) -> tuple[ConfirmResult, Subscriber]:
    """Follow a confirmation link: activate a pending reader, or apply an active one's changes."""
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
        .with_for_update()
    )
    if subscriber is None:
        raise LinkNotValid(subscriber_id)
    current_link = subscriber.confirm_nonce is not None and secrets.compare_digest(
        subscriber.confirm_nonce, nonce
    )
    if not current_link:
        if changes is None and subscriber.status is SubscriberStatus.ACTIVE:
            return ConfirmResult.ALREADY_CONFIRMED, subscriber
        return ConfirmResult.SPENT, subscriber

    if changes is None and subscriber.status is SubscriberStatus.PENDING:
        result = ConfirmResult.CONFIRMED
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now()
        subscriber.unsubscribed_at = None
    elif changes is not None and subscriber.status is SubscriberStatus.ACTIVE:
        result = ConfirmResult.CHANGED
        _add_choices(session, subscriber, _still_known(session, changes))
    else:
        return ConfirmResult.SPENT, subscriber

    subscriber.confirm_nonce = None
    session.flush()
    digests.sync_schedules(session, subscriber)
    session.add(
        ConsentRecord(
            subscriber_id=subscriber.id,
            action="confirm" if changes is None else "confirm change",
            source=consent.source,
            ip_address=consent.ip_address,
            user_agent=consent.user_agent,
            form_version=consent.form_version,
        )
    )
    session.flush()
    session.refresh(subscriber)
    return result, subscriber


def _still_known(session: Session, choices: Choices) -> Choices:
    """Drop topics or languages removed from the taxonomy since the link was sent."""
    topics = set(session.scalars(select(Topic.slug).where(Topic.slug.in_(choices.topics))))
    codes = set(session.scalars(select(Language.code).where(Language.code.in_(choices.languages))))
    return Choices(
        tuple(slug for slug in choices.topics if slug in topics),
        tuple(code for code in choices.languages if code in codes),
        choices.frequency,
    )


def unsubscribe(session: Session, subscriber_id: int, how: str) -> Subscriber | None:
    """Stop every email to this reader at once; records when and how. Safe to repeat."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now()
        subscriber.unsubscribe_reason = how[:500]
        subscriber.confirm_nonce = None
        session.flush()
    return subscriber


def purge_unconfirmed(session: Session, older_than: timedelta) -> int:
    """Delete sign-ups never confirmed: an unconfirmed address is not ours to keep."""
    cutoff = now() - older_than
    result = session.execute(
        delete(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.PENDING,
            Subscriber.confirmed_at.is_(None),
            Subscriber.created_at < cutoff,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))
