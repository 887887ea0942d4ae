"""The timing of sending: retry backoff and horizon, leases, the relay's circuit breaker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    # A temporary refusal of one reader is retried after `backoff` seconds, doubling up to
    # `backoff_max`, until `horizon` has passed since the first one (an MTA's queue lifetime).
    backoff: float = 30.0
    backoff_max: float = 3600.0
    horizon: timedelta = timedelta(hours=24)
    # A lease not renewed for this long belongs to a dead worker and is taken over.
    stale_after: timedelta = timedelta(seconds=90)
    batch_size: int = 500
    digest_batch_size: int = 2000
    # Send tasks working on one article or digest run at a time.
    parallelism: int = 4
    # The relay unreachable: quick reconnects inside a batch, then the breaker opens for
    # `relay_backoff` seconds, doubling with each failed probe up to `relay_backoff_max`.
    reconnects: int = 2
    relay_backoff: float = 5.0
    relay_backoff_max: float = 300.0
    # A send task works this long, then hands over to a fresh task: tasks stay short next to
    # the broker's visibility timeout, and articles and runs take turns.
    task_slice: float = 30.0
    # A task waiting on the broker for this long is queued again by the reconciler.
    requeue_after: timedelta = timedelta(seconds=90)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        stale_after = float(config["SEND_STALE_AFTER"])
        return cls(
            backoff=float(config["SEND_RETRY_BACKOFF"]),
            backoff_max=float(config["SEND_RETRY_BACKOFF_MAX"]),
            horizon=timedelta(seconds=float(config["SEND_RETRY_HORIZON"])),
            stale_after=timedelta(seconds=stale_after),
            batch_size=int(config["FANOUT_BATCH_SIZE"]),
            digest_batch_size=int(config["DIGEST_BATCH_SIZE"]),
            parallelism=int(config["SEND_PARALLELISM"]),
            relay_backoff=float(config["RELAY_BACKOFF"]),
            relay_backoff_max=float(config["RELAY_BACKOFF_MAX"]),
            task_slice=float(config["SEND_TASK_SLICE"]),
            requeue_after=timedelta(seconds=stale_after),
        )

    @property
    def renew_every(self) -> float:
        """Seconds between renewals of a batch's lease: well inside the stale limit."""
        return max(self.stale_after.total_seconds() / 6, 0.05)

    def delay(self, attempt: int) -> float:
        """Seconds before the retry that follows the `attempt`-th temporary failure."""
        return float(min(self.backoff * 2 ** max(attempt - 1, 0), self.backoff_max))

    def delay_td(self, attempt: int) -> timedelta:
        return timedelta(seconds=self.delay(attempt))

    def after_failure(
        self, attempts: int, retry_until: datetime | None, current: datetime
    ) -> tuple[int, datetime, datetime | None]:
        """A temporary failure of an email tried `attempts` times before: its attempts now,
        the horizon it must go by (from the first failure), and when to try again (None:
        past the horizon, failed for good)."""
        attempts += 1
        retry_until = retry_until or current + self.horizon
        if current >= retry_until:
            return attempts, retry_until, None
        return attempts, retry_until, current + self.delay_td(attempts)

    def relay_delay(self, failures: int) -> float:
        """Seconds the breaker stays open after the `failures`-th failure in a row."""
        return float(min(self.relay_backoff * 2 ** max(failures - 1, 0), self.relay_backoff_max))
