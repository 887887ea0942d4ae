"""Signing up, confirming and housekeeping of subscribers: plain domain code over a session."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alerts import digests
from alerts.clock import now
from alerts.errors import InvalidInput, LinkNotValid
from alerts.matching import MAX_KEYWORDS, words
from alerts.models import (
    Article,
    ConsentRecord,
    Delivery,
    DeliveryCount,
    Frequency,
    Keyword,
    Language,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)

MAX_EMAIL_LENGTH = 254


def form_int(text: str, default: int = -1) -> int:
    """A small whole number typed in a form, or `default` ("²" or "٣" are digits to
    str.isdigit() but not numbers we take)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else default


@dataclass(frozen=True)
class Choices:
    """What a reader asked for: topic slugs, language codes, one frequency for those topics."""

    topics: tuple[str, ...]
    languages: tuple[str, ...]
    frequency: Frequency
    keywords: tuple[str, ...] = ()  # words or phrases, as the reader typed them
    within_topics: bool = False  # keywords count only in articles of their topics

    def as_payload(self) -> dict[str, Any]:
        return {
            "topics": list(self.topics),
            "languages": list(self.languages),
            "frequency": self.frequency.value,
            "keywords": list(self.keywords),
            "within_topics": self.within_topics,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Choices:
        return cls(
            topics=tuple(payload["topics"]),
            languages=tuple(payload["languages"]),
            frequency=Frequency(payload["frequency"]),
            keywords=tuple(payload.get("keywords", ())),
            within_topics=bool(payload.get("within_topics", False)),
        )


MAX_KEYWORD_LENGTH = 100


def parse_keywords(text: str) -> tuple[str, ...]:
    """One keyword or phrase per line ("ICANN", "TRIPS waiver", quotes allowed); at most 20,
    each with at least one word; duplicates (once folded) dropped."""
    phrases: dict[str, str] = {}
    for line in text.replace("\r", "\n").split("\n"):
        phrase = " ".join(line.strip().strip("\"\u201c\u201d'").split())
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise InvalidInput(
                {"keywords": f"Keep each keyword under {MAX_KEYWORD_LENGTH} characters."}
            )
        folded = " ".join(words(phrase))
        if not folded:
            raise InvalidInput({"keywords": f"{phrase[:30]!r} has no word in it."})
        phrases.setdefault(folded, phrase)
    if len(phrases) > MAX_KEYWORDS:
        raise InvalidInput({"keywords": f"Choose at most {MAX_KEYWORDS} keywords."})
    return tuple(phrases.values())


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
    """The address as email-validator normalizes it; raises InvalidInput on a bad one."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidInput({"email": "Enter your email address."})
    if len(candidate) > MAX_EMAIL_LENGTH or any(ch in candidate for ch in "\r\n\0"):
        raise InvalidInput({"email": "Enter a valid email address, like name@example.org."})
    try:
        # No SMTPUTF8 local parts: not every server on the way can deliver them.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise InvalidInput({"email": f"Enter a valid email address: {error}"}) from error
    normalized: str = result.normalized
    return normalized


def validate(
    session: Session,
    email: str,
    topics: Sequence[str],
    languages: Sequence[str],
    frequency: str,
    keywords: str = "",
    within_topics: bool = False,
) -> tuple[str, Choices]:
    """Check every field at once, so the form can show each message next to its field."""
    errors: dict[str, str] = {}
    normalized = ""
    try:
        normalized = normalize_email(email)
    except InvalidInput as error:
        errors.update(error.errors)
    wanted_keywords: tuple[str, ...] = ()
    try:
        wanted_keywords = parse_keywords(keywords)
    except InvalidInput as error:
        errors.update(error.errors)

    wanted_topics = tuple(dict.fromkeys(slug.strip() for slug in topics if slug.strip()))
    if not wanted_topics:
        if not wanted_keywords and "keywords" not in errors:
            errors["topics"] = "Choose at least one topic, or type a keyword."
        elif within_topics:
            errors["topics"] = "Choose topics for your keywords to stay within."
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
        raise InvalidInput(errors)
    return normalized, Choices(
        wanted_topics, wanted_languages, chosen_frequency, wanted_keywords, within_topics
    )


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

    if subscriber.status is SubscriberStatus.BOUNCED:
        # A suppressed address comes back only through an admin (mail to it bounced): the
        # form answers as always and sends nothing.
        return None
    if subscriber.status is not SubscriberStatus.PENDING:
        # A reader coming back confirms again (still at most one email an hour).
        subscriber.status = SubscriberStatus.PENDING
        subscriber.confirm_nonce = None
        subscriber.confirmed_at = None
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
    session.execute(delete(Keyword).where(Keyword.subscriber_id == subscriber.id))
    session.expire(subscriber, ["subscriptions", "languages", "keywords"])
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
    add_keywords(session, subscriber, choices.keywords, choices.frequency)
    if choices.keywords:
        subscriber.keywords_within_topics = choices.within_topics
    session.flush()
    session.expire(subscriber, ["subscriptions", "languages", "keywords"])


def add_keywords(
    session: Session, subscriber: Subscriber, phrases: Sequence[str], frequency: Frequency
) -> None:
    """Follow these keywords (up to 20 in all), keeping the ones already followed."""
    existing = {keyword.words: keyword for keyword in subscriber.keywords}
    for phrase in phrases:
        folded = " ".join(words(phrase))
        if folded in existing:
            existing[folded].frequency = frequency
        elif len(existing) < MAX_KEYWORDS:
            keyword = Keyword(
                subscriber_id=subscriber.id,
                phrase=phrase,
                words=folded[:200],
                first_word=folded.split()[0][:100],
                frequency=frequency,
            )
            session.add(keyword)
            existing[folded] = keyword


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
        choices.keywords,
        choices.within_topics,
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
        digests.drop_schedules(session, subscriber.id)
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


# --- the preference centre -----------------------------------------------------------------

PAUSE_WEEKS = (1, 2, 4)


@dataclass(frozen=True)
class Preferences:
    """Everything a reader sets in the preference centre."""

    topics: dict[str, Frequency]  # slug -> its frequency
    languages: tuple[str, ...]
    timezone: str
    send_hour: int
    send_weekday: int
    keywords: tuple[str, ...] = ()
    keyword_frequency: Frequency = Frequency.IMMEDIATE
    within_topics: bool = False


def validate_preferences(
    session: Session,
    topic_frequencies: dict[str, str],
    languages: Sequence[str],
    timezone: str,
    send_hour: str,
    send_weekday: str,
    keywords: str = "",
    keyword_frequency: str = "immediate",
    within_topics: bool = False,
) -> Preferences:
    """Check the preference form; every bad field is reported at once (InvalidInput)."""
    errors: dict[str, str] = {}
    phrases: tuple[str, ...] = ()
    try:
        phrases = parse_keywords(keywords)
    except InvalidInput as error:
        errors.update(error.errors)
    try:
        chosen_keyword_frequency = Frequency(keyword_frequency)
    except ValueError:
        errors["keywords"] = "Choose how often for your keywords."
        chosen_keyword_frequency = Frequency.IMMEDIATE
    topics: dict[str, Frequency] = {}
    for slug, value in topic_frequencies.items():
        try:
            topics[slug] = Frequency(value)
        except ValueError:
            errors["topics"] = "Choose how often for each topic."
    if not topics and not phrases and "topics" not in errors and "keywords" not in errors:
        errors["topics"] = "Keep at least one topic or keyword, or unsubscribe instead."
    elif topics:
        known = set(session.scalars(select(Topic.slug).where(Topic.slug.in_(list(topics)))))
        unknown = sorted(set(topics) - known)
        if unknown:
            errors["topics"] = "Unknown topic: " + ", ".join(unknown[:5]) + "."
    codes = tuple(dict.fromkeys(code for code in languages if code))
    known_codes = set(session.scalars(select(Language.code).where(Language.code.in_(codes))))
    if not codes:
        errors["languages"] = "Choose at least one language."
    elif set(codes) - known_codes:
        errors["languages"] = "Choose languages from the list."
    if timezone not in digests.timezones():
        errors["timezone"] = "Choose a time zone from the list."
    hour = form_int(send_hour)
    if not 0 <= hour <= 23:
        errors["send_hour"] = "Choose an hour from the list."
    weekday = form_int(send_weekday)
    if not 0 <= weekday <= 6:
        errors["send_weekday"] = "Choose a day from the list."
    if errors:
        raise InvalidInput(errors)
    return Preferences(
        topics,
        codes,
        timezone,
        hour,
        weekday,
        phrases,
        chosen_keyword_frequency,
        within_topics,
    )


def update_preferences(
    session: Session, subscriber: Subscriber, preferences: Preferences, consent: Consent
) -> None:
    """Apply the preference centre; takes effect from the next send."""
    ids = dict(
        session.execute(
            select(Topic.slug, Topic.id).where(Topic.slug.in_(list(preferences.topics)))
        ).all()
    )
    session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    session.execute(
        delete(SubscriberLanguage).where(SubscriberLanguage.subscriber_id == subscriber.id)
    )
    for slug, frequency in preferences.topics.items():
        session.add(
            Subscription(subscriber_id=subscriber.id, topic_id=ids[slug], frequency=frequency)
        )
    for code in preferences.languages:
        session.add(SubscriberLanguage(subscriber_id=subscriber.id, language_code=code))
    session.execute(delete(Keyword).where(Keyword.subscriber_id == subscriber.id))
    session.flush()
    session.expire(subscriber, ["keywords"])
    add_keywords(session, subscriber, preferences.keywords, preferences.keyword_frequency)
    subscriber.keywords_within_topics = preferences.within_topics
    subscriber.timezone = preferences.timezone
    subscriber.send_hour = preferences.send_hour
    subscriber.send_weekday = preferences.send_weekday
    session.flush()
    session.expire(subscriber, ["subscriptions", "languages", "keywords"])
    digests.sync_schedules(session, subscriber)
    _record(session, subscriber, "change preferences", consent)


def pause(session: Session, subscriber: Subscriber, weeks: int, consent: Consent) -> None:
    """No email at all for `weeks` weeks (0 resumes now)."""
    if weeks and weeks not in PAUSE_WEEKS:
        raise InvalidInput({"pause": "Choose 1, 2 or 4 weeks."})
    subscriber.paused_until = now() + timedelta(weeks=weeks) if weeks else None
    session.flush()
    digests.sync_schedules(session, subscriber)  # the next digest comes after the pause
    _record(session, subscriber, f"pause {weeks} weeks" if weeks else "resume", consent)


def unsubscribe_topic(
    session: Session, subscriber: Subscriber, slug: str, consent: Consent
) -> bool:
    """Stop one topic only; the last topic stops everything. Returns False for an unknown one."""
    subscription = next((s for s in subscriber.subscriptions if s.topic.slug == slug), None)
    if subscription is None:
        return False
    if len(subscriber.subscriptions) == 1 and not subscriber.keywords:
        unsubscribe(session, subscriber.id, how=f"unsubscribe page: last topic {slug}")
    else:
        session.delete(subscription)
        session.flush()
        session.expire(subscriber, ["subscriptions"])
        digests.sync_schedules(session, subscriber)
    _record(session, subscriber, f"unsubscribe topic {slug}", consent)
    return True


def switch_to_weekly(session: Session, subscriber: Subscriber, consent: Consent) -> None:
    """Every topic at once becomes part of one weekly digest."""
    session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id == subscriber.id)
        .values(frequency=Frequency.WEEKLY)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    session.expire(subscriber, ["subscriptions"])
    digests.sync_schedules(session, subscriber)
    _record(session, subscriber, "switch to weekly digest", consent)


def _record(session: Session, subscriber: Subscriber, action: str, consent: Consent) -> None:
    session.add(
        ConsentRecord(
            subscriber_id=subscriber.id,
            action=action[:32],
            source=consent.source,
            ip_address=consent.ip_address,
            user_agent=consent.user_agent,
            form_version=consent.form_version,
        )
    )
    session.flush()


# --- your data -------------------------------------------------------------------------------


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about a reader, as the "download your data" JSON."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    deliveries = session.execute(
        select(Delivery, Article.title, Article.url)
        .join(Article, Article.id == Delivery.article_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    ).all()
    return {
        "email": subscriber.email,
        "status": subscriber.status.value,
        "created_at": when(subscriber.created_at),
        "confirmed_at": when(subscriber.confirmed_at),
        "unsubscribed_at": when(subscriber.unsubscribed_at),
        "unsubscribe_reason": subscriber.unsubscribe_reason,
        "paused_until": when(subscriber.paused_until),
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "send_weekday": subscriber.send_weekday,
        "languages": subscriber.language_codes,
        "keywords": [
            {"keyword": keyword.phrase, "frequency": keyword.frequency.value}
            for keyword in subscriber.keywords
        ],
        "keywords_within_topics": subscriber.keywords_within_topics,
        "subscriptions": [
            {
                "topic": s.topic.slug,
                "name": s.topic.name,
                "frequency": s.frequency.value,
                "since": when(s.created_at),
            }
            for s in sorted(subscriber.subscriptions, key=lambda s: s.topic.slug)
        ],
        "consent_records": [
            {
                "action": record.action,
                "source": record.source,
                "at": when(record.given_at),
                "ip_address": record.ip_address,
                "user_agent": record.user_agent,
                "form_version": record.form_version,
                "recorded_by": record.recorded_by,
            }
            for record in sorted(subscriber.consents, key=lambda r: r.id)
        ],
        "deliveries": [
            {
                "article": title,
                "url": url,
                "kind": "digest" if delivery.digest_run_id else "alert",
                "status": delivery.status.value,
                "sent_at": when(delivery.sent_at),
                "attempts": delivery.attempts,
            }
            for delivery, title, url in deliveries
        ],
    }


def erase(session: Session, subscriber_id: int) -> bool:
    """Remove a reader and everything personal; their deliveries stay only as anonymous
    counts per day and status. Returns False when there was nobody to erase."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    day = func.date(Delivery.updated_at)
    counts = session.execute(
        select(day, Delivery.status, func.count())
        .where(Delivery.subscriber_id == subscriber_id)
        .group_by(day, Delivery.status)
    ).all()
    for raw_day, status, number in counts:
        on = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
        row = session.get(DeliveryCount, (on, status))
        if row is None:
            session.add(DeliveryCount(day=on, status=status, count=int(number)))
        else:
            row.count += int(number)
    session.flush()
    # Rows referencing the reader go with it (ON DELETE CASCADE), consent records included.
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber_id))
    session.expunge(subscriber)
    return True


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
    if not _claim_confirmation(session, subscriber, resend_interval, nonce):
        return None  # pending again; a confirmation went less than an hour ago
    return ConfirmationRequest(subscriber.id, nonce)
