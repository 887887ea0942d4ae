"""Settings: read once from ALERTS_* variables, and production refuses development secrets."""

from __future__ import annotations

import pytest

from alerts import config, create_app
from alerts.config import ConfigError


def test_settings_come_from_alerts_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("ALERTS_SITE_NAME", "Health Policy Watch")
    monkeypatch.setenv("ALERTS_API_TOKEN", "123456")
    monkeypatch.setenv("ALERTS_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("ALERTS_BASE_URL", "https://alerts.example.org/")
    app = create_app()
    assert app.config["SITE_NAME"] == "Health Policy Watch"
    assert app.config["API_TOKEN"] == "123456"  # a string, though it looks like JSON
    assert app.config["BASE_URL"] == "https://alerts.example.org"
    app.extensions["alerts.engine"].dispose()


def production(**overrides: str) -> dict[str, str]:
    settings = config.defaults()
    settings.update(
        ENV="production",
        SECRET_KEY="a-long-random-secret",
        API_TOKEN="a-long-random-token",
        ADMIN_PASSWORD="a-long-random-password",
        BASE_URL="https://alerts.example.org",
        MAIL_FROM="IP Policy Watch <alerts@news.example.org>",
    )
    settings.update(overrides)
    return settings


def test_production_accepts_real_secrets() -> None:
    config.check_production(production())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SECRET_KEY", config.DEV_SECRET_KEY),
        ("SECRET_KEY", ""),
        ("API_TOKEN", config.DEV_API_TOKEN),
        ("ADMIN_PASSWORD", config.DEV_ADMIN_PASSWORD),
        ("ADMIN_PASSWORD", ""),
    ],
)
def test_production_refuses_missing_or_default_secrets(key: str, value: str) -> None:
    with pytest.raises(
        ConfigError, match=f"ALERTS_{key} is missing or still the development default"
    ):
        config.check_production(production(**{key: value}))


def test_production_start_up_stops_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_ENV", "production")
    with pytest.raises(ConfigError, match="will not start in production"):
        create_app()


def test_production_needs_an_https_base_url() -> None:
    with pytest.raises(ConfigError, match="https"):
        config.check_production(production(BASE_URL="http://alerts.example.org"))


def test_celery_settings_come_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("ALERTS_CELERY__WORKER_PREFETCH_MULTIPLIER", "4")
    monkeypatch.setenv("ALERTS_CELERY__BROKER_POOL_LIMIT", "3")
    app = create_app()
    conf = app.extensions["celery"].conf
    assert conf.worker_prefetch_multiplier == 4  # overridden
    assert conf.broker_pool_limit == 3  # a setting the service does not set itself
    assert conf.task_acks_late is True  # the defaults stay
    assert conf.broker_transport_options["visibility_timeout"] == 3600  # derived
    app.extensions["alerts.engine"].dispose()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALERTS_CELERY__WORKER_PREFETCH_MULTIPLIER", "four", "must be a JSON int"),
        ("ALERTS_CELERY__TASK_ACKS_LATE", "1", "must be a JSON bool"),
        ("ALERTS_CELERY__WORKER_PREFETCH_MULTIPLYER", "4", "Celery has no setting"),
    ],
)
def test_a_bad_celery_setting_stops_start_up_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        create_app()


def test_feed_polls_have_their_own_queue(app: object) -> None:
    from celery import Celery

    from alerts import devstack

    celery_app: Celery = app.extensions["celery"]  # type: ignore[attr-defined]
    router = celery_app.amqp.router
    assert router.route({}, "alerts.poll_feed")["queue"].name == "feeds"
    assert router.route({}, "alerts.poll_due_feeds")["queue"].name == "feeds"
    assert router.route({}, "alerts.send_alerts")["queue"].name == "celery"
    # `alerts dev` starts a worker for each: sending never waits behind a slow feed.
    argv = devstack.celery_worker_argv(1, queues="feeds", name="feeds@%h")
    assert argv[argv.index("--queues") + 1] == "feeds"
    assert devstack.celery_worker_argv()[argv.index("--queues") + 1] == "celery"


@pytest.mark.parametrize(
    "sender", ["News alerts <alerts@localhost>", "alerts@mailhost", "x@news.localhost", ""]
)
def test_production_refuses_a_sender_on_localhost_or_an_unqualified_domain(sender: str) -> None:
    with pytest.raises(ConfigError, match="ALERTS_MAIL_FROM"):
        config.check_production(production(MAIL_FROM=sender))
