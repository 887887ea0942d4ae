"""A reader's private feed: the recent articles the one rule matches for them, at any of
their frequencies, each with its reason, newest first.

The feed is read, not sent: a reader who paused their emails still sees it; one who left
(unsubscribed, bounced, erased) has none. Its address carries a random key of its own
(`Subscriber.feed_key`), made on first use; a new key revokes the old address.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.matching.rule import Reason, interests, match, scope_of
from alerts.models import Article, ArticleTopic, Frequency, Subscriber, SubscriberStatus
from alerts.topic_tree import TopicTree

ENTRIES = 50  # articles in the feed at most
WINDOW = timedelta(days=90)  # how far back it looks
SCANNED = 1000  # recent articles looked at, at most, to find them


def key(session: Session, subscriber: Subscriber, renew: bool = False) -> str:
    """The reader's feed key, made on first use (or a new one, revoking the old address).
    The caller commits."""
    if subscriber.feed_key is None or renew:
        subscriber.feed_key = secrets.token_urlsafe(24)
        session.flush()
    return subscriber.feed_key


def reader_of(session: Session, feed_key: str) -> Subscriber | None:
    """The reader whose feed this is, while they still have one."""
    if not feed_key or len(feed_key) > 64:
        return None
    subscriber = session.scalar(select(Subscriber).where(Subscriber.feed_key == feed_key))
    if subscriber is None or subscriber.status is not SubscriberStatus.ACTIVE:
        return None
    return subscriber


def entries(session: Session, subscriber: Subscriber) -> list[tuple[Article, Reason]]:
    """The articles of the last WINDOW the reader's interests match, newest first."""
    interest = interests(session, [subscriber.id], tuple(Frequency), receiving=False).get(
        subscriber.id
    )
    if interest is None:
        return []
    recent = session.scalars(
        select(Article)
        .where(
            Article.published_at >= now() - WINDOW,
            Article.language_code.in_(interest.languages),
        )
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(SCANNED)
    ).all()
    own_topics: dict[int, list[int]] = defaultdict(list)
    for article_id, topic_id in session.execute(
        select(ArticleTopic.article_id, ArticleTopic.topic_id).where(
            ArticleTopic.article_id.in_([article.id for article in recent])
        )
    ):
        own_topics[article_id].append(topic_id)
    tree = TopicTree.load(session)
    found = []
    for article in recent:
        reason = match(interest, scope_of(article, own_topics[article.id], tree), tree)
        if reason is not None:
            found.append((article, reason))
            if len(found) == ENTRIES:
                break
    return found
