"""Numbers for the admin dashboard: subscribers, articles and deliveries, digest runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from alerts import digests
from alerts.clock import now
from alerts.models import (
    DELIVERY_OUTCOMES,
    Article,
    Delivery,
    DeliveryStatus,
    DigestRun,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
)
from alerts.topic_tree import TopicTree


@dataclass(frozen=True)
class DaySeries:
    days: list[date]
    series: dict[str, list[int]]  # name -> one value per day


def subscribers_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all()
    found = {str(status): int(number) for status, number in rows}
    return {status.value: found.get(status.value, 0) for status in SubscriberStatus}


def active_readers_by_frequency(session: Session) -> dict[str, int]:
    """Active readers with at least one topic at each frequency."""
    rows = session.execute(
        select(Subscription.frequency, func.count(func.distinct(Subscription.subscriber_id)))
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(Subscription.frequency)
    ).all()
    found = {str(frequency): int(number) for frequency, number in rows}
    return {frequency.value: found.get(frequency.value, 0) for frequency in Frequency}


def active_readers_by_top_topic(session: Session) -> list[tuple[str, int]]:
    """Active readers following each top-level topic (itself or anything in its branch),
    counted in the database: the topic tree (a few dozen rows) becomes a CASE."""
    tree = TopicTree.load(session)
    roots = tree.roots()
    if not tree.topics:
        return []
    root_of = case(
        {topic_id: tree.root(topic_id).id for topic_id in tree.topics},
        value=Subscription.topic_id,
    )
    rows = session.execute(
        select(root_of, func.count(func.distinct(Subscription.subscriber_id)))
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(root_of)
    ).all()
    counts = {root_id: int(number) for root_id, number in rows}
    return [(root.name, counts.get(root.id, 0)) for root in roots]


def _by_day(session: Session, column: object, since: date, *where: object) -> dict[date, int]:
    day = func.date(column)
    rows = session.execute(
        select(day, func.count()).where(*where).group_by(day)  # type: ignore[arg-type]
    ).all()
    counts: dict[date, int] = {}
    for value, number in rows:
        parsed = value if isinstance(value, date) else date.fromisoformat(str(value))
        if parsed >= since:
            counts[parsed] = int(number)
    return counts


def last_30_days(session: Session) -> DaySeries:
    today = now().date()
    days = [today - timedelta(days=offset) for offset in range(29, -1, -1)]
    since_time = now() - timedelta(days=30)
    series = {
        "articles": _by_day(session, Article.created_at, days[0], Article.created_at >= since_time),
    }
    for status in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.BOUNCED):
        series[status.value] = _by_day(
            session,
            Delivery.updated_at,
            days[0],
            DELIVERY_OUTCOMES,  # the index's predicate
            Delivery.status == status,
            Delivery.updated_at >= since_time,
        )
    return DaySeries(
        days, {name: [values.get(day, 0) for day in days] for name, values in series.items()}
    )


def recent_runs(session: Session, limit: int = 10) -> list[digests.RunProgress]:
    runs = session.scalars(select(DigestRun).order_by(DigestRun.id.desc()).limit(limit))
    return [digests.progress(session, run) for run in runs]


def topic_choices(session: Session) -> list[tuple[str, str]]:
    tree = TopicTree.load(session)
    ordered = sorted(
        tree.topics.values(),
        key=lambda t: (tree.root(t.id).position, t.parent_id is not None, t.position),
    )
    return [(topic.slug, ("— " if topic.parent_id else "") + topic.name) for topic in ordered]
