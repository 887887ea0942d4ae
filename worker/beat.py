"""The periodic jobs celery beat runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab


def schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "requeue-stale-deliveries": {
            "task": "alerts.requeue_stale_deliveries",
            "schedule": 600.0,
        },
        "purge-unconfirmed": {
            "task": "alerts.purge_unconfirmed",
            "schedule": crontab(minute="17", hour="3"),
        },
    }
