"""When an instant alert goes: at once, after the reader's quiet hours, or in their next
digest once their daily cap is reached. Decided when the alert is about to be sent (not at
publish time), so a change of settings applies to whatever is still owed.

- **Quiet hours** are local wall-clock times in the reader's zone, `quiet_from` to
  `quiet_until` (minutes after midnight); from > until spans midnight (22:00 to 07:00). An
  alert matched inside them is held until they end, then sent with the others held in one
  email. On the night a clock changes, "07:00" is the first 07:00 that exists: a window ending
  in a skipped hour ends when the clock jumps; one ending in a repeated hour ends the first
  time it is reached. Urgent articles come at once unless the reader turned that off.
- **The daily cap** counts the instant alerts sent to the reader since local midnight
  (urgent ones too; quiet-hours round-ups not). Past it, alerts go in the reader's next
  digest (the caller makes a daily one if they have none); the last alert under the cap
  says so. Urgent articles are never held by the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from alerts.clock import now, zone
from alerts.models import Article, Delivery, DeliveryStatus, Subscriber

QUIET = "quiet"
CAP = "cap"
# Not an alert: a digest's article its run could no longer send (models.FOR_NEXT_DIGEST).
CARRY = "carry"


@dataclass(frozen=True)
class Decision:
    hold: str | None = None  # None: send now; QUIET or CAP
    until: datetime | None = None  # a quiet hold: when the quiet hours end (UTC)
    last_before_cap: bool = False  # sent now, and it is the last one the cap allows today


def _minutes(at: datetime) -> int:
    return at.hour * 60 + at.minute


def _wall(day: datetime, minutes: int, reader_zone: tzinfo) -> datetime:
    """The first instant the reader's clock reads `minutes` on `day`'s date, in UTC."""
    wall = datetime.combine(day.date(), time(minutes // 60, minutes % 60))
    first = wall.replace(tzinfo=reader_zone)  # fold 0: the first of a repeated hour
    instant = first.astimezone(UTC)
    if instant.astimezone(reader_zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped by a clock change: the minute the clock jumps past it.
    instant = first.replace(fold=1).astimezone(UTC)
    while instant.astimezone(reader_zone).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def quiet_until(subscriber: Subscriber, at: datetime) -> datetime | None:
    """When the reader's quiet hours containing `at` end (UTC), or None when `at` is not in
    quiet hours (or they have none)."""
    start, end = subscriber.quiet_from, subscriber.quiet_until
    if start is None or end is None or start == end:
        return None
    reader_zone = zone(subscriber.timezone)
    local = at.astimezone(reader_zone)
    minute = _minutes(local)
    if start < end:
        inside = start <= minute < end
        end_day = local
    else:  # across midnight: [start, 24:00) then [00:00, end)
        inside = minute >= start or minute < end
        end_day = local + timedelta(days=1) if minute >= start else local
    if not inside:
        return None
    ends = _wall(end_day, end, reader_zone)
    return ends if ends > at else None


def day_start(subscriber: Subscriber, at: datetime) -> datetime:
    """Local midnight of the reader's day at `at`, in UTC."""
    reader_zone = zone(subscriber.timezone)
    local = at.astimezone(reader_zone)
    midnight = datetime.combine(local.date(), time(0), tzinfo=reader_zone)
    return midnight.astimezone(UTC)


def decide(subscriber: Subscriber, article: Article, sent_today: int, at: datetime) -> Decision:
    urgent = bool(article.urgent)
    if not (urgent and subscriber.urgent_in_quiet):
        ends = quiet_until(subscriber, at)
        if ends is not None:
            return Decision(QUIET, ends)
    cap = subscriber.daily_cap
    if cap is None:
        return Decision()
    if sent_today >= cap and not urgent:
        return Decision(CAP)
    return Decision(last_before_cap=sent_today + 1 == cap)


def sent_today(session: Session, subscriber: Subscriber, at: datetime) -> int:
    """Instant alerts the reader got since their local midnight (round-ups and digests are
    not counted)."""
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.subscriber_id == subscriber.id,
                Delivery.status == DeliveryStatus.SENT,
                Delivery.digest_run_id.is_(None),
                Delivery.held.is_(None),
                Delivery.sent_at >= day_start(subscriber, at),
            )
        )
        or 0
    )


def sent_today_locked(session: Session, subscriber: Subscriber, at: datetime) -> int:
    """The reader's count today, under a lock held until the alert's outcome commits: two
    tasks sending to one capped reader at once take turns, so the cap holds. PostgreSQL
    locks the reader's row; SQLite has one lock, for writing, taken here by a write that
    changes nothing (every other writer waits for this one alert, of capped readers only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(Subscriber.id).where(Subscriber.id == subscriber.id).with_for_update()
        )
    else:
        session.execute(
            text("UPDATE subscribers SET daily_cap = daily_cap WHERE id = :id"),
            {"id": subscriber.id},
        )
    return sent_today(session, subscriber, at)


def record_held(
    session: Session, token: str, article_id: int, subscriber_id: int, decision: Decision
) -> None:
    """Keep this claimed alert back: held until the quiet hours end, or for the next digest."""
    session.execute(
        update(Delivery)
        .where(
            Delivery.article_id == article_id,
            Delivery.subscriber_id == subscriber_id,
            Delivery.claim_token == token,
        )
        .values(
            status=DeliveryStatus.HELD,
            held=decision.hold,
            held_until=decision.until,
            # The held email starts afresh: an earlier refusal of the alert does not count.
            attempts=0,
            retry_until=None,
            next_attempt_at=None,
            claim_token=None,
            updated_at=now(),
        )
        .execution_options(synchronize_session=False)
    )
