"""Celery workers of news alerts: `celery -A worker worker` and `celery -A worker beat`."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Built on first use, so importing worker.tasks to queue a task builds no second app.
    if name in ("app", "celery"):
        from worker.make_celery import celery_app

        return celery_app
    raise AttributeError(name)
