"""Fan-out pages: the readers an article reaches, found by indexed queries whose cost grows
with the readers who follow the article's topics or one of its words, never with all readers.

Candidates come from one index scan per topic and one over keywords by the article's first
words; the one rule (`matching.rule`) then decides who receives, exactly as for digests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.matching.rule import Scope, reasons, scope
from alerts.models import Article, Frequency, Keyword, Subscription
from alerts.topic_tree import TopicTree

ALL_FREQUENCIES = tuple(Frequency)
MAX_KEYWORDS = 20  # per reader: the signup form and the preference centre allow no more


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
    tree: TopicTree | None = None,
    first_page: int | None = None,
) -> Iterator[tuple[list[int], int]]:
    """(ids of the receiving readers the article reaches, the last reader id looked at) in
    keyset pages after `start_after`, each id once: a fan-out resumes from the last id.

    Per page, each source (one index scan per topic, one over keywords by the article's
    words) gives its next `batch_size` rows after the last id. A source that filled its
    limit may hold more past its last id, so the page stops at the smallest such horizon and
    at `batch_size` readers: every reader up to there is then known from every source.
    `first_page` makes the first page smaller, so the first alerts go out sooner.
    """
    wanted = list(frequencies)
    tree = tree or TopicTree.load(session)
    first_words = sorted(article_scope.words.positions)
    after = start_after
    size = first_page or batch_size
    while True:
        topic_hits: set[int] = set()
        horizon: int | None = None

        def take(ids: list[int], limit: int = size) -> set[int]:
            nonlocal horizon
            if len(ids) >= limit:
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
                        .limit(size)
                    )
                )
            )
        # One row per (reader, keyword): when the rows are cut short, the page ends before
        # the last reader, whose other rows may lie past the cut. More rows than one reader
        # can have (MAX_KEYWORDS) keep the first reader whole, so a page always moves on.
        keyword_limit = max(size, MAX_KEYWORDS + 1)
        keyword_rows = (
            session.execute(
                select(Keyword.subscriber_id)
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
        seen = sorted(topic_hits | {subscriber_id for (subscriber_id,) in keyword_rows})
        if not seen:
            return
        page = [
            subscriber_id for subscriber_id in seen if horizon is None or subscriber_id <= horizon
        ]
        # Never an empty page: a reader's rows never exceed MAX_KEYWORDS, so the first one
        # seen is complete even when the keyword rows were cut right after it.
        page = page[:size] or seen[:1]
        after = page[-1]
        why = reasons(session, article_scope, page, wanted, tree)
        yield [subscriber_id for subscriber_id in page if subscriber_id in why], after
        size = batch_size
        if horizon is None and len(seen) <= len(page):
            return  # every source ran out within this page


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
