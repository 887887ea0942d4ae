"""The Celery app, built from the Flask app's config; every task runs inside an app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from worker.beat import schedule


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=app.config["REDIS_URL"],
        broker_connection_retry_on_startup=True,
        # A worker waits out a broker restart however long it takes, and finishes the tasks it
        # is running meanwhile: their outcomes are in the database, not the broker.
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_ignore_result=True,
        # Sending is at-least-once from the broker's view; the tasks make it exactly-once.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        beat_schedule=schedule(app.config),
        task_always_eager=bool(app.config["CELERY_ALWAYS_EAGER"]),
        task_eager_propagates=True,
        worker_hijack_root_logger=False,
        include=["worker.tasks"],
        # Longer than every countdown and task run time (alerts.config.check_sending): a task
        # waiting or running is never handed to a second worker. A web request fails fast
        # when the broker is down; the reconciler queues what it could not.
        broker_transport_options={
            "visibility_timeout": float(app.config["BROKER_VISIBILITY_TIMEOUT"]),
            "socket_connect_timeout": 3,
        },
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
