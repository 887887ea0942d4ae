"""The periodic jobs celery beat runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab


def schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "run-due-digests": {
            "task": "alerts.run_due_digests",
            "schedule": float(config.get("DIGEST_CHECK_INTERVAL", 300)),
        },
        "poll-due-feeds": {
            "task": "alerts.poll_due_feeds",
            "schedule": float(config.get("FEED_CHECK_INTERVAL", 60)),
        },
        "reconcile": {
            "task": "alerts.reconcile",
            "schedule": float(config.get("RECONCILE_INTERVAL", 30)),
        },
        "purge-unconfirmed": {
            "task": "alerts.purge_unconfirmed",
            "schedule": crontab(minute="17", hour="3"),
        },
    }
