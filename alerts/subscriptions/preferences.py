"""The preference centre: what a reader changes through their manage link (topics and
their frequencies, languages, keywords, zone and hour, a pause), and the unsubscribe page's
gentler choices (one topic or keyword only, a weekly digest instead, undo)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alerts import digests
from alerts.clock import now
from alerts.errors import InvalidInput
from alerts.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    Keyword,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)
from alerts.sending.hold import QUIET, quiet_until
from alerts.subscriptions.consent import Consent, record
from alerts.subscriptions.forms import Preferences
from alerts.subscriptions.lifecycle import add_keywords, clear_choices, unsubscribe

PAUSE_WEEKS = (1, 2, 4)


def update_preferences(
    session: Session, subscriber: Subscriber, preferences: Preferences, consent: Consent
) -> None:
    """Apply the preference centre; takes effect from the next send."""
    ids = dict(
        session.execute(
            select(Topic.slug, Topic.id).where(Topic.slug.in_(list(preferences.topics)))
        ).all()
    )
    clear_choices(session, subscriber)
    for slug, frequency in preferences.topics.items():
        session.add(
            Subscription(subscriber_id=subscriber.id, topic_id=ids[slug], frequency=frequency)
        )
    for code in preferences.languages:
        session.add(SubscriberLanguage(subscriber_id=subscriber.id, language_code=code))
    session.flush()
    add_keywords(session, subscriber, preferences.keywords, preferences.keyword_frequency)
    subscriber.keywords_within_topics = preferences.within_topics
    subscriber.timezone = preferences.timezone
    subscriber.locale = preferences.locale
    subscriber.send_hour = preferences.send_hour
    subscriber.send_weekday = preferences.send_weekday
    subscriber.daily_cap = preferences.daily_cap
    subscriber.quiet_from, subscriber.quiet_until = preferences.quiet or (None, None)
    subscriber.urgent_in_quiet = preferences.urgent_in_quiet
    subscriber.corrections = preferences.corrections
    # Alerts held in quiet hours wait for the new end (now, if quiet hours are off or over).
    current = now()
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == subscriber.id,
            Delivery.status == DeliveryStatus.HELD,
            Delivery.held == QUIET,
        )
        .values(held_until=quiet_until(subscriber, current) or current)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    session.expire(subscriber, ["subscriptions", "languages", "keywords"])
    digests.sync_schedules(session, subscriber)
    record(session, subscriber, "change preferences", consent)


def pause(session: Session, subscriber: Subscriber, weeks: int, consent: Consent) -> None:
    """No email at all for `weeks` weeks (0 resumes now).

    Raises:
        InvalidInput: on "pause": a length not in PAUSE_WEEKS.
    """
    if weeks and weeks not in PAUSE_WEEKS:
        raise InvalidInput({"pause": "Choose 1, 2 or 4 weeks."})
    subscriber.paused_until = now() + timedelta(weeks=weeks) if weeks else None
    session.flush()
    digests.sync_schedules(session, subscriber)  # the next digest comes after the pause
    record(session, subscriber, f"pause {weeks} weeks" if weeks else "resume", consent)


def unsubscribe_topic(
    session: Session, subscriber: Subscriber, slug: str, consent: Consent
) -> bool:
    """Stop one topic only; the last topic stops everything. Returns False for an unknown one."""
    subscription = next((s for s in subscriber.subscriptions if s.topic.slug == slug), None)
    if subscription is None:
        return False
    _stop_one(session, subscriber, subscription, f"topic {slug}", f"topic {slug}", consent)
    return True


def unsubscribe_keyword(
    session: Session, subscriber: Subscriber, keyword_id: int, consent: Consent
) -> bool:
    """Stop one keyword only; the last thing followed stops everything. False for a keyword
    that is not this reader's."""
    keyword = next((k for k in subscriber.keywords if k.id == keyword_id), None)
    if keyword is None:
        return False
    label = f"keyword {keyword.phrase[:60]}"
    _stop_one(session, subscriber, keyword, "keyword", label, consent)
    return True


def _stop_one(
    session: Session,
    subscriber: Subscriber,
    row: Subscription | Keyword,
    last: str,
    label: str,
    consent: Consent,
) -> None:
    """Stop following one topic or keyword (`label` in the consent record); the last thing
    followed stops everything (`last` in the reason)."""
    if len(subscriber.subscriptions) + len(subscriber.keywords) == 1:
        unsubscribe(session, subscriber.id, how=f"unsubscribe page: last {last}")
    else:
        session.delete(row)
        session.flush()
        session.expire(subscriber, ["subscriptions", "keywords"])
        digests.sync_schedules(session, subscriber)
    record(session, subscriber, f"unsubscribe {label}", consent)


UNDO_WINDOW = timedelta(days=30)


def undo_unsubscribe(session: Session, subscriber: Subscriber, consent: Consent) -> bool:
    """Take back an unsubscribe made in the last 30 days, with the choices as they were;
    digests start from now, not from before. False when there is nothing to undo: never
    confirmed, stopped for bounces, nothing followed, or too long ago (then: sign up again)."""
    left = subscriber.unsubscribed_at
    if (
        subscriber.status is not SubscriberStatus.UNSUBSCRIBED
        or subscriber.confirmed_at is None
        or left is None
        or now() - left > UNDO_WINDOW
        or not (subscriber.subscriptions or subscriber.keywords)
    ):
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.unsubscribed_at = None
    subscriber.unsubscribe_reason = None
    session.flush()
    digests.sync_schedules(session, subscriber)
    record(session, subscriber, "undo unsubscribe", consent)
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
    record(session, subscriber, "switch to weekly digest", consent)
