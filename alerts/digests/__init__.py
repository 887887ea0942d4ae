"""Digests: when each reader is due (`schedules`), digest runs and their readers (`runs`),
what goes in a digest (`content`), and starting one by hand (`starting`).

Times are UTC from clock.now(); each reader's digest is due at their own local hour
(daily), on their weekday (weekly), or on the 1st (monthly), in their IANA zone.
"""

from alerts.clock import timezones, zone
from alerts.digests.content import (
    KEYWORDS_GROUP,
    MAX_ARTICLES,
    DigestContent,
    DigestItem,
    build_contents,
)
from alerts.digests.runs import (
    RunProgress,
    enqueue,
    existing_run,
    finish_if_done,
    progress,
    scope_topic_ids,
    start_run,
)
from alerts.digests.schedules import (
    DIGEST_FREQUENCIES,
    drop_schedules,
    due_frequencies,
    ensure_digest,
    next_send_time,
    period_of,
    sync_schedules,
)
from alerts.digests.starting import DryRun, dry_run, preview, trigger

__all__ = [
    "DIGEST_FREQUENCIES",
    "KEYWORDS_GROUP",
    "MAX_ARTICLES",
    "DigestContent",
    "DigestItem",
    "DryRun",
    "RunProgress",
    "build_contents",
    "drop_schedules",
    "dry_run",
    "due_frequencies",
    "enqueue",
    "ensure_digest",
    "existing_run",
    "finish_if_done",
    "next_send_time",
    "period_of",
    "preview",
    "progress",
    "scope_topic_ids",
    "start_run",
    "sync_schedules",
    "timezones",
    "trigger",
    "zone",
]
