"""Fan-out: a pending delivery for every reader an article reaches, written before any send
task is queued, page by page, resumable from the last reader id it looked at.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from alerts import matching
from alerts.clock import now
from alerts.db import rowcount
from alerts.models import Article
from alerts.sending import ledger
from alerts.sending.policy import RetryPolicy
from alerts.topic_tree import TopicTree

FIRST_PAGE = 50


@dataclass
class FanoutReport:
    held: bool = False  # False: done already, or another live task is at it
    readers: int = 0
    pages: int = 0
    finished: bool = False


def fan_out(
    session: Session,
    article_id: int,
    policy: RetryPolicy,
    queue_send: Callable[[], None],
    parallel: int = 2,
) -> FanoutReport:
    """Write the article's pending deliveries; commits after each page.

    `queue_send` is called (inside the page's transaction, so it must queue after commit)
    after each of the first `parallel` pages, so sending starts with the first page, and
    once more at the end, for the readers of pages written after the send tasks ran dry.
    Immediate readers are owed the article; for an urgent one, every matching reader.
    """
    report = FanoutReport()
    token = secrets.token_hex(8)
    current = now()
    taken = rowcount(
        session.execute(
            update(Article)
            .where(
                Article.id == article_id,
                Article.fanned_out_at.is_(None),
                or_(
                    Article.fanout_token.is_(None),
                    Article.fanout_claimed_at < current - policy.stale_after,
                ),
            )
            .values(fanout_token=token, fanout_claimed_at=current)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    article = session.get(Article, article_id)
    if not taken or article is None:
        return report
    session.refresh(article)
    report.held = True
    frequencies = matching.alert_frequencies(article)
    tree = TopicTree.load(session)
    scope = matching.scope(session, article, tree)
    pages = matching.subscriber_pages_after(
        session,
        scope,
        frequencies,
        policy.batch_size,
        article.fanout_after,
        tree,
        # A small first page: the first alerts leave while the rest is written.
        first_page=min(FIRST_PAGE, policy.batch_size),
    )
    for page, last_seen in pages:
        ledger.write_pending(session, article_id, page)
        still_ours = rowcount(
            session.execute(
                update(Article)
                .where(Article.id == article_id, Article.fanout_token == token)
                .values(fanout_after=last_seen, fanout_claimed_at=now())
                .execution_options(synchronize_session=False)
            )
        )
        if not still_ours:
            session.rollback()  # our lease ran out and another task took over
            return report
        report.readers += len(page)
        if page:
            report.pages += 1
            if report.pages <= parallel:
                queue_send()
        session.commit()
    session.execute(
        update(Article)
        .where(Article.id == article_id, Article.fanout_token == token)
        .values(fanned_out_at=now(), fanout_token=None, queued_at=now())
        .execution_options(synchronize_session=False)
    )
    queue_send()
    session.commit()
    report.finished = True
    return report
