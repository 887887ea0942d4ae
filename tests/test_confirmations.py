"""Confirmation emails as a ledger: owed from the signup's commit, sent once by a woken
sender (or beat's drain), whatever happened to the broker in between."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.devstack import EmbeddedRedis
from alerts.mail.sink import FailureRule, MailSink
from alerts.models import ConfirmationEmail, DeliveryStatus, Subscriber, SubscriberStatus
from alerts.sending import confirmations
from worker import tasks

from support import confirm_link_in, csrf_from


def signup(client: FlaskClient, email: str = "reader@example.org") -> Any:
    page = client.get("/")
    return client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "email": email,
            "topics": ["wipo"],
            "languages": ["en"],
            "frequency": "daily",
        },
    )


def rows(session: Session) -> list[ConfirmationEmail]:
    session.expire_all()
    return list(session.scalars(select(ConfirmationEmail).order_by(ConfirmationEmail.id)))


def drain(app: Flask) -> None:
    with app.app_context():
        tasks.send_confirmations()


def test_a_confirmation_owed_while_the_broker_is_down_goes_out_once_at_the_next_drain(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broker_down() -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.send_confirmations, "delay", broker_down)
    response = signup(client)
    assert response.status_code == 303  # the reader sees the usual answer
    [owed] = rows(session)
    assert owed.status is DeliveryStatus.PENDING and sink.store.all() == []

    monkeypatch.undo()
    drain(app)  # beat's drain
    drain(app)
    [message] = sink.store.all()
    assert message.recipients == ["reader@example.org"]
    [sent] = rows(session)
    assert sent.status is DeliveryStatus.SENT and sent.sent_at is not None
    # The link it carries is the reader's current one, and works.
    link = confirm_link_in(message.body("plain")).removeprefix("http://alerts.test")
    assert client.get(link).status_code == 200
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.status is SubscriberStatus.ACTIVE


def test_a_link_replaced_or_used_before_its_email_went_is_not_sent(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: None)
    signup(client)
    subscriber = session.scalars(select(Subscriber)).one()
    subscriber.confirm_nonce = "0123456789abcdef"  # a newer link took its place
    session.commit()
    drain(app)
    assert sink.store.all() == []
    [skipped] = rows(session)
    assert skipped.status is DeliveryStatus.SKIPPED and skipped.last_error == "link replaced"


def test_a_refused_confirmation_is_retried_later_and_a_bounce_suppresses_nobody(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink
) -> None:
    sink.handler.rules.append(FailureRule("later@example.org", 451, 1))
    sink.handler.rules.append(FailureRule("typo@example.org", 550))
    signup(client, "later@example.org")
    signup(client, "typo@example.org")
    by_address = {
        email: row
        for row in rows(session)
        for email in session.scalars(
            select(Subscriber.email).where(Subscriber.id == row.subscriber_id)
        )
    }
    later, typo = by_address["later@example.org"], by_address["typo@example.org"]
    assert later.status is DeliveryStatus.PENDING and later.next_attempt_at is not None
    assert later.attempts == 1 and "451" in (later.last_error or "")
    assert typo.status is DeliveryStatus.BOUNCED
    # A never-confirmed address that bounced is not suppressed: it can sign up again.
    assert session.get(Subscriber, typo.subscriber_id).status is SubscriberStatus.PENDING
    assert sink.store.all() == []


def test_one_sender_is_woken_at_a_time_and_the_next_signup_after_it_looked_wakes_another(
    app: Flask, session: Session, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    try:
        app.config.update(CELERY_ALWAYS_EAGER=False, REDIS_URL=server.url)
        queued: list[str] = []
        monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: queued.append("sender"))
        with app.app_context():
            for _ in range(3):  # three signups before the sender starts
                tasks._wake_confirmations()
            assert queued == ["sender"]
            client = tasks._client(server.url)
            assert client.ttl(confirmations.WAKE_KEY) > 0  # a lost wake-up lapses
            tasks.send_confirmations()  # it looks, and finds nothing left
            assert client.get(confirmations.WAKE_KEY) is None
            tasks._wake_confirmations()
            assert queued == ["sender", "sender"]
    finally:
        server.stop()
