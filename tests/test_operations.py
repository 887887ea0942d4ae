"""What operators rely on: /healthz and /readyz, /metrics (behind its token, counting what
readers did and what was sent), and logs that carry ids and never an address or a token."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from alerts import logs
from alerts.devstack import EmbeddedRedis
from alerts.mail.sink import MailSink
from alerts.models import SubscriberStatus
from worker.beat import BEAT_TICK_KEY

import factories
from support import confirm_link_in, csrf_from

ROOT = Path(__file__).resolve().parent.parent
METRICS_AUTH = {"Authorization": "Bearer m3trics"}


@pytest.fixture
def ops_app(app: Flask) -> Flask:
    app.config["METRICS_TOKEN"] = "m3trics"
    return app


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_healthz_is_liveness_only(client: FlaskClient) -> None:
    """The broker is down in this app (nothing listens on its port): still alive."""
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_says_what_is_missing(client: FlaskClient) -> None:
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["broker"].startswith("error")
    assert body["worker"].startswith("unknown") and body["beat"].startswith("unknown")


@pytest.fixture
def broker(tmp_path: Path, app: Flask) -> Iterator[redis.Redis]:
    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    app.config["REDIS_URL"] = server.url
    app.extensions["celery"].conf.broker_url = server.url
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def test_readyz_knows_when_beat_stopped_and_no_worker_answers(
    client: FlaskClient, broker: redis.Redis, app: Flask
) -> None:
    body = client.get("/readyz").get_json()
    assert body["broker"] == "ok" and body["beat"] == "error: beat has never ticked"
    assert body["worker"].startswith("error: no sending worker answered")
    broker.set(BEAT_TICK_KEY, str(time.time() - 600))
    assert client.get("/readyz").get_json()["beat"] == "error: no tick for 600s"
    broker.set(BEAT_TICK_KEY, str(time.time() - 5))
    assert client.get("/readyz").get_json()["beat"] == "ok"


@pytest.mark.parametrize(
    ("token", "headers", "status"),
    [
        (None, METRICS_AUTH, 404),
        ("m3trics", {}, 401),
        ("m3trics", {"Authorization": "Bearer wrong"}, 401),
        ("m3trics", METRICS_AUTH, 200),
    ],
)
def test_metrics_are_not_public(
    app: Flask, token: str | None, headers: dict[str, str], status: int
) -> None:
    app.config["METRICS_TOKEN"] = token
    assert app.test_client().get("/metrics", headers=headers).status_code == status


def test_metrics_count_a_readers_life_and_the_emails_sent(
    ops_app: Flask, session: Session, sink: MailSink
) -> None:
    client = ops_app.test_client()
    before = scrape(client)
    page = client.get("/").get_data(as_text=True)
    posted = client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page),
            "email": "metrics-reader@example.org",
            "topics": ["itu-icann"],
            "languages": ["en"],
            "frequency": "immediate",
        },
    )
    assert posted.status_code == 303, posted.get_data(as_text=True)[-3000:]
    [confirmation] = sink.store.to("metrics-reader@example.org")
    client.get(confirm_link_in(confirmation.body("plain")))
    response = client.post(
        "/api/v1/articles",
        json=factories.article_payload(),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    assert response.status_code == 201
    alert = next(m for m in sink.store.to("metrics-reader@example.org") if "ITU" in m.subject)
    unsubscribe = alert.parsed()["List-Unsubscribe"].strip("<>").replace("http://alerts.test", "")
    client.post(
        unsubscribe,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("alerts_signups_total") == 1
    assert grew("alerts_confirmations_total") == 1
    assert grew("alerts_unsubscribes_total", way="one-click") == 1
    assert grew("alerts_emails_total", kind="confirmation", outcome="sent") == 1
    assert grew("alerts_emails_total", kind="welcome", outcome="sent") == 1
    assert grew("alerts_emails_total", kind="alert", outcome="sent") == 1
    assert grew("alerts_smtp_send_seconds_count", kind="alert") == 1
    # The database's gauges: nothing is owed any more, no relay trouble.
    assert value(after, "alerts_deliveries_waiting", kind="alert") == 0
    assert value(after, "alerts_deliveries_oldest_waiting_seconds", kind="digest") == 0
    assert value(after, "alerts_fanout_articles_waiting") == 0
    relay = ops_app.config["SMTP_URL"].removeprefix("smtp://")
    assert value(after, "alerts_relay_up", relay=relay) == 1


def test_waiting_email_shows_its_age(ops_app: Flask, session: Session, frozen_clock: Any) -> None:
    from alerts.models import Delivery

    reader = factories.subscriber(session, ["itu-icann"])
    article = factories.article(session)
    session.add(Delivery(subscriber_id=reader.id, article_id=article.id))
    session.commit()
    frozen_clock.advance(timedelta(minutes=45))
    samples = scrape(ops_app.test_client())
    assert value(samples, "alerts_deliveries_waiting", kind="alert") == 1
    assert value(samples, "alerts_deliveries_oldest_waiting_seconds", kind="alert") == 45 * 60


def test_a_confirmation_owed_shows_as_waiting(
    ops_app: Flask, session: Session, frozen_clock: Any
) -> None:
    """The alert on an email owed for over 30 minutes covers the double opt-in too."""
    from alerts.models import ConfirmationEmail

    reader = factories.subscriber(session, status=SubscriberStatus.PENDING)
    session.add(ConfirmationEmail(subscriber_id=reader.id, nonce="0123456789abcdef"))
    session.commit()
    frozen_clock.advance(timedelta(minutes=40))
    samples = scrape(ops_app.test_client())
    assert value(samples, "alerts_deliveries_waiting", kind="confirmation") == 1
    assert (
        value(samples, "alerts_deliveries_oldest_waiting_seconds", kind="confirmation") == 40 * 60
    )
    assert value(samples, "alerts_deliveries_retrying", kind="confirmation") == 0


def test_the_alert_rules_and_dashboard_use_metrics_that_exist(ops_app: Flask) -> None:
    response = ops_app.test_client().get("/metrics", headers=METRICS_AUTH)
    families = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    exposed = families | {f"{name}_total" for name in families}
    exposed |= {f"{name}_{part}" for name in families for part in ("bucket", "count", "sum")}
    rules = yaml.safe_load((ROOT / "ops/prometheus/alerts.rules.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} >= {
        "NewsAlertsRelayDown",
        "NewsAlertsDeliveriesWaitingTooLong",
        "NewsAlertsBounceRateHigh",
    }
    dashboard = json.loads((ROOT / "ops/grafana/news-alerts.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\balerts_[a-z_]+", expr)}
    assert used and used <= exposed, used - exposed


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes, as LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = logs.Handler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_logs_carry_ids_and_never_an_address_or_a_token(
    client: FlaskClient, session: Session, sink: MailSink, json_log: io.StringIO
) -> None:
    page = client.get("/").get_data(as_text=True)
    client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page),
            "email": "log-reader@example.org",
            "topics": ["itu-icann"],
            "languages": ["en"],
            "frequency": "immediate",
        },
        headers={"X-Request-ID": "req-42"},
    )
    [confirmation] = sink.store.to("log-reader@example.org")
    link = confirm_link_in(confirmation.body("plain"))
    client.get(link)
    logging.getLogger("alerts.test").warning("refused log-reader@example.org at %s", link)
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert "log-reader@example.org" not in text and link.rsplit("/", 1)[1] not in text
    assert "dev-api-token" not in text
    request_lines = [line for line in lines if line["logger"] == "alerts.request"]
    assert any(
        line["request_id"] == "req-42" and line["message"].startswith("POST public.signup 303")
        for line in request_lines
    )
    warning = next(line for line in lines if line["logger"] == "alerts.test")
    assert warning["level"] == "warning" and "<address>" in warning["message"]
    # A task's lines name it and what it is about (tasks run eagerly here).
    task_lines = [line for line in lines if line.get("task") == "alerts.send_alerts"]
    assert task_lines and all(isinstance(line.get("article_id"), int) for line in task_lines)


def test_text_logs_are_readable_lines() -> None:
    record = logging.LogRecord("alerts.x", logging.INFO, __file__, 1, "sent %d", (3,), None)
    token = logs.set_fields(run_id=7)
    try:
        line = logs.TextFormatter().format(record)
    finally:
        logs.restore(token)
    assert re.fullmatch(r"\S+ \S+ INFO    alerts.x: sent 3 \[run_id=7\]", line), line


def test_masking_keeps_task_ids_and_hides_tokens() -> None:
    task_id = "0b8a2b4e-1f7c-4a59-9d0e-2f1c3b4a5d6e"
    signed = "eyJpIjoxMjMsInAiOiJ1bnN1YnNjcmliZSJ9.ZzX4Bg.k3J9s0dLq1w2e3r4t5y6"
    masked = logs.mask(f"task {task_id} for someone@example.org via /unsubscribe/{signed}")
    assert masked == f"task {task_id} for <address> via /unsubscribe/<token>"
    broker = "Connected to redis://:**@127.0.0.1:6379/0"
    assert logs.mask(broker) == broker


def test_relay_down_shows_as_zero(ops_app: Flask, session: Session) -> None:
    from alerts.sending import relay
    from alerts.sending.policy import RetryPolicy

    key = ops_app.config["SMTP_URL"].removeprefix("smtp://")
    relay.trouble(session, key, "ConnectionRefusedError", RetryPolicy())
    session.commit()
    samples = scrape(ops_app.test_client())
    assert value(samples, "alerts_relay_up", relay=key) == 0
    assert value(samples, "alerts_relay_failures", relay=key) == 1


def test_a_reader_refused_for_now_is_retrying_not_waiting(
    ops_app: Flask, session: Session, frozen_clock: Any
) -> None:
    from alerts.models import Delivery

    reader = factories.subscriber(session, ["itu-icann"])
    article = factories.article(session)
    later = frozen_clock.now() + timedelta(hours=2)
    session.add(Delivery(subscriber_id=reader.id, article_id=article.id, next_attempt_at=later))
    session.commit()
    frozen_clock.advance(timedelta(hours=1))
    samples = scrape(ops_app.test_client())
    assert value(samples, "alerts_deliveries_waiting", kind="alert") == 0
    assert value(samples, "alerts_deliveries_oldest_waiting_seconds", kind="alert") == 0
    assert value(samples, "alerts_deliveries_retrying", kind="alert") == 1


def test_counting_never_stops_the_send_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from alerts import metrics

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics.EMAILS, "labels", full_disk)
    monkeypatch.setattr(metrics.SMTP_SECONDS, "labels", full_disk)
    metrics.email("alert", "sent")  # logged, not raised: the loop must not resend
    metrics.smtp_latency("alert", 0.01)


def test_a_database_outage_still_serves_the_counters(ops_app: Flask) -> None:
    ops_app.extensions["alerts.engine"].dispose()
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    gone = create_engine("sqlite:////nonexistent-folder/none.db")
    ops_app.extensions["alerts.sessionmaker"] = sessionmaker(gone)
    samples = scrape(ops_app.test_client())
    assert value(samples, "alerts_database_up") == 0
    assert ("alerts_signups_total", ()) in samples  # the counters are all still there
    assert not any(name == "alerts_deliveries_waiting" for name, _ in samples)


def test_readers_links_are_masked_whatever_their_letters() -> None:
    assert logs.mask("GET /feed/abcdefghijklmnopqrstuvwxyzABCDEF HTTP/1.1") == (
        "GET /feed/<token> HTTP/1.1"
    )
    assert logs.mask("for иван@пример.рф") == "for <address>"
