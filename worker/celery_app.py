"""The Celery app, built from the Flask app's config; every task runs inside an app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.app.defaults import NAMESPACES, flatten
from flask import Flask

from alerts.config import ConfigError
from worker.beat import schedule

KNOWN_SETTINGS = frozenset(name for name, _ in flatten(NAMESPACES))


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(celery_config(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def celery_config(config: Any) -> dict[str, Any]:
    """What the service derives from its own settings, then the CELERY mapping (defaults in
    alerts.config, each overridable by ALERTS_CELERY__<NAME>), which wins.

    Raises:
        ConfigError: a name Celery does not know (a typo would otherwise be ignored).
    """
    unknown = sorted(set(config["CELERY"]) - KNOWN_SETTINGS)
    if unknown:
        raise ConfigError(
            "Celery has no setting "
            + ", ".join(f"{name!r} (ALERTS_CELERY__{name.upper()})" for name in unknown)
            + "."
        )
    derived = {
        "broker_url": config["REDIS_URL"],
        "beat_schedule": schedule(config),
        "task_always_eager": bool(config["CELERY_ALWAYS_EAGER"]),
        "include": ["worker.tasks"],
        # Longer than every countdown and task run time (alerts.config.check_sending): a task
        # waiting or running is never handed to a second worker. A web request fails fast
        # when the broker is down; the reconciler queues what it could not.
        "broker_transport_options": {
            "visibility_timeout": float(config["BROKER_VISIBILITY_TIMEOUT"]),
            "socket_connect_timeout": 3,
        },
    }
    return {**derived, **config["CELERY"]}
