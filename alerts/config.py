"""Settings: dev defaults, every one overridable by an ALERTS_* environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

DEV_SECRET_KEY = "dev-secret-key-not-for-production"  # noqa: S105 - refused in production
DEV_API_TOKEN = "dev-api-token"  # noqa: S105 - refused in production
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105 - refused in production

# Settings that must be set to a real value before the service runs in production.
PRODUCTION_SECRETS = {
    "SECRET_KEY": DEV_SECRET_KEY,
    "API_TOKEN": DEV_API_TOKEN,
    "ADMIN_PASSWORD": DEV_ADMIN_PASSWORD,
}

# Settings that are strings even when the environment value looks like JSON ("1234").
STRING_SETTINGS = (
    "ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "SMTP_URL",
    "MAIL_FROM",
    "BASE_URL",
    "SECRET_KEY",
    "API_TOKEN",
    "ADMIN_PASSWORD",
    "SITE_NAME",
    "DEV_MAIL_DIR",
    "RATELIMIT_SUBSCRIBE_IP",
    "RATELIMIT_SUBSCRIBE_ADDRESS",
    "RATELIMIT_API",
    "RATELIMIT_LOGIN",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


# The Celery queue of feed polls; every other task goes to Celery's default queue.
FEEDS_QUEUE = "feeds"
DEFAULT_QUEUE = "celery"
# Processes of a sending worker node. Sending waits on the relay most of the time (its
# replies, then each outcome's commit), so a node runs more processes than it has cores:
# with two per core the relay always has a message to read (measured by `make bench`).
SEND_PROCESSES = 4

# The longest countdown of a confirmation email's retries (worker/tasks.py).
CONFIRMATION_RETRY_MAX = 600


class ConfigError(RuntimeError):
    """The settings cannot run the service; the message says what to change."""


def var_dir() -> str:
    """The folder for local state (SQLite database, dev mail, embedded Redis)."""
    return os.path.abspath("var")


def defaults() -> dict[str, Any]:
    var = var_dir()
    return {
        "ENV": "development",
        "DATABASE_URL": f"sqlite:///{var}/alerts.db",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SMTP_URL": "smtp://127.0.0.1:8025",
        "SMTP_TIMEOUT": 30,
        # Unset: "<SITE_NAME> news alerts <alerts@localhost>", so an inbox names the site.
        "MAIL_FROM": None,
        "BASE_URL": "http://127.0.0.1:5000",
        "SECRET_KEY": DEV_SECRET_KEY,
        "API_TOKEN": DEV_API_TOKEN,
        "ADMIN_PASSWORD": DEV_ADMIN_PASSWORD,
        "SITE_NAME": "IP Policy Watch",
        # Version of the consent text on the signup form; stored with every consent record.
        "CONSENT_VERSION": "signup-2026-11",
        "CONFIRM_MAX_AGE": 7 * 24 * 3600,
        "CONFIRM_RESEND_INTERVAL": 3600,
        "UNCONFIRMED_RETENTION_DAYS": 30,
        "UNSUBSCRIBE_MAX_AGE": 400 * 24 * 3600,
        "FANOUT_BATCH_SIZE": 500,
        # Readers per digest batch: each batch claims, builds and records its readers'
        # articles in a few statements, and opens one connection to the relay.
        "DIGEST_BATCH_SIZE": 2000,
        # Send tasks per article (or digest run) started while fan-out writes its pages: as
        # many as the send workers' processes (SEND_PROCESSES per node).
        "SEND_PARALLELISM": SEND_PROCESSES,
        # A temporary refusal of one reader: retried after 30 s, doubling up to an hour, for
        # a day (an MTA's queue lifetime), then failed. The relay's own trouble counts none.
        "SEND_RETRY_BACKOFF": 30,
        "SEND_RETRY_BACKOFF_MAX": 3600,
        "SEND_RETRY_HORIZON": 24 * 3600,
        # A send lease not renewed for this long is a dead worker's: taken over (the
        # reconciler looks every RECONCILE_INTERVAL), so within about two minutes.
        "SEND_STALE_AFTER": 90,
        "SEND_TASK_SLICE": 30,
        "RECONCILE_INTERVAL": 30,
        # The relay unreachable: wait 5 s before probing it again, doubling up to 5 minutes.
        "RELAY_BACKOFF": 5,
        "RELAY_BACKOFF_MAX": 300,
        # Redis redelivers a task unacknowledged for this long: above every countdown the
        # service uses and every task's run time (checked at start).
        "BROKER_VISIBILITY_TIMEOUT": 3600,
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        # GET /metrics answers only with "Authorization: Bearer <METRICS_TOKEN>"; unset, it is
        # not served by the web app at all (`alerts metrics serve` gives a separate address).
        "METRICS_TOKEN": None,
        # /readyz: beat is counted as stopped once it has not ticked for this long.
        "BEAT_MAX_SILENCE": 120,
        # "json": one JSON object per log line (production); "text": readable lines.
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        "DIGEST_CHECK_INTERVAL": 300,
        "FEED_CHECK_INTERVAL": 60,
        "FEED_TIMEOUT": 20,
        # Internal hosts feeds may come from ("host" or "host:port", comma-separated): every
        # other loopback, private or link-local address is refused.
        "FEED_ALLOW": "",
        # Abuse limits (limits notation). Storage: RATELIMIT_STORAGE_URI, default the broker.
        "RATELIMIT_STORAGE_URI": None,
        "RATELIMIT_SUBSCRIBE_IP": "10 per minute; 100 per hour",
        "RATELIMIT_SUBSCRIBE_ADDRESS": "5 per hour",
        "RATELIMIT_API": "600 per minute",
        "RATELIMIT_LOGIN": "10 per minute",
        "DEV_MAIL_DIR": os.path.join(var, "mail"),
        "CELERY_ALWAYS_EAGER": False,
        # Celery's own settings (lower-case names, as Celery spells them); any of them can be
        # set or overridden with ALERTS_CELERY__<NAME>=<JSON value>, for example
        # ALERTS_CELERY__WORKER_PREFETCH_MULTIPLIER=4. The broker, its visibility timeout,
        # eager mode and the beat schedule come from the settings above.
        "CELERY": {
            "broker_connection_retry_on_startup": True,
            # A worker waits out a broker restart however long it takes, and finishes the
            # tasks it is running meanwhile: their outcomes are in the database, not the broker.
            "broker_connection_max_retries": None,
            "worker_cancel_long_running_tasks_on_connection_loss": False,
            "task_ignore_result": True,
            # Sending is at-least-once from the broker's view; the tasks make it exactly-once.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_serializer": "json",
            "accept_content": ["json"],
            "timezone": "UTC",
            "enable_utc": True,
            "task_eager_propagates": True,
            "worker_hijack_root_logger": False,
            # Task events are off: three more broker messages per task, a fifth of a
            # confirmation's cost. Flower turns them on in the workers when it starts
            # (`celery -A worker control enable_events` does the same).
            "worker_send_task_events": False,
            "task_send_sent_event": False,
            # Celery's scheduler, recording each tick for /readyz (worker/beat.py).
            "beat_scheduler": "worker.beat:Scheduler",
            # Feeds are polled by their own worker pool (`-Q feeds`): a slow feed server can
            # hold a feed worker up to FEED_TIMEOUT, never a sending one.
            "task_routes": {
                "alerts.poll_feed": {"queue": FEEDS_QUEUE},
                "alerts.poll_due_feeds": {"queue": FEEDS_QUEUE},
            },
        },
    }


def normalize(config: dict[str, Any]) -> None:
    """Coerce values read from the environment into the types the code expects."""
    for key in STRING_SETTINGS:
        if config.get(key) is not None:
            config[key] = str(config[key])
    config["BASE_URL"] = config["BASE_URL"].rstrip("/")
    if not config.get("MAIL_FROM"):
        config["MAIL_FROM"] = f"{config['SITE_NAME']} news alerts <alerts@localhost>"
    config["CELERY"] = celery_settings(config.get("CELERY") or {})
    allow = config.get("FEED_ALLOW") or ()
    if not isinstance(allow, list | tuple):
        allow = str(allow).split(",")
    config["FEED_ALLOW"] = tuple(entry.strip().lower() for entry in allow if entry.strip())


def celery_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """Celery's settings with lower-case names (the environment gives them upper-case), each
    of the type of its default.

    Raises:
        ConfigError: a value of the wrong type for a setting the service sets itself.
    """
    types = {name: type(value) for name, value in defaults()["CELERY"].items()}
    settings = {}
    for name, value in given.items():
        key = name.lower()
        expected = types.get(key)
        wrong = (
            expected is not None
            and expected is not type(None)
            and not isinstance(value, expected)
            and not (expected is float and isinstance(value, int))
        ) or (expected is int and isinstance(value, bool))
        if wrong:
            raise ConfigError(
                f"ALERTS_CELERY__{key.upper()} must be a JSON {expected.__name__}, "  # type: ignore[union-attr]
                f"not {value!r}."
            )
        settings[key] = value
    return settings


def check_sending(config: Mapping[str, Any]) -> None:
    """Refuse timings under which the broker would hand out a waiting or running task twice."""
    visibility = float(config["BROKER_VISIBILITY_TIMEOUT"])
    longest = max(
        float(config["RELAY_BACKOFF_MAX"]),
        float(config["SEND_STALE_AFTER"]),
        CONFIRMATION_RETRY_MAX,
    ) + 2 * float(config["SEND_TASK_SLICE"])
    if visibility < 2 * longest:
        raise ConfigError(
            f"ALERTS_BROKER_VISIBILITY_TIMEOUT ({visibility:g}s) must be at least twice the "
            f"longest task delay plus run time ({longest:g}s), or Redis would deliver a "
            "waiting task a second time."
        )


def check_production(config: Mapping[str, Any]) -> None:
    """Refuse to start in production with a missing or default secret."""
    if config.get("ENV") != "production":
        return
    problems = [
        f"ALERTS_{key} is missing or still the development default"
        for key, dev_value in PRODUCTION_SECRETS.items()
        if not config.get(key) or config[key] == dev_value
    ]
    sender_domain = parseaddr(str(config.get("MAIL_FROM", "")))[1].rpartition("@")[2].lower()
    if "." not in sender_domain or sender_domain.endswith((".localhost", ".local")):
        problems.append(
            "ALERTS_MAIL_FROM must be an address on the site's own domain, not "
            f"{sender_domain or 'an empty one'!r} (receivers refuse it, Message-IDs use it)"
        )
    if not str(config.get("BASE_URL", "")).startswith("https://"):
        problems.append("ALERTS_BASE_URL must be an https:// address (unsubscribe links need it)")
    if problems:
        raise ConfigError("news alerts will not start in production: " + "; ".join(problems) + ".")
