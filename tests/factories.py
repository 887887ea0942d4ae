"""Factories: subscribers and articles in the shapes the tests need, straight into the database."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import articles, digests
from alerts.clock import now
from alerts.models import (
    Article,
    Frequency,
    Subscriber,
    SubscriberLanguage,
    SubscriberStatus,
    Subscription,
    Topic,
)

_numbers = itertools.count(1)


def subscriber(
    session: Session,
    topics: dict[str, Frequency] | list[str] | None = None,
    *,
    email: str | None = None,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    languages: tuple[str, ...] = ("en",),
    frequency: Frequency = Frequency.IMMEDIATE,
    timezone: str = "UTC",
    confirmed_at: datetime | None = None,
    locale: str = "en",
) -> Subscriber:
    """An (active by default) subscriber following `topics` (slugs, or slug -> frequency)."""
    wanted = topics if isinstance(topics, dict) else dict.fromkeys(topics or ["wipo"], frequency)
    reader = Subscriber(
        email=email or f"reader{next(_numbers)}@example.org",
        status=status,
        timezone=timezone,
        locale=locale,
    )
    session.add(reader)
    session.flush()
    ids = dict(session.execute(select(Topic.slug, Topic.id).where(Topic.slug.in_(wanted))).all())
    for slug, topic_frequency in wanted.items():
        session.add(
            Subscription(subscriber_id=reader.id, topic_id=ids[slug], frequency=topic_frequency)
        )
    for code in languages:
        session.add(SubscriberLanguage(subscriber_id=reader.id, language_code=code))
    session.flush()
    if status is SubscriberStatus.ACTIVE:
        reader.confirmed_at = confirmed_at or now()
        digests.sync_schedules(session, reader)
    session.commit()
    return reader


def article_payload(**overrides: Any) -> dict[str, Any]:
    """An article shaped like the reference site's (its Filed Under list included)."""
    number = next(_numbers)
    payload: dict[str, Any] = {
        "guid": f"https://news.example.org/?p={number}",
        "url": f"https://news.example.org/2014/11/05/itu-plenipotentiary-{number}/",
        "title": "ITU Plenipotentiary Conference: Internet Governance Diplomacy On Display",
        "summary": "<p>The much belaboured takeover of the internet by the United Nations "
        "International Telecommunication Union again has not taken place.</p>",
        "author": "Monika Ermert",
        "language": "en",
        "published_at": "2014-11-05T18:00:00Z",
        "topics": ["ITU/ICANN", "Internet Governance"],
    }
    payload.update(overrides)
    return payload


def article(session: Session, published_at: datetime | None = None, **overrides: Any) -> Article:
    payload = article_payload(**overrides)
    if published_at is not None:
        payload["published_at"] = published_at.isoformat()
    result = articles.publish(session, articles.parse(session, payload))
    session.commit()
    found = session.get(Article, result.article_id)
    assert found is not None
    return found
