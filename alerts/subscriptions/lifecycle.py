"""A reader's life: signing up, confirming (or confirming a change), unsubscribing, and the
purge of sign-ups never confirmed. The confirmation emails they are owed: `confirmations`."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from alerts import digests, metrics
from alerts.clock import now
from alerts.db import Prepared, call_after_commit, insert_ignoring_duplicates
from alerts.errors import LinkNotValid
from alerts.matching import MAX_KEYWORDS, words
from alerts.models import (
    Frequency,
    Keyword,
    Language,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)
from alerts.subscriptions.confirmations import (
    ConfirmationRequest,
    claim_confirmation,
    email_link_again,
    owe_confirmation,
)
from alerts.subscriptions.consent import Consent, record
from alerts.subscriptions.forms import Choices


class ConfirmResult(enum.StrEnum):
    CONFIRMED = "confirmed"
    CHANGED = "changed"
    ALREADY_CONFIRMED = "already confirmed"
    SPENT = "spent"


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
    """Record a signup; returns the confirmation email owed, or None when one went recently.

    The caller commits and then wakes the sender. What the reader sees must not depend on
    the result: it never tells whether the address was known.
    """
    request = _sign_up_new(session, email, choices, consent)
    if request is not None:
        return request
    # The address is known (perhaps created by another request a moment ago).
    subscriber = find_by_email(session, email)
    if subscriber is None:
        raise RuntimeError("an address neither created nor found")

    if subscriber.status is SubscriberStatus.ACTIVE:
        # An active reader's choices change only through the emailed link, never the form.
        nonce = secrets.token_hex(8)
        if not claim_confirmation(session, subscriber, resend_interval, nonce, choices):
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
    clear_choices(session, subscriber)
    _add_choices(session, subscriber, choices)
    subscriber.locale = choices.locale or subscriber.locale
    subscriber.timezone = choices.timezone or subscriber.timezone
    record(session, subscriber, "signup", consent)
    # A pending reader keeps one link: signing up again updates what it confirms.
    return email_link_again(session, subscriber, resend_interval)


def _sign_up_new(
    session: Session, email: str, choices: Choices, consent: Consent
) -> ConfirmationRequest | None:
    """Most signups: a new address, recorded with its choices, its consent and the
    confirmation email it is owed in a few INSERTs on the session's connection (no ORM unit
    of work: it was half a signup's cost). None when the address is known: the unique index
    on lower(email) decides, also between two requests at once."""
    current = now()
    nonce = secrets.token_hex(8)
    created = _NEW_READER.rows(
        session,
        {
            "email": email,
            "status": SubscriberStatus.PENDING,
            "locale": choices.locale or "en",
            "timezone": choices.timezone or "UTC",
            "keywords_within_topics": bool(choices.keywords) and choices.within_topics,
            # The confirmation claimed with the row: nobody was sent one before.
            "confirmation_sent_at": current,
            "confirm_nonce": nonce,
            "created_at": current,
            "updated_at": current,
        },
    )
    if not created:
        return None
    [(subscriber_id,)] = created
    connection = session.connection()
    topic_ids = choices.topic_ids or (
        connection.execute(_TOPIC_IDS, {"slugs": list(choices.topics)}).scalars().all()
        if choices.topics
        else ()
    )
    if topic_ids:
        _FOLLOW.run_many(
            session,
            [(topic_id,) for topic_id in topic_ids],
            ("topic_id",),
            {"subscriber_id": subscriber_id, "frequency": choices.frequency, "created_at": current},
        )
    if choices.languages:
        _SPEAK.run_many(
            session,
            [(code,) for code in choices.languages],
            ("language_code",),
            {"subscriber_id": subscriber_id},
        )
    keywords = [
        {"subscriber_id": subscriber_id, "frequency": choices.frequency, **_keyword(phrase, folded)}
        for folded, phrase in _new_keywords(choices.keywords, ()).items()
    ]
    if keywords:
        connection.execute(_KEYWORDS.insert(), keywords)
    record(session, subscriber_id, "signup", consent)
    owe_confirmation(session, subscriber_id, nonce, None, current)
    call_after_commit(session, metrics.signed_up)
    return ConfirmationRequest(subscriber_id, nonce)


# The tables a new signup writes, for statements built once per process.
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_LANGUAGES = cast(Table, SubscriberLanguage.__table__)
_KEYWORDS = cast(Table, Keyword.__table__)
_TOPIC_IDS = select(Topic.id).where(Topic.slug.in_(bindparam("slugs", expanding=True)))


# Prepared: a signup's statements cost more through SQLAlchemy than in the database.
_NEW_READER = Prepared(
    lambda dialect: insert_ignoring_duplicates(dialect, _SUBSCRIBERS).returning(_SUBSCRIBERS.c.id),
    columns=(
        "email",
        "status",
        "locale",
        "timezone",
        "keywords_within_topics",
        "confirmation_sent_at",
        "confirm_nonce",
        "created_at",
        "updated_at",
    ),
)
_FOLLOW = Prepared(
    insert(_SUBSCRIPTIONS), columns=("subscriber_id", "topic_id", "frequency", "created_at")
)
_SPEAK = Prepared(insert(_LANGUAGES), columns=("subscriber_id", "language_code"))


def _keyword(phrase: str, folded: str) -> dict[str, str]:
    """A followed keyword's columns: as typed, folded, and its first folded word."""
    return {"phrase": phrase, "words": folded[:200], "first_word": folded.split()[0][:100]}


def clear_choices(session: Session, subscriber: Subscriber) -> None:
    """Drop every topic, language and keyword the reader follows, before new ones are set."""
    session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    session.execute(
        delete(SubscriberLanguage).where(SubscriberLanguage.subscriber_id == subscriber.id)
    )
    session.execute(delete(Keyword).where(Keyword.subscriber_id == subscriber.id))
    _no_choices(subscriber)


def _no_choices(subscriber: Subscriber) -> None:
    """The reader follows nothing now (just deleted, or just created): known without a query."""
    for name in ("subscriptions", "languages", "keywords"):
        set_committed_value(subscriber, name, [])


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
        followed = existing.get(" ".join(words(phrase)))
        if followed is not None:
            followed.frequency = frequency
    for folded, phrase in _new_keywords(phrases, existing).items():
        session.add(
            Keyword(subscriber_id=subscriber.id, frequency=frequency, **_keyword(phrase, folded))
        )


def _new_keywords(phrases: Sequence[str], followed: Collection[str]) -> dict[str, str]:
    """The phrases to follow anew, folded -> as typed: not followed yet, each once, up to
    MAX_KEYWORDS with those followed."""
    new: dict[str, str] = {}
    for phrase in phrases:
        folded = " ".join(words(phrase))
        if folded not in followed and folded not in new:
            if len(followed) + len(new) >= MAX_KEYWORDS:
                break
            new[folded] = phrase
    return new


def confirm(
    session: Session,
    subscriber_id: int,
    nonce: str,
    changes: Choices | None,
    consent: Consent,
) -> tuple[ConfirmResult, Subscriber]:
    """Follow a confirmation link: activate a pending reader, or apply an active one's changes.

    Raises:
        LinkNotValid: no reader has this id (erased since the link was sent).
    """
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
        call_after_commit(session, metrics.confirmed)
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now()
        subscriber.unsubscribed_at = None
        subscriber.welcomed_at = None  # a reader coming back is welcomed again
    elif changes is not None and subscriber.status is SubscriberStatus.ACTIVE:
        result = ConfirmResult.CHANGED
        _add_choices(session, subscriber, _still_known(session, changes))
        subscriber.locale = changes.locale or subscriber.locale
    else:
        return ConfirmResult.SPENT, subscriber

    subscriber.confirm_nonce = None
    session.flush()
    digests.sync_schedules(session, subscriber)
    record(session, subscriber, "confirm" if changes is None else "confirm change", consent)
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
        subscriber.feed_key = None  # the private feed's address dies with the subscription
        digests.drop_schedules(session, subscriber.id)
        session.flush()
        call_after_commit(session, lambda: metrics.unsubscribed(how))
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
