"""The one rule of who gets which article, for instant alerts and digests alike.

A reader gets an article in a language they read when it is in a topic they follow (a parent
topic covers its branch) or mentions one of their keywords; a reader who keeps keywords
"only within my topics" gets it only when both hold (the topic at any frequency). Alerts ask
about the immediate frequency (every frequency for an urgent article), a digest about its own.
`match` decides, and says why: the most specific followed topic, else the keyword.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from alerts import db
from alerts.clock import now
from alerts.matching.words import ArticleWords
from alerts.models import (
    Article,
    ArticleTopic,
    Frequency,
    Keyword,
    Subscriber,
    SubscriberLanguage,
    Subscription,
)
from alerts.topic_tree import TopicTree


@dataclass(frozen=True)
class Scope:
    """What an article reaches: its topics with all their ancestors, its language, its words."""

    article_id: int
    topic_ids: tuple[int, ...]
    language_code: str
    words: ArticleWords


def scope(session: Session, article: Article, tree: TopicTree | None = None) -> Scope:
    own = session.scalars(
        select(ArticleTopic.topic_id).where(ArticleTopic.article_id == article.id)
    ).all()
    return scope_of(article, own, tree or TopicTree.load(session))


def scope_of(article: Article, topic_ids: Iterable[int], tree: TopicTree) -> Scope:
    """The scope of an article whose own topics are already known (a digest loads many)."""
    return Scope(
        article_id=article.id,
        topic_ids=tuple(sorted(tree.expand(topic_ids))),
        language_code=article.language_code,
        words=ArticleWords.of(article),
    )


def alert_frequencies(article: Article) -> tuple[Frequency, ...]:
    """Whose alert an article is: immediate readers', and everyone's when it is urgent."""
    return tuple(Frequency) if article.urgent else (Frequency.IMMEDIATE,)


@dataclass(frozen=True)
class Reason:
    """Why a reader gets an article: a topic they follow, or a keyword it mentions."""

    kind: str  # "topic" or "keyword"
    name: str
    # The followed topic it came through (for a keyword kept within topics, the topic it
    # is in); None for a keyword alone. Digests group by its root.
    topic_id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Interest:
    """What one receiving reader wants, as far as the question asked needs to know."""

    subscriber_id: int
    languages: frozenset[str]
    topics: frozenset[int]  # followed at the frequencies asked about
    any_topics: frozenset[int]  # followed at any frequency: "only within my topics"
    keywords: tuple[tuple[str, tuple[str, ...]], ...]  # (as typed, folded) in the order added
    has_keywords: bool  # at any frequency
    within_topics: bool

    @property
    def shape(self) -> tuple[object, ...]:
        """Everything but who: readers of one shape get the same answer for an article."""
        return (
            self.languages,
            self.topics,
            self.any_topics,
            self.keywords,
            self.has_keywords,
            self.within_topics,
        )


def interests(
    session: Session,
    subscriber_ids: Collection[int],
    frequencies: Collection[Frequency],
    article_scope: Scope | None = None,
    receiving: bool = True,
) -> dict[int, Interest]:
    """The interests of these readers who are receiving now (active, not paused); with
    `receiving` False, of any of them (a paused reader's private feed goes on).

    With an article's scope, only the rows that can matter to it are read (its topics, the
    keywords starting with one of its words): a fan-out page costs what it matches.
    """
    ids = list(subscriber_ids)
    if not ids:
        return {}
    wanted = set(frequencies)
    has_keywords = exists().where(Keyword.subscriber_id == Subscriber.id)
    readers_query = select(Subscriber.id, Subscriber.keywords_within_topics, has_keywords).where(
        db.among(session, Subscriber.id, ids)
    )
    if receiving:
        readers_query = readers_query.where(Subscriber.receiving(now()))
    languages: dict[int, set[str]] = {}
    if article_scope is not None:
        # Only readers of the article's language can match: one query for the page.
        readers_query = readers_query.join(
            SubscriberLanguage, SubscriberLanguage.subscriber_id == Subscriber.id
        ).where(SubscriberLanguage.language_code == article_scope.language_code)
    readers = {
        subscriber_id: (within, keyworded)
        for subscriber_id, within, keyworded in session.execute(readers_query)
    }
    if not readers:
        return {}
    ids = list(readers)
    if article_scope is not None:
        languages = {subscriber_id: {article_scope.language_code} for subscriber_id in ids}
    else:
        for subscriber_id, code in session.execute(
            select(SubscriberLanguage.subscriber_id, SubscriberLanguage.language_code).where(
                db.among(session, SubscriberLanguage.subscriber_id, ids)
            )
        ):
            languages.setdefault(subscriber_id, set()).add(code)
    topics: dict[int, set[int]] = {}
    any_topics: dict[int, set[int]] = {}
    topic_query = select(
        Subscription.subscriber_id, Subscription.topic_id, Subscription.frequency
    ).where(db.among(session, Subscription.subscriber_id, ids))
    if article_scope is not None:
        topic_query = topic_query.where(Subscription.topic_id.in_(article_scope.topic_ids))
    for subscriber_id, topic_id, frequency in session.execute(topic_query):
        any_topics.setdefault(subscriber_id, set()).add(topic_id)
        if frequency in wanted:
            topics.setdefault(subscriber_id, set()).add(topic_id)
    keywords: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    keyword_query = (
        select(Keyword.subscriber_id, Keyword.phrase, Keyword.words, Keyword.frequency)
        .where(db.among(session, Keyword.subscriber_id, ids))
        .order_by(Keyword.id)
    )
    if article_scope is not None:
        keyword_query = keyword_query.where(
            Keyword.first_word.in_(list(article_scope.words.positions))
        )
    for subscriber_id, phrase, folded, frequency in session.execute(keyword_query):
        if frequency in wanted:
            keywords.setdefault(subscriber_id, []).append((phrase, tuple(folded.split())))
    return {
        subscriber_id: Interest(
            subscriber_id=subscriber_id,
            languages=frozenset(languages.get(subscriber_id, ())),
            topics=frozenset(topics.get(subscriber_id, ())),
            any_topics=frozenset(any_topics.get(subscriber_id, ())),
            keywords=tuple(keywords.get(subscriber_id, ())),
            has_keywords=bool(keyworded),
            within_topics=bool(within),
        )
        for subscriber_id, (within, keyworded) in readers.items()
    }


def match(interest: Interest, article_scope: Scope, tree: TopicTree) -> Reason | None:
    """Why this reader gets this article, or None when they do not."""
    if article_scope.language_code not in interest.languages:
        return None
    reached = set(article_scope.topic_ids)
    mentioned = next(
        (phrase for phrase, folded in interest.keywords if article_scope.words.contains(folded)),
        None,
    )
    if interest.within_topics and interest.has_keywords:
        inside = reached & interest.any_topics
        if mentioned is None or not inside:
            return None
        return Reason("keyword", mentioned, tree.most_specific(inside).id)
    followed = reached & interest.topics
    if followed:
        topic = tree.most_specific(followed)
        return Reason("topic", topic.label, topic.id)
    if mentioned is not None:
        return Reason("keyword", mentioned)
    return None


def reasons(
    session: Session,
    article_scope: Scope,
    subscriber_ids: Collection[int],
    frequencies: Collection[Frequency],
    tree: TopicTree | None = None,
) -> dict[int, Reason]:
    """For each of these readers the article reaches, why."""
    tree = tree or TopicTree.load(session)
    found = {}
    answers: dict[tuple[object, ...], Reason | None] = {}  # most readers share a shape
    for subscriber_id, interest in interests(
        session, subscriber_ids, frequencies, article_scope
    ).items():
        shape = interest.shape
        if shape not in answers:
            answers[shape] = match(interest, article_scope, tree)
        reason = answers[shape]
        if reason is not None:
            found[subscriber_id] = reason
    return found
