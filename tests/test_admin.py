"""The admin: refused without login, slowed on wrong passwords, dashboard, digests, preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import clock, create_app
from alerts.cli import main
from alerts.mail.sink import MailSink
from alerts.models import Delivery, DigestRun, Frequency
from alerts.web import admin

import factories
from support import CLOCK, csrf_from

MONDAY = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)

ADMIN_PAGES = [
    "/admin/",
    "/admin/digests",
    "/admin/digests/1",
    "/admin/preview",
    "/admin/preview/alert",
    "/admin/runs",
    "/admin/readers",
    "/admin/readers/1",
    "/admin/articles",
]


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(admin.login.time, "sleep", slept.append)
    admin.throttle.memory.clear()
    return slept


def login(client: FlaskClient, password: str = "admin") -> Any:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_from(page.get_data(as_text=True)), "password": password},
    )


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_need_a_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/digests"), ("POST", "/admin/digests/start"), ("POST", "/admin/preview")],
)
def test_admin_posts_need_a_login(client: FlaskClient, method: str, path: str) -> None:
    # Even with a valid CSRF token from a public page, nothing happens without a login.
    token = csrf_from(client.get("/").get_data(as_text=True))
    response = client.open(path, method=method, data={"csrf_token": token, "frequency": "daily"})
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/api/v1/digests", {"frequency": "daily"}), ("GET", "/api/v1/digests/1", None)],
)
def test_admin_api_needs_the_token_or_a_login(
    client: FlaskClient, session: Session, method: str, path: str, body: Any
) -> None:
    assert client.open(path, method=method, json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.open(path, method=method, json=body, headers=wrong).status_code == 401
    assert session.scalar(select(func.count()).select_from(DigestRun)) == 0


def test_wrong_passwords_are_slowed_down_then_refused(
    client: FlaskClient, no_sleep: list[float]
) -> None:
    for _ in range(10):
        assert login(client, "guess").status_code == 401
    assert no_sleep == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert login(client, "admin").status_code == 429  # locked, even with the right one
    assert client.get("/admin/").status_code == 302


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/admin/login", data={"password": "admin"})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_never_redirects_off_site(client: FlaskClient) -> None:
    page = client.get("/admin/login?next=//evil.example/")
    response = client.post(
        "/admin/login?next=//evil.example/",
        data={"csrf_token": csrf_from(page.get_data(as_text=True)), "password": "admin"},
    )
    assert response.headers["Location"] == "/admin/"


def test_production_session_cookie_is_secure(database_url: str) -> None:
    app = create_app(
        {
            "ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "s" * 32,
            "API_TOKEN": "t" * 32,
            "ADMIN_PASSWORD": "correct horse battery staple",
            "BASE_URL": "https://alerts.example.org",
            "MAIL_FROM": "IP Policy Watch <alerts@alerts.example.org>",
        }
    )
    client = app.test_client()
    page = client.get("/admin/login", base_url="https://alerts.example.org")
    response = client.post(
        "/admin/login",
        base_url="https://alerts.example.org",
        headers={"Referer": "https://alerts.example.org/admin/login"},
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "password": "correct horse battery staple",
        },
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    app.extensions["alerts.engine"].dispose()


def test_dashboard_shows_numbers_and_charts(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    factories.subscriber(session, ["wipo"])
    factories.subscriber(session, ["copyright"], frequency=Frequency.WEEKLY)
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(topics=["wipo"], published_at=None),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    login(client)
    html = client.get("/admin/").get_data(as_text=True)
    assert '<span class="number">2</span><span class="name">active</span>' in html
    assert '<span class="number">1</span><span class="name">weekly</span>' in html
    assert html.count("<svg") == 2 and "<title>" in html
    assert "sent (1)" in html and "articles (1)" in html
    assert "<script" not in html and "http://cdn" not in html


def test_digest_dry_run_then_start_then_progress(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    readers = [factories.subscriber(session, ["wipo"], frequency=Frequency.DAILY) for _ in range(3)]
    factories.subscriber(session, ["patents"], frequency=Frequency.DAILY)  # nothing new for them
    factories.article(
        session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"], title="Digest me"
    )
    frozen_clock(MONDAY + timedelta(hours=2))
    login(client)
    form = client.get("/admin/digests").get_data(as_text=True)
    dry = client.post(
        "/admin/digests", data={"csrf_token": csrf_from(form), "frequency": "daily", "topic": ""}
    )
    html = dry.get_data(as_text=True)
    assert (
        '<span class="number">3</span><span class="name">readers would get an email</span>' in html
    )
    assert "srcdoc=" in html and "Digest me" in html
    assert sink.store.all() == []  # a dry run sends nothing
    assert session.scalar(select(func.count()).select_from(DigestRun)) == 0

    started = client.post(
        "/admin/digests/start",
        data={"csrf_token": csrf_from(html), "frequency": "daily", "topic": ""},
    )
    assert started.status_code == 302
    run_page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert '<span class="number" id="sent">3</span>' in run_page
    assert '<span class="number" id="skipped">1</span>' in run_page
    assert '<span class="number" id="remaining">0</span>' in run_page
    assert sorted(m.recipients[0] for m in sink.store.all()) == sorted(r.email for r in readers)


def test_digests_api_dry_run_start_join_and_status(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    factories.subscriber(session, ["wipo"], frequency=Frequency.WEEKLY)
    factories.article(session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"])
    frozen_clock(MONDAY + timedelta(hours=2))
    auth = {"Authorization": "Bearer dev-api-token"}
    dry = client.post(
        "/api/v1/digests", json={"frequency": "weekly", "dry_run": True}, headers=auth
    )
    assert dry.status_code == 200 and dry.get_json()["emails"] == 1
    first = client.post("/api/v1/digests", json={"frequency": "weekly"}, headers=auth)
    assert first.status_code == 202
    body = first.get_json()
    assert body["existing"] is False and body["period"] == "2026-W45"
    second = client.post("/api/v1/digests", json={"frequency": "weekly"}, headers=auth).get_json()
    assert second["existing"] is True and second["id"] == body["id"]
    status = client.get(f"/api/v1/digests/{body['id']}", headers=auth).get_json()
    assert status["sent"] == 1 and status["remaining"] == 0 and status["done"] is True
    assert len(sink.store.all()) == 1
    bad = client.post(
        "/api/v1/digests", json={"frequency": "hourly", "topic": "nope"}, headers=auth
    )
    assert bad.status_code == 422 and "frequency" in bad.get_json()["fields"]
    unknown = client.post(
        "/api/v1/digests", json={"frequency": "daily", "topic": "nope"}, headers=auth
    )
    assert unknown.status_code == 422 and unknown.get_json()["fields"] == {"topic": "unknown topic"}


def test_preview_shows_the_digest_and_records_nothing_then_test_send(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    reader = factories.subscriber(session, ["wipo"], frequency=Frequency.DAILY)
    factories.article(
        session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"], title="Preview me"
    )
    frozen_clock(MONDAY + timedelta(hours=2))
    login(client)
    page = client.get(f"/admin/preview?email={reader.email}&frequency=daily")
    html = page.get_data(as_text=True)
    assert "IP Policy Watch · Your daily news alert: 1 new article" in html and "Preview me" in html
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    sent = client.post(
        "/admin/preview",
        data={
            "csrf_token": csrf_from(html),
            "email": reader.email,
            "frequency": "daily",
            "send_to": "editor@example.org",
        },
    )
    assert "Test sent to <strong>editor@example.org</strong>" in sent.get_data(as_text=True)
    [message] = sink.store.all()
    assert message.recipients == ["editor@example.org"]
    assert message.subject == "[TEST] IP Policy Watch · Your daily news alert: 1 new article"
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert client.get("/admin/preview?email=nobody@example.org").status_code == 404


def test_cli_digests_send_with_dry_run_and_progress(
    app: Flask, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(MONDAY)
    for _ in range(3):
        factories.subscriber(session, ["wipo"], frequency=Frequency.MONTHLY)
    factories.article(
        session, published_at=MONDAY + timedelta(hours=1), topics=["wipo"], title="Monthly"
    )
    CLOCK.freeze(MONDAY + timedelta(hours=2))
    runner = app.test_cli_runner()
    dry = runner.invoke(main, args=["digests", "send", "--frequency", "monthly", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "3 of 3 monthly readers would get an email" in dry.output
    assert sink.store.all() == []
    result = runner.invoke(main, args=["digests", "send", "--frequency", "monthly"])
    assert result.exit_code == 0, result.output
    assert "new): 3 readers added" in result.output and "Sending" in result.output
    assert "this call: 3 sent, 0 skipped (nothing new), 0 failed, 0 left" in result.output
    # Again a minute later: the same run, nothing new for anyone, and it says so (not the
    # run's earlier totals).
    CLOCK.freeze(MONDAY + timedelta(hours=2, minutes=1))
    again = runner.invoke(main, args=["digests", "send", "--frequency", "monthly"])
    assert "joined): 3 readers added" in again.output
    assert "this call: 0 sent, 3 skipped (nothing new)" in again.output
    assert len(sink.store.all()) == 3
    # An article later the same day: the dry run and the send agree, and nobody gets the
    # first article twice.
    CLOCK.freeze(MONDAY + timedelta(hours=5))
    factories.article(session, published_at=clock.now(), topics=["wipo"], title="Later")
    CLOCK.freeze(MONDAY + timedelta(hours=6))
    dry = runner.invoke(main, args=["digests", "send", "--frequency", "monthly", "--dry-run"])
    assert "3 of 3 monthly readers would get an email" in dry.output
    late = runner.invoke(main, args=["digests", "send", "--frequency", "monthly"])
    assert "this call: 3 sent" in late.output
    latest = [m for m in sink.store.all() if "Later" in m.body("plain")]
    assert len(latest) == 3 and all("Monthly" not in m.body("plain") for m in latest)


def test_dashboard_says_when_the_relay_is_down_and_what_waits(
    client: FlaskClient, session: Session
) -> None:
    from alerts.sending import ledger, relay
    from alerts.sending.policy import RetryPolicy

    readers = [factories.subscriber(session, ["wipo"]) for _ in range(3)]
    article = factories.article(session, topics=["wipo"])
    ledger.write_pending(session, article.id, [reader.id for reader in readers])
    relay.trouble(session, "smtp.example.org:587", "ConnectionRefusedError: refused", RetryPolicy())
    session.commit()
    login(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "The mail relay smtp.example.org:587 is down" in page
    assert "ConnectionRefusedError: refused" in page
    assert (
        '<span class="number">3</span><span class="name">alerts waiting to be sent</span>' in page
    )
    assert (
        '<span class="number">1</span><span class="name">articles awaiting fan-out</span>' in page
    )
    relay.recovered(session, "smtp.example.org:587")
    session.commit()
    assert "The mail relay is up." in client.get("/admin/").get_data(as_text=True)
