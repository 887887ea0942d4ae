"""What the admin looks up: readers by address, status and frequency, one reader whole, and
articles with their fan-out and delivery counts. Keyset pages: each page starts after the
last id of the one before, so page 1,000 costs what page 1 costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session, selectinload

from alerts.models import (
    Article,
    ConsentRecord,
    Delivery,
    DeliveryStatus,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
)

PAGE = 50


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_before: int | None  # the id to ask the next page before; None on the last page


def _newest_first(session: Session, query: Any, before: int | None, id_column: Any) -> Page:
    if before is not None:
        query = query.where(id_column < before)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Page(rows, rows[-1].id if more and rows else None)


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def find(
    session: Session,
    address: str = "",
    status: SubscriberStatus | None = None,
    frequency: Frequency | None = None,
    before: int | None = None,
) -> Page:
    """Readers, newest first: part of an address (any case), a status, a frequency followed."""
    conditions: list[ColumnElement[bool]] = []
    if address.strip():
        pattern = _like(address.strip().lower())
        conditions.append(func.lower(Subscriber.email).like(pattern, escape="\\"))
    if status is not None:
        conditions.append(Subscriber.status == status)
    if frequency is not None:
        conditions.append(
            exists().where(
                Subscription.subscriber_id == Subscriber.id, Subscription.frequency == frequency
            )
        )
    return _newest_first(session, select(Subscriber).where(*conditions), before, Subscriber.id)


@dataclass
class Profile:
    """One reader as the admin sees them: choices, what we sent, what they agreed to."""

    reader: Subscriber
    deliveries: list[tuple[Delivery, Article]] = field(default_factory=list)
    consents: list[ConsentRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # deliveries by status


def profile(session: Session, subscriber_id: int, recent: int = 50) -> Profile | None:
    reader = session.scalar(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
    )
    if reader is None:
        return None
    deliveries = [
        (delivery, article)
        for delivery, article in session.execute(
            select(Delivery, Article)
            .join(Article, Article.id == Delivery.article_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.id.desc())
            .limit(recent)
        )
    ]
    consents = list(
        session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.subscriber_id == subscriber_id)
            .order_by(ConsentRecord.given_at.desc(), ConsentRecord.id.desc())
        )
    )
    counts = {
        str(status): int(count)
        for status, count in session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.subscriber_id == subscriber_id)
            .group_by(Delivery.status)
        )
    }
    return Profile(reader, deliveries, consents, counts)


@dataclass(frozen=True)
class ArticleRow:
    article: Article
    fanned_out: datetime | None
    counts: dict[str, int]  # deliveries by status (alerts and digests)

    @property
    def id(self) -> int:
        return self.article.id


def articles(session: Session, before: int | None = None) -> Page:
    """Articles newest first, each with its fan-out state and its deliveries by status."""
    page = _newest_first(session, select(Article), before, Article.id)
    ids = [article.id for article in page.rows]
    counts: dict[int, dict[str, int]] = {article_id: {} for article_id in ids}
    for article_id, status, count in session.execute(
        select(Delivery.article_id, Delivery.status, func.count())
        .where(Delivery.article_id.in_(ids))
        .group_by(Delivery.article_id, Delivery.status)
    ):
        counts[article_id][str(status)] = int(count)
    rows = [ArticleRow(article, article.fanned_out_at, counts[article.id]) for article in page.rows]
    return Page(rows, page.next_before)


STATUSES = tuple(SubscriberStatus)
DELIVERY_STATUSES = tuple(str(status) for status in DeliveryStatus)
