"""Abuse limits: per IP and per address on signup, on the API and the admin login; honeypot."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.mail.sink import MailSink
from alerts.models import Subscriber

import factories
from support import csrf_from


def signup(client: FlaskClient, email: str, ip: str = "203.0.113.9", **extra: Any) -> Any:
    page = client.get("/", environ_base={"REMOTE_ADDR": ip})
    data = {
        "csrf_token": csrf_from(page.get_data(as_text=True)),
        "email": email,
        "topics": ["wipo"],
        "languages": ["en"],
        "frequency": "daily",
        **extra,
    }
    return client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": ip})


def test_signups_per_ip_are_limited_with_a_clear_page(app: Flask, client: FlaskClient) -> None:
    app.config["RATELIMIT_SUBSCRIBE_IP"] = "3 per minute"
    for number in range(3):
        assert signup(client, f"reader{number}@example.org").status_code == 303
    refused = signup(client, "reader9@example.org")
    assert refused.status_code == 429
    assert "Please slow down" in refused.get_data(as_text=True)
    assert "Retry-After" in refused.headers
    # Another address from another place is still welcome.
    assert signup(client, "other@example.org", ip="198.51.100.20").status_code == 303


def test_signups_per_address_are_limited_whatever_the_ip(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    app.config["RATELIMIT_SUBSCRIBE_ADDRESS"] = "2 per hour"
    assert signup(client, "target@example.org", ip="192.0.2.1").status_code == 303
    assert signup(client, "TARGET@example.org ", ip="192.0.2.2").status_code == 303
    assert signup(client, "target@example.org", ip="192.0.2.3").status_code == 429


def test_the_api_is_limited_with_json(app: Flask, client: FlaskClient) -> None:
    app.config["RATELIMIT_API"] = "2 per minute"
    auth = {"Authorization": "Bearer dev-api-token"}
    for _ in range(2):
        assert client.get("/api/v1/topics").status_code == 200
    refused = client.post("/api/v1/articles", json=factories.article_payload(), headers=auth)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "too_many_requests"


def test_admin_login_is_limited(app: Flask, client: FlaskClient, monkeypatch: Any) -> None:
    from alerts.web import admin

    monkeypatch.setattr(admin.login.time, "sleep", lambda _seconds: None)
    app.config["RATELIMIT_LOGIN"] = "2 per minute"
    page = client.get("/admin/login").get_data(as_text=True)
    for _ in range(2):
        client.post("/admin/login", data={"csrf_token": csrf_from(page), "password": "x"})
    refused = client.post("/admin/login", data={"csrf_token": csrf_from(page), "password": "admin"})
    assert refused.status_code == 429


def test_honeypot_is_accepted_silently_and_stores_nothing(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    response = signup(client, "bot@example.org", website="http://spam.example")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/subscribe/check-your-email")
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert sink.store.all() == []


def test_the_honeypot_is_hidden_from_people(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert '<div class="visually-hidden" aria-hidden="true">' in html
    assert 'name="website" tabindex="-1" autocomplete="off"' in html
