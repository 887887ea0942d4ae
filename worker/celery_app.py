"""The Celery app, built from the Flask app's config; every task runs inside an app context."""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from typing import Any

from celery import Celery, Task, signals
from celery.app.defaults import NAMESPACES, flatten
from flask import Flask

from alerts import logs
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

    # Celery's logs through the service's formatter (Celery configures nothing itself once
    # a receiver is connected), each line with the ids of the task it comes from.
    def setup_logging(loglevel: Any = None, **_: Any) -> None:
        logs.configure(app.config["LOG_FORMAT"], loglevel or app.config["LOG_LEVEL"])

    signals.setup_logging.connect(setup_logging, weak=False)
    return celery_app


@signals.worker_init.connect
def _batch_scheduling(**_: Any) -> None:
    """The worker runs as batch work (Linux's SCHED_BATCH; the pool's processes inherit it
    when forked): the same share of the CPU, but a worker woken by a reply (the relay's, the
    database's, thousands a second) no longer preempts the process running then. The web
    process and a relay on the same host (a local MTA, or the sink of `make run`) keep their
    CPU: on 2 cores, a local relay lost a tenth of its time to waking workers, and the
    alerts with it (README, "Benchmarks")."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))


@signals.worker_init.connect
def _warm_up(**_: Any) -> None:
    """Before the pool's processes are forked: what every first task would otherwise wait
    for (the ORM's mappers, the email templates of every language), done once, shared, and
    frozen out of the garbage collector's way."""
    from sqlalchemy.orm import configure_mappers

    from alerts.mail.render import renderer

    configure_mappers()
    renderer().warm_up()
    # What is loaded by now lives as long as the process: kept out of the cyclic garbage
    # collector's full passes, which walked all of it every few hundred emails (a seventh of
    # a digest's CPU). The pool's processes inherit the frozen state when they fork.
    gc.collect()
    gc.freeze()


# A task's arguments that name what it is about, as log fields.
_ID_ARGUMENTS = {
    "article_id": "article_id",
    "run_id": "run_id",
    "feed_id": "feed_id",
    "subscriber_id": "reader_id",
}


# The log context each running task replaced, put back when it ends (a task run eagerly
# inside a web request must leave the request's ids in place).
_replaced: dict[str, Any] = {}


@signals.task_prerun.connect
def _task_fields(
    task_id: str | None = None, task: Any = None, args: Any = (), kwargs: Any = None, **_: Any
) -> None:
    named: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        named = inspect.signature(task.run).bind_partial(*args, **(kwargs or {})).arguments
    _replaced[task_id or ""] = logs.set_fields(
        task_id=task_id,
        task=getattr(task, "name", None),
        **{field: named.get(argument) for argument, field in _ID_ARGUMENTS.items()},
    )


@signals.task_postrun.connect
def _task_done(task_id: str | None = None, **_: Any) -> None:
    token = _replaced.pop(task_id or "", None)
    if token is not None:
        logs.restore(token)


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
