"""RSS and Atom feeds: adding and polling them into articles (`poll`), fetched from servers
we do not trust (`fetch`)."""

from alerts.feeds.fetch import MAX_FEED_BYTES, FeedError, Fetched, fetch
from alerts.feeds.poll import (
    CLOCK_GRACE,
    MAX_BACKOFF,
    PollReport,
    add,
    check_url,
    due,
    lease,
    map_category,
    poll,
)

__all__ = [
    "CLOCK_GRACE",
    "MAX_BACKOFF",
    "MAX_FEED_BYTES",
    "FeedError",
    "Fetched",
    "PollReport",
    "add",
    "check_url",
    "due",
    "fetch",
    "lease",
    "map_category",
    "poll",
]
