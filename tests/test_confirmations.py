"""Confirmation emails as a ledger: owed from the signup's commit, sent once by a woken
sender (or beat's drain), whatever happened to the broker in between."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
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


def test_signing_up_again_while_the_first_email_waits_for_a_retry_sends_one(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    sink.handler.rules.append(FailureRule("slow@example.org", 451, 1))
    signup(client, "slow@example.org")  # greylisted: retried later
    assert sink.store.all() == []
    frozen_clock.advance(timedelta(seconds=3601))  # the reader tries again an hour later
    signup(client, "slow@example.org")  # both rows are due now
    [message] = sink.store.all()
    assert message.recipients == ["slow@example.org"]
    first, second = rows(session)
    assert first.nonce == second.nonce  # the same link either way
    assert first.status is DeliveryStatus.SKIPPED and first.last_error == "superseded"
    assert second.status is DeliveryStatus.SENT


def test_a_signup_committed_while_the_sender_looks_is_sent_by_that_sender(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader presses the button after the woken sender found nothing, before it deletes
    the wake-up key: their signup sees the key set and queues nothing, so the sender must
    look once more after the deletion."""

    def a_signup_after_the_first_look(look: int) -> None:
        if look == 1:
            assert signup(client, "late@example.org").status_code == 303

    woken = a_woken_sender(app, tmp_path, monkeypatch, a_signup_after_the_first_look)
    with woken as (queued, looks), app.app_context():
        tasks._wake_confirmations()  # an earlier signup's, whose email beat already sent
        tasks.send_confirmations()
    assert queued == ["sender"]  # the late signup found the key set
    [message] = sink.store.all()
    assert message.recipients == ["late@example.org"]
    assert looks == [0, 1]  # the look after the deletion found it


def test_signups_while_the_woken_sender_works_go_out_in_its_next_batches_and_wake_no_other(
    app: Flask,
    client: FlaskClient,
    sink: MailSink,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of signups: one sender, each of its looks a batch of what came in meanwhile,
    rather than a sender (and a batch) per signup."""

    def three_signups_after_each_of_the_first_two_looks(look: int) -> None:
        for number in range(3 if look <= 2 else 0):
            assert signup(client, f"reader{look}-{number}@example.org").status_code == 303

    with a_woken_sender(
        app, tmp_path, monkeypatch, three_signups_after_each_of_the_first_two_looks
    ) as (queued, looks):
        assert signup(client, "first@example.org").status_code == 303
        with app.app_context():
            tasks.send_confirmations()
    assert queued == ["sender"]  # the signups meanwhile found the key set
    assert looks == [1, 3, 3, 0, 0]  # then the look after the deletion
    received = sorted(r for message in sink.store.all() for r in message.recipients)
    assert len(received) == 7 and len(set(received)) == 7


@contextmanager
def a_woken_sender(
    app: Flask, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, after_look: Callable[[int], None]
) -> Iterator[tuple[list[str], list[int]]]:
    """Senders woken through a real Redis (the wake-up key): the wake-ups are counted instead
    of queued, and what each look sent; `after_look(n)` runs after the n-th look."""
    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    try:
        app.config.update(CELERY_ALWAYS_EAGER=False, REDIS_URL=server.url)
        queued: list[str] = []
        looks: list[int] = []
        monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: queued.append("sender"))
        drain_now = confirmations.drain

        def looking(*args: Any, **kwargs: Any) -> Any:
            result = drain_now(*args, **kwargs)
            looks.append(result.outcome.sent)
            after_look(len(looks))
            return result

        monkeypatch.setattr(confirmations, "drain", looking)
        yield queued, looks
    finally:
        server.stop()


def test_a_confirmation_queued_by_the_previous_release_is_owed_once(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: None)
    signup(client)
    [owed] = rows(session)
    session.delete(owed)  # as if signed up before the ledger existed
    session.commit()
    subscriber = session.scalars(select(Subscriber)).one()
    monkeypatch.undo()
    with app.app_context():
        tasks.send_confirmation(subscriber.id, "not-the-link")  # replaced since: nothing
        assert rows(session) == []
        tasks.send_confirmation(subscriber.id, subscriber.confirm_nonce)
        tasks.send_confirmation(subscriber.id, subscriber.confirm_nonce)  # delivered twice
    [message] = sink.store.all()
    assert message.recipients == ["reader@example.org"]
    assert [row.status for row in rows(session)] == [DeliveryStatus.SENT]


def test_an_email_whose_link_another_sender_sent_since_is_not_sent_again(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two senders at once: one sent the newer email of a link while the other still held
    the older one (waiting for its retry): the older one is not sent after it."""
    monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: None)
    signup(client)
    [older] = rows(session)
    session.add(
        ConfirmationEmail(
            subscriber_id=older.subscriber_id,
            nonce=older.nonce,
            status=DeliveryStatus.SENT,
            created_at=older.created_at + timedelta(hours=1),
            sent_at=older.created_at + timedelta(hours=1),
        )
    )
    session.commit()
    drain(app)
    assert sink.store.all() == []
    first, _ = rows(session)
    assert first.status is DeliveryStatus.SKIPPED and first.last_error == "superseded"


def test_a_newer_email_with_an_old_link_does_not_take_the_place_of_the_current_one(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.send_confirmations, "delay", lambda: None)
    signup(client)
    [current] = rows(session)
    session.add(ConfirmationEmail(subscriber_id=current.subscriber_id, nonce="0" * 16))
    session.commit()
    drain(app)
    [message] = sink.store.all()
    assert message.recipients == ["reader@example.org"]
    mine, stale = rows(session)
    assert mine.status is DeliveryStatus.SENT
    assert stale.status is DeliveryStatus.SKIPPED and stale.last_error == "link replaced"
