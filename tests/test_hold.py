"""When an instant alert goes: quiet hours in the reader's zone (across midnight, across clock
changes) and the daily cap, decided by alerts.sending.hold."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.models import Article, Subscriber
from alerts.sending import hold

PARIS = ZoneInfo("Europe/Paris")


def reader(
    zone: str = "Europe/Paris", quiet: tuple[int, int] | None = (22 * 60, 7 * 60), **extra: object
) -> Subscriber:
    start, end = quiet or (None, None)
    return Subscriber(
        timezone=zone, quiet_from=start, quiet_until=end, **{"urgent_in_quiet": True, **extra}
    )


def local(text: str, zone: ZoneInfo = PARIS, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "ends"),
    [
        ("2026-11-28 23:30", "2026-11-29 07:00"),  # before midnight: ends the next morning
        ("2026-11-29 00:10", "2026-11-29 07:00"),  # after midnight: this morning
        ("2026-11-29 22:00", "2026-11-30 07:00"),  # the first minute is quiet
        ("2026-11-29 06:59", "2026-11-29 07:00"),
        ("2026-11-29 07:00", None),  # the last minute is not
        ("2026-11-29 12:00", None),
    ],
)
def test_quiet_hours_across_midnight(at: str, ends: str | None) -> None:
    found = hold.quiet_until(reader(), local(at))
    assert found == (local(ends) if ends else None)


def test_quiet_hours_within_a_day() -> None:
    afternoon = reader(quiet=(13 * 60, 14 * 60 + 30))
    assert hold.quiet_until(afternoon, local("2026-11-29 13:15")) == local("2026-11-29 14:30")
    assert hold.quiet_until(afternoon, local("2026-11-29 12:59")) is None
    assert hold.quiet_until(reader(quiet=None), local("2026-11-29 23:00")) is None


def test_the_night_clocks_go_forward() -> None:
    """Paris, 29 March 2026: 02:00 becomes 03:00. A night 22:00-07:00 is an hour shorter; one
    ending at 02:30, a time that never comes, ends when the clock jumps."""
    assert hold.quiet_until(reader(), local("2026-03-28 23:00")) == utc("2026-03-29 05:00")
    ends_in_the_gap = reader(quiet=(22 * 60, 2 * 60 + 30))
    assert hold.quiet_until(ends_in_the_gap, local("2026-03-28 23:00")) == utc("2026-03-29 01:00")
    assert hold.quiet_until(ends_in_the_gap, utc("2026-03-29 01:00")) is None  # 03:00: over


def test_the_night_clocks_go_back() -> None:
    """Paris, 25 October 2026: 03:00 becomes 02:00 again. A window ending at 02:30 ends the
    first time the clock reads 02:30; 22:00-07:00 is an hour longer."""
    ends_twice = reader(quiet=(22 * 60, 2 * 60 + 30))
    assert hold.quiet_until(ends_twice, local("2026-10-24 23:00")) == utc("2026-10-25 00:30")
    assert hold.quiet_until(reader(), local("2026-10-24 23:00")) == utc("2026-10-25 06:00")
    # In the repeated hour, the second 02:10 is past the end: not quiet any more.
    assert hold.quiet_until(ends_twice, local("2026-10-25 02:10", fold=1)) is None


def test_quiet_hours_are_the_readers_own_zone() -> None:
    tokyo = reader("Asia/Tokyo")
    at = utc("2026-11-29 14:00")  # 23:00 in Tokyo, 15:00 in Paris
    assert hold.quiet_until(tokyo, at) == utc("2026-11-29 22:00")  # 07:00 in Tokyo
    assert hold.quiet_until(reader(), at) is None
    assert hold.day_start(tokyo, at) == utc("2026-11-28 15:00")  # Tokyo's midnight of the 29th


def article(urgent: bool = False) -> Article:
    return Article(urgent=urgent)


def test_quiet_hours_hold_all_but_urgent_news() -> None:
    night = local("2026-11-29 23:00")
    assert hold.decide(reader(), article(), 0, night) == hold.Decision(
        hold.QUIET, local("2026-11-30 07:00")
    )
    assert hold.decide(reader(), article(urgent=True), 0, night).hold is None
    strict = reader(urgent_in_quiet=False)
    assert hold.decide(strict, article(urgent=True), 0, night).hold == hold.QUIET


def test_the_daily_cap() -> None:
    day = local("2026-11-29 12:00")
    capped = reader(quiet=None, daily_cap=3)
    assert hold.decide(capped, article(), 1, day) == hold.Decision()
    assert hold.decide(capped, article(), 2, day) == hold.Decision(last_before_cap=True)
    assert hold.decide(capped, article(), 3, day) == hold.Decision(hold.CAP)
    # Urgent news counts towards the cap but is never held by it.
    assert hold.decide(capped, article(urgent=True), 5, day) == hold.Decision()
    assert hold.decide(reader(quiet=None), article(), 99, day) == hold.Decision()


def test_quiet_hours_come_before_the_cap() -> None:
    capped = reader(daily_cap=1)
    assert hold.decide(capped, article(), 5, local("2026-11-29 23:00")).hold == hold.QUIET
