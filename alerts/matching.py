"""Who gets which article: topics (a parent covers its branch), keywords, language, frequency.

Everything here is an indexed query whose cost grows with the readers who follow the
article's topics or one of its words, never with all readers: the article's words are
folded once, keywords are looked up by their first word, and phrases are confirmed after.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from alerts.clock import now
from alerts.models import (
    Article,
    ArticleTopic,
    Frequency,
    Keyword,
    Subscriber,
    SubscriberLanguage,
    Subscription,
    Topic,
)

ALL_FREQUENCIES = tuple(Frequency)
MAX_KEYWORDS = 20  # per reader: the signup form and the preference centre allow no more
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Text folded to its words: lower case, accents and punctuation gone ("ICANN's" ->
    ["icann", "s"], "Propriété" -> ["propriete"])."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(plain)


@dataclass(frozen=True)
class ArticleWords:
    """An article's words, with where each one occurs, to confirm phrases quickly."""

    sequence: tuple[str, ...]
    positions: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, article: Article) -> ArticleWords:
        sequence = tuple(words(f"{article.title}\n{article.summary_text}"))
        positions: dict[str, list[int]] = {}
        for index, word in enumerate(sequence):
            positions.setdefault(word, []).append(index)
        return cls(sequence, positions)

    def contains(self, phrase: Sequence[str]) -> bool:
        """Whole words, in order: "icann" is in "ICANN's reform" but not in "ICANNOT"."""
        if not phrase:
            return False
        size = len(phrase)
        return any(
            self.sequence[start : start + size] == tuple(phrase)
            for start in self.positions.get(phrase[0], ())
        )


@dataclass(frozen=True)
class Scope:
    """What an article reaches: its topics with all their ancestors, its language, its words."""

    article_id: int
    topic_ids: tuple[int, ...]
    language_code: str
    # Depth of each topic in the tree (0 for a root), to name the most specific match.
    depth: dict[int, int]
    words: ArticleWords


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
        words=ArticleWords.of(article),
    )


def subscriber_pages(
    session: Session,
    article_scope: Scope,
    frequencies: Collection[Frequency] = (Frequency.IMMEDIATE,),
    batch_size: int = 500,
) -> Iterator[list[int]]:
    """Ids of the receiving readers the article reaches, in keyset pages, each id once."""
    for page, _last in subscriber_pages_after(
        session, article_scope, frequencies, batch_size, start_after=0
    ):
        if page:
            yield page


def subscriber_pages_after(
    session: Session,
    article_scope: Scope,
    frequencies: Collection[Frequency],
    batch_size: int,
    start_after: int,
) -> Iterator[tuple[list[int], int]]:
    """(ids of the receiving readers the article reaches, the last reader id looked at) in
    keyset pages after `start_after`, each id once: a fan-out resumes from the last id.

    Per page, each source (one index scan per topic, one over keywords by the article's
    words) gives its next `batch_size` rows after the last id. A source that filled its
    limit may hold more past its last id, so the page stops at the smallest such horizon and
    at `batch_size` readers: every reader up to there is then known from every source.
    """
    wanted = list(frequencies)
    first_words = sorted(article_scope.words.positions)
    after = start_after
    while True:
        topic_hits: set[int] = set()
        horizon: int | None = None

        def take(ids: list[int]) -> set[int]:
            nonlocal horizon
            if len(ids) >= batch_size:
                horizon = ids[-1] if horizon is None else min(horizon, ids[-1])
            return set(ids)

        for topic_id in article_scope.topic_ids:
            topic_hits |= take(
                list(
                    session.scalars(
                        select(Subscription.subscriber_id)
                        .where(
                            Subscription.topic_id == topic_id,
                            Subscription.frequency.in_(wanted),
                            Subscription.subscriber_id > after,
                        )
                        .order_by(Subscription.subscriber_id)
                        .limit(batch_size)
                    )
                )
            )
        # One row per (reader, keyword): when the rows are cut short, the page ends before
        # the last reader, whose other rows may lie past the cut. More rows than one reader
        # can have (MAX_KEYWORDS) keep the first reader whole, so a page always moves on.
        keyword_limit = max(batch_size, MAX_KEYWORDS + 1)
        keyword_rows = (
            session.execute(
                select(Keyword.subscriber_id, Keyword.words)
                .where(
                    Keyword.first_word.in_(first_words),
                    Keyword.frequency.in_(wanted),
                    Keyword.subscriber_id > after,
                )
                .order_by(Keyword.subscriber_id)
                .limit(keyword_limit)
            ).all()
            if first_words
            else []
        )
        if len(keyword_rows) >= keyword_limit:
            last = keyword_rows[-1][0] - 1
            horizon = last if horizon is None else min(horizon, last)
        keyword_hits = {
            subscriber_id
            for subscriber_id, phrase in keyword_rows
            if article_scope.words.contains(phrase.split())
        }
        seen = sorted(topic_hits | {subscriber_id for subscriber_id, _ in keyword_rows})
        if not seen:
            return
        page = [
            subscriber_id for subscriber_id in seen if horizon is None or subscriber_id <= horizon
        ]
        # Never an empty page: a reader's rows never exceed MAX_KEYWORDS, so the first one
        # seen is complete even when the keyword rows were cut right after it.
        page = page[:batch_size] or seen[:1]
        after = page[-1]
        matched = _receiving(session, article_scope, page, topic_hits, keyword_hits)
        yield matched, after
        if horizon is None and len(seen) <= len(page):
            return  # every source ran out within this page


def _receiving(
    session: Session,
    article_scope: Scope,
    page: list[int],
    topic_hits: set[int],
    keyword_hits: set[int],
) -> list[int]:
    """The page's readers who receive: active, not paused, reading the language, and matching
    by topic or keyword (by both for readers who keep keywords within their topics)."""
    has_keywords = exists().where(Keyword.subscriber_id == Subscriber.id)
    rows = session.execute(
        select(Subscriber.id, Subscriber.keywords_within_topics, has_keywords)
        .join(SubscriberLanguage, SubscriberLanguage.subscriber_id == Subscriber.id)
        .where(
            Subscriber.id.in_(page),
            Subscriber.receiving(now()),
            SubscriberLanguage.language_code == article_scope.language_code,
        )
        .order_by(Subscriber.id)
    ).all()
    strict = [r for r, within, keywords in rows if within and keywords and r in keyword_hits]
    # "Only within my topics": the article must be in one of their topics, at any frequency.
    in_topics = (
        set(
            session.scalars(
                select(Subscription.subscriber_id).where(
                    Subscription.subscriber_id.in_(strict),
                    Subscription.topic_id.in_(article_scope.topic_ids),
                )
            )
        )
        if strict
        else set()
    )
    matched = []
    for subscriber_id, within, keywords in rows:
        if within and keywords:
            if subscriber_id in keyword_hits and subscriber_id in in_topics:
                matched.append(subscriber_id)
        elif subscriber_id in topic_hits or subscriber_id in keyword_hits:
            matched.append(subscriber_id)
    return matched


@dataclass(frozen=True)
class Reason:
    """Why a reader gets an article: a topic they follow, or a keyword it mentions."""

    kind: str  # "topic" or "keyword"
    name: str


def reasons(
    session: Session, article_scope: Scope, subscriber_ids: Collection[int]
) -> dict[int, Reason]:
    """For each reader, what matched: the most specific followed topic, else the keyword."""
    ids = list(subscriber_ids)
    best = matched_topics(session, article_scope, ids)
    found = {subscriber_id: Reason("topic", topic.name) for subscriber_id, topic in best.items()}
    first_words = list(article_scope.words.positions)
    if first_words:
        keyword_rows = session.execute(
            select(Keyword.subscriber_id, Keyword.phrase, Keyword.words)
            .where(Keyword.subscriber_id.in_(ids), Keyword.first_word.in_(first_words))
            .order_by(Keyword.id)
        ).all()
        within = set(
            session.scalars(
                select(Subscriber.id).where(
                    Subscriber.id.in_(ids), Subscriber.keywords_within_topics.is_(True)
                )
            )
        )
        for subscriber_id, phrase, folded in keyword_rows:
            # A topic match is named first, unless keywords are what narrowed it down.
            replace = subscriber_id not in found or (
                subscriber_id in within and found[subscriber_id].kind == "topic"
            )
            if replace and article_scope.words.contains(folded.split()):
                found[subscriber_id] = Reason("keyword", phrase)
    return found


def matched_topics(
    session: Session, article_scope: Scope, subscriber_ids: Collection[int]
) -> dict[int, Topic]:
    """For each reader, the subscribed topic the article matched: the most specific one."""
    rows = session.execute(
        select(Subscription.subscriber_id, Topic)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(
            Subscription.subscriber_id.in_(list(subscriber_ids)),
            Subscription.topic_id.in_(article_scope.topic_ids),
        )
    ).all()
    best: dict[int, Topic] = {}
    for subscriber_id, topic in rows:
        current = best.get(subscriber_id)
        if current is None or article_scope.depth[topic.id] > article_scope.depth[current.id]:
            best[subscriber_id] = topic
    return best


def matching_subscribers(
    session: Session, article: Article, frequencies: Collection[Frequency] = ALL_FREQUENCIES
) -> list[int]:
    """Every reader the article reaches at these frequencies (for previews and tests)."""
    article_scope = scope(session, article)
    return [
        subscriber_id
        for page in subscriber_pages(session, article_scope, frequencies, batch_size=1000)
        for subscriber_id in page
    ]
