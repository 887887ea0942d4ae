"""When each reader's digest is due: schedules per digest frequency, in the reader's own
zone and hour (daily), weekday (weekly) or the 1st (monthly), kept as UTC times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, bindparam, delete, exists, select, update
from sqlalchemy.orm import Session

from alerts.clock import now, zone
from alerts.db import Cursor, Prepared
from alerts.models import (
    HELD_FOR_NEXT_DIGEST,
    Delivery,
    DeliveryStatus,
    DigestSchedule,
    Frequency,
    Keyword,
    Subscriber,
    Subscription,
)

DIGEST_FREQUENCIES = (Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY)


def period_of(frequency: Frequency, at: datetime) -> str:
    """The calendar period (UTC) a run belongs to: 2026-11-28, 2026-W48, 2026-11."""
    if frequency is Frequency.WEEKLY:
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    if frequency is Frequency.MONTHLY:
        return f"{at:%Y-%m}"
    return f"{at:%Y-%m-%d}"


def next_send_time(
    frequency: Frequency, zone_name: str, hour: int, weekday: int, after: datetime
) -> datetime:
    """The first moment strictly after `after` when this reader's digest is due, in UTC."""
    tz = zone(zone_name)
    local = after.astimezone(tz)
    day = local.date()
    for _ in range(400):
        if frequency is Frequency.WEEKLY and day.weekday() != weekday:
            day += timedelta(days=1)
            continue
        if frequency is Frequency.MONTHLY and day.day != 1:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            continue
        candidate = datetime(day.year, day.month, day.day, hour, tzinfo=tz)
        if candidate > local:
            return candidate.astimezone(ZoneInfo("UTC"))
        day += timedelta(days=1)
    raise ValueError("no send time found")  # pragma: no cover - the loop always finds one


def sync_schedules(session: Session, subscriber: Subscriber) -> None:
    """One schedule per digest frequency the reader follows; none for the others.

    Call after activation, after any change of topics, frequencies, zone or send hour.
    """
    followed = set(
        session.scalars(
            select(Subscription.frequency)
            .where(Subscription.subscriber_id == subscriber.id)
            .distinct()
        )
    ) | set(
        session.scalars(
            select(Keyword.frequency).where(Keyword.subscriber_id == subscriber.id).distinct()
        )
    )
    wanted = {frequency for frequency in followed if frequency in DIGEST_FREQUENCIES}
    if not wanted and (
        subscriber.daily_cap is not None or _holds_for_next_digest(session, subscriber)
    ):
        # Alerts past the cap go in the next digest: a reader with none gets a daily one,
        # and keeps it while rows held for it wait (a cap lifted since included).
        wanted.add(Frequency.DAILY)
    existing = {
        schedule.frequency: schedule
        for schedule in session.scalars(
            select(DigestSchedule).where(DigestSchedule.subscriber_id == subscriber.id)
        )
    }
    current = now()

    def base(last_sent: datetime | None) -> datetime:
        # The next slot after the last digest, but a slot due within the hour that beat has
        # not sent yet still counts; a paused reader's next digest comes after the pause.
        moment = max(last_sent or current, current - timedelta(hours=1))
        if subscriber.paused_until and subscriber.paused_until > current:
            moment = max(moment, subscriber.paused_until - timedelta(seconds=1))
        return moment

    for frequency, schedule in existing.items():
        if frequency not in wanted:
            session.delete(schedule)
        else:
            schedule.next_at = next_send_time(
                frequency,
                subscriber.timezone,
                subscriber.send_hour,
                subscriber.send_weekday,
                base(schedule.last_sent_at),
            )
    for frequency in wanted - set(existing):
        session.add(
            DigestSchedule(
                subscriber_id=subscriber.id,
                frequency=frequency,
                # A new digest starts with what is new from now, not with the archive.
                last_sent_at=current,
                next_at=next_send_time(
                    frequency,
                    subscriber.timezone,
                    subscriber.send_hour,
                    subscriber.send_weekday,
                    base(current),
                ),
            )
        )
    session.flush()


def _holds_for_next_digest(session: Session, subscriber: Subscriber) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Delivery.subscriber_id == subscriber.id,
                    Delivery.status == DeliveryStatus.HELD,
                    HELD_FOR_NEXT_DIGEST,
                )
            )
        )
    )


def ensure_digest(session: Session, subscriber: Subscriber) -> None:
    """Make sure the reader has a digest to carry what is held for their next digest."""
    if (
        session.scalar(select(exists().where(DigestSchedule.subscriber_id == subscriber.id)))
        is not True
    ):
        sync_schedules(session, subscriber)


def drop_schedules(session: Session, subscriber_id: int) -> None:
    """A reader who left or bounced is due no digest (confirming again restores them)."""
    session.execute(delete(DigestSchedule).where(DigestSchedule.subscriber_id == subscriber_id))


def due_frequencies(session: Session) -> list[Frequency]:
    """The digest frequencies with at least one reader due now."""
    current = now()
    return [
        frequency
        for frequency in DIGEST_FREQUENCIES
        if session.scalar(
            select(
                exists().where(
                    and_(DigestSchedule.frequency == frequency, DigestSchedule.next_at <= current)
                )
            )
        )
    ]


# Statements run once per digest sent (alerts.db.Prepared): the schedule moved on after it.
_schedules = cast(Table, DigestSchedule.__table__)
_subscribers = cast(Table, Subscriber.__table__)
_MOVE = Prepared(
    update(_schedules)
    .where(
        _schedules.c.subscriber_id == bindparam("subscriber"),
        _schedules.c.frequency == bindparam("schedule_frequency"),
    )
    .values(last_sent_at=bindparam("new_last_sent_at"), next_at=bindparam("new_next_at"))
)
# Moved on only while the reader's hour and zone are those the next slot was worked out
# from: they may have changed since the reader was loaded.
_CLOCK_UNCHANGED = exists().where(
    _subscribers.c.id == bindparam("subscriber"),
    _subscribers.c.timezone == bindparam("timezone"),
    _subscribers.c.send_hour == bindparam("send_hour"),
    _subscribers.c.send_weekday.is_not_distinct_from(bindparam("send_weekday")),
)
MOVE_ON_CLOCK = Prepared(
    update(_schedules)
    .where(
        _schedules.c.subscriber_id == bindparam("subscriber"),
        _schedules.c.frequency == bindparam("schedule_frequency"),
        _CLOCK_UNCHANGED,
    )
    .values(last_sent_at=bindparam("new_last_sent_at"), next_at=bindparam("new_next_at"))
)
_READER_CLOCK = Prepared(
    select(_subscribers.c.timezone, _subscribers.c.send_hour, _subscribers.c.send_weekday).where(
        _subscribers.c.id == bindparam("subscriber")
    )
)


def moving_on(
    reader: Subscriber, frequency: Frequency, covered: datetime, after: datetime
) -> dict[str, object]:
    """The values of a move on in the reader's hour and zone as loaded (`MOVE_ON_CLOCK`)."""
    clock = (reader.timezone, reader.send_hour, reader.send_weekday)
    return {
        "subscriber": reader.id,
        "schedule_frequency": frequency,
        "new_last_sent_at": covered,
        "timezone": clock[0],
        "send_hour": clock[1],
        "send_weekday": clock[2],
        "new_next_at": next_send_time(frequency, *clock, after),
    }


def move_on(
    cursor: Cursor, reader: Subscriber, frequency: Frequency, covered: datetime, after: datetime
) -> None:
    """After a reader's digest (sent or skipped): it covered up to `covered`; the next is
    due at their first slot after `after`, in their hour and zone as they are now."""
    if not MOVE_ON_CLOCK.run(cursor, moving_on(reader, frequency, covered, after)):
        move_on_in_their_clock_now(cursor, reader.id, frequency, covered, after)


def move_on_in_their_clock_now(
    cursor: Cursor, subscriber_id: int, frequency: Frequency, covered: datetime, after: datetime
) -> None:
    """The reader changed their hour or zone since they were loaded (or has no schedule)."""
    timezone, send_hour, send_weekday = _READER_CLOCK.rows(cursor, {"subscriber": subscriber_id})[0]
    _MOVE.run(
        cursor,
        {
            "subscriber": subscriber_id,
            "schedule_frequency": frequency,
            "new_last_sent_at": covered,
            "new_next_at": next_send_time(frequency, timezone, send_hour, send_weekday, after),
        },
    )
