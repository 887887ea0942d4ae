"""A reader's own data: everything stored about them as JSON, and erasure that keeps only
anonymous counts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alerts.models import FOR_NEXT_DIGEST, Article, Delivery, DeliveryCount, Subscriber


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about a reader, as the "download your data" JSON."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    deliveries = session.execute(
        select(Delivery, Article.title, Article.url)
        .join(Article, Article.id == Delivery.article_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    ).all()
    return {
        "email": subscriber.email,
        "status": subscriber.status.value,
        "created_at": when(subscriber.created_at),
        "confirmed_at": when(subscriber.confirmed_at),
        "unsubscribed_at": when(subscriber.unsubscribed_at),
        "unsubscribe_reason": subscriber.unsubscribe_reason,
        "paused_until": when(subscriber.paused_until),
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "send_weekday": subscriber.send_weekday,
        "languages": subscriber.language_codes,
        "keywords": [
            {"keyword": keyword.phrase, "frequency": keyword.frequency.value}
            for keyword in subscriber.keywords
        ],
        "keywords_within_topics": subscriber.keywords_within_topics,
        "subscriptions": [
            {
                "topic": s.topic.slug,
                "name": s.topic.name,
                "frequency": s.frequency.value,
                "since": when(s.created_at),
            }
            for s in sorted(subscriber.subscriptions, key=lambda s: s.topic.slug)
        ],
        "consent_records": [
            {
                "action": record.action,
                "source": record.source,
                "at": when(record.given_at),
                "ip_address": record.ip_address,
                "user_agent": record.user_agent,
                "form_version": record.form_version,
                "recorded_by": record.recorded_by,
            }
            for record in sorted(subscriber.consents, key=lambda r: r.id)
        ],
        "deliveries": [
            {
                "article": title,
                "url": url,
                # Held for the next digest (past the daily cap, say): it goes in a digest.
                "kind": "digest"
                if delivery.digest_run_id or delivery.held in FOR_NEXT_DIGEST
                else "alert",
                "status": delivery.status.value,
                "sent_at": when(delivery.sent_at),
                "attempts": delivery.attempts,
            }
            for delivery, title, url in deliveries
        ],
    }


def erase(session: Session, subscriber_id: int) -> bool:
    """Remove a reader and everything personal; their deliveries stay only as anonymous
    counts per day and status. Returns False when there was nobody to erase."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    day = func.date(Delivery.updated_at)
    counts = session.execute(
        select(day, Delivery.status, func.count())
        .where(Delivery.subscriber_id == subscriber_id)
        .group_by(day, Delivery.status)
    ).all()
    for raw_day, status, number in counts:
        on = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
        row = session.get(DeliveryCount, (on, status))
        if row is None:
            session.add(DeliveryCount(day=on, status=status, count=int(number)))
        else:
            row.count += int(number)
    session.flush()
    # Rows referencing the reader go with it (ON DELETE CASCADE), consent records included.
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber_id))
    session.expunge(subscriber)
    return True
