"""The periodic jobs celery beat runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis
from celery.beat import PersistentScheduler
from celery.schedules import crontab

log = logging.getLogger(__name__)

BEAT_TICK_KEY = "alerts:beat:last-tick"
TICK_EVERY = 5.0  # seconds: how often beat wakes up at least, and records that it did


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
        # Alerts held in quiet hours go out in one email once they end.
        "quiet-hours-roundups": {
            "task": "alerts.send_roundups",
            "schedule": float(config.get("RECONCILE_INTERVAL", 30)),
        },
        # Confirmation emails owed (the sender is woken after each signup; this catches a
        # wake-up lost with the broker).
        "confirmation-emails": {
            "task": "alerts.send_confirmations",
            "schedule": float(config.get("RECONCILE_INTERVAL", 30)),
        },
        # Correction emails owed (queued at once by a publish; this catches the rest).
        "correction-emails": {
            "task": "alerts.send_corrections",
            "schedule": float(config.get("RECONCILE_INTERVAL", 30)),
        },
        "purge-unconfirmed": {
            "task": "alerts.purge_unconfirmed",
            "schedule": crontab(minute="17", hour="3"),
        },
    }


class Scheduler(PersistentScheduler):
    """Celery's own scheduler, that also says when it last ticked (in the broker, under
    BEAT_TICK_KEY): /readyz reports beat as stopped once that is too long ago."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=2)
        self._recorded = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        delay: float = super().tick(*args, **kwargs)
        current = time.time()
        if current - self._recorded >= TICK_EVERY:
            try:
                self._client.set(BEAT_TICK_KEY, f"{current:.3f}", ex=24 * 3600)
                self._recorded = current
            except redis.RedisError:
                log.warning("beat could not record its tick: the broker does not answer")
        return min(delay, TICK_EVERY)


def last_tick(client: redis.Redis) -> float | None:
    """When beat last ticked (a Unix time), or None if it never has."""
    value = client.get(BEAT_TICK_KEY)
    return float(value) if value is not None else None
