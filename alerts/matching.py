"""Who gets which article: topic tree (a parent covers its branch), language, frequency.

Everything here is an indexed query whose cost grows with the subscribers who follow the
article's topics, never with all subscribers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.models import (
    Article,
    ArticleTopic,
    Frequency,
    Subscriber,
    SubscriberLanguage,
    Subscription,
    Topic,
)

ALL_FREQUENCIES = tuple(Frequency)


@dataclass(frozen=True)
class Scope:
    """What an article reaches: its topics with all their ancestors, and its language."""

    article_id: int
    topic_ids: tuple[int, ...]
    language_code: str
    # Depth of each topic in the tree (0 for a root), to name the most specific match.
    depth: dict[int, int]


def scope(session: Session, article: Article) -> Scope:
    parents = dict(session.execute(select(Topic.id, Topic.parent_id)).all())
    own = session.scalars(
        select(ArticleTopic.topic_id).where(ArticleTopic.article_id == article.id)
    ).all()
    expanded: dict[int, None] = {}
    for topic_id in own:
        current: int | None = topic_id
        while current is not None and current not in expanded:
            expanded[current] = None
            current = parents.get(current)

    def depth(topic_id: int) -> int:
        level, current = 0, parents.get(topic_id)
        while current is not None:
            level, current = level + 1, parents.get(current)
        return level

    return Scope(
        article_id=article.id,
        topic_ids=tuple(sorted(expanded)),
        language_code=article.language_code,
        depth={topic_id: depth(topic_id) for topic_id in expanded},
    )


def subscriber_pages(
    session: Session,
    article_scope: Scope,
    frequencies: Collection[Frequency] = (Frequency.IMMEDIATE,),
    batch_size: int = 500,
) -> Iterator[list[int]]:
    """Ids of the active subscribers the article reaches, in keyset pages, each id once.

    Per page: for each topic, the next `batch_size` subscriber ids from the
    (topic, frequency, subscriber) index; the smallest `batch_size` of their union are
    exactly the next page's candidates. Those are then checked for status and language.
    """
    if not article_scope.topic_ids:
        return
    after = 0
    while True:
        candidates: set[int] = set()
        for topic_id in article_scope.topic_ids:
            candidates.update(
                session.scalars(
                    select(Subscription.subscriber_id)
                    .where(
                        Subscription.topic_id == topic_id,
                        Subscription.frequency.in_(list(frequencies)),
                        Subscription.subscriber_id > after,
                    )
                    .order_by(Subscription.subscriber_id)
                    .limit(batch_size)
                )
            )
        if not candidates:
            return
        page = sorted(candidates)[:batch_size]
        after = page[-1]
        matched = list(
            session.scalars(
                select(Subscriber.id)
                .join(SubscriberLanguage, SubscriberLanguage.subscriber_id == Subscriber.id)
                .where(
                    Subscriber.id.in_(page),
                    Subscriber.receiving(now()),
                    SubscriberLanguage.language_code == article_scope.language_code,
                )
                .order_by(Subscriber.id)
            )
        )
        if matched:
            yield matched
        if len(candidates) < batch_size:
            return  # every topic's list ran out before a full page


def matched_topics(
    session: Session, article_scope: Scope, subscriber_ids: Collection[int]
) -> dict[int, Topic]:
    """For each subscriber, the subscribed topic the article matched ("why you got this"):
    the most specific one when several match."""
    rows = session.execute(
        select(Subscription.subscriber_id, Topic)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(
            Subscription.subscriber_id.in_(list(subscriber_ids)),
            Subscription.topic_id.in_(article_scope.topic_ids),
        )
    )
    best: dict[int, Topic] = {}
    for subscriber_id, topic in rows:
        current = best.get(subscriber_id)
        if current is None or article_scope.depth[topic.id] > article_scope.depth[current.id]:
            best[subscriber_id] = topic
    return best


def matching_subscribers(
    session: Session, article: Article, frequencies: Collection[Frequency] = ALL_FREQUENCIES
) -> list[int]:
    """Every subscriber the article reaches at these frequencies (for previews and tests)."""
    article_scope = scope(session, article)
    return [
        subscriber_id
        for page in subscriber_pages(session, article_scope, frequencies, batch_size=1000)
        for subscriber_id in page
    ]
