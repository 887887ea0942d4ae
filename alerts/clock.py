"""The one clock of the service: every stored time is UTC and comes from now()."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_frozen: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware in UTC; tests can move it with freeze()."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(at: datetime | None) -> None:
    """Stop the clock at `at` (aware), or let it run again with None."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("freeze() needs an aware datetime")
    _frozen = at.astimezone(UTC) if at is not None else None


@lru_cache(maxsize=1)
def timezones() -> frozenset[str]:
    """Every IANA zone name this machine knows (read once)."""
    return frozenset(available_timezones())


# The areas of the IANA database's own zone names; the rest are aliases kept for old systems
# ("US/Eastern", "W-SU", "Etc/GMT+5") or not places at all ("Factory", "localtime").
AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@lru_cache(maxsize=1)
def offered_timezones() -> tuple[str, ...]:
    """The zones a reader picks from: UTC, then each "Area/Place", sorted. Any zone this
    machine knows is still accepted (a reader set before keeps theirs)."""
    places = sorted(name for name in timezones() if name.split("/", 1)[0] in AREAS and "/" in name)
    return ("UTC", *places)


def zone(name: str) -> ZoneInfo:
    """A reader's zone; UTC for a name this machine does not know (a zone withdrawn since)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
