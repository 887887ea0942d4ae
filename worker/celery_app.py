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
    # The settings are the CELERY mapping (alerts.config.celery_settings); the schedule and
    # the task modules are code.
    celery_app.conf.update(
        app.config["CELERY"], beat_schedule=schedule(app.config), include=["worker.tasks"]
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
