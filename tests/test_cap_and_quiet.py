"""A daily cap on instant alerts (the rest in the next digest) and quiet hours (held alerts
in one round-up when they end), through the API with tasks run eagerly into a real SMTP
sink, the clock moved by the clock fixture."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_reader import token

from alerts import tokens
from alerts.mail.sink import MailSink
from alerts.models import (
    Article,
    Delivery,
    DeliveryStatus,
    DigestSchedule,
    Frequency,
    Subscriber,
    Subscription,
    Topic,
)
from worker import tasks

import factories
from support import CLOCK, csrf_from

AUTH = {"Authorization": "Bearer dev-api-token"}
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Paris


def publish(client: FlaskClient, title: str, urgent: bool = False) -> None:
    payload = factories.article_payload(
        topics=["wipo"], title=title, urgent=urgent, published_at=None
    )
    assert client.post("/api/v1/articles", json=payload, headers=AUTH).status_code == 201


def night_owl(session: Session, frozen_clock: Any) -> Subscriber:
    """A Paris reader with quiet hours from 22:00 to 07:00, at 23:00 their time."""
    frozen_clock(datetime(2026, 11, 30, 22, 0, tzinfo=UTC))
    reader = factories.subscriber(session, ["wipo"], timezone="Europe/Paris")
    reader.quiet_from, reader.quiet_until = 22 * 60, 7 * 60
    session.commit()
    return reader


def held(session: Session, reader: Subscriber) -> dict[str, str | None]:
    session.expire_all()
    return dict(
        session.execute(
            select(Article.title, Delivery.held)
            .join(Article, Article.id == Delivery.article_id)
            .where(Delivery.subscriber_id == reader.id, Delivery.status == DeliveryStatus.HELD)
        ).all()
    )


def test_past_the_cap_alerts_wait_for_the_digest(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(NOON)
    reader = factories.subscriber(session, ["wipo"], timezone="Europe/Paris")
    reader.daily_cap = 2
    session.commit()
    for number in (1, 2, 3, 4):
        publish(client, f"WIPO story {number}")
    publish(client, "WIPO emergency", urgent=True)

    subjects = [m.subject for m in sink.store.to(reader.email)]
    assert subjects == ["WIPO story 1", "WIPO story 2", "Urgent: WIPO emergency"]
    first, last_before_cap = sink.store.to(reader.email)[:2]
    note = "That is your last instant alert today (your limit is 2 a day)"
    assert note in last_before_cap.body("plain") and note not in first.body("plain")
    assert held(session, reader) == {"WIPO story 3": "cap", "WIPO story 4": "cap"}
    # The reader's data says where each is: sent as an alert, or waiting for their digest.
    export = client.get(f"/manage/{token(tokens.Purpose.MANAGE, reader)}/data.json").get_json()
    kinds = {row["article"]: (row["kind"], row["status"]) for row in export["deliveries"]}
    assert kinds["WIPO story 1"] == ("alert", "sent")
    assert kinds["WIPO story 3"] == kinds["WIPO story 4"] == ("digest", "held")
    # They had no digest: a daily one is made to carry the rest.
    schedules = session.scalars(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id)
    )
    assert [s.frequency for s in schedules] == [Frequency.DAILY]

    # The next morning (08:00 in Paris), the daily digest carries the two held stories.
    CLOCK.freeze(datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    with app.app_context():
        tasks.run_due_digests()
    digest = sink.store.to(reader.email)[-1]
    assert "2 new articles" in digest.subject
    assert "WIPO story 3" in digest.body("plain") and "WIPO story 4" in digest.body("plain")
    assert "WIPO story 1" not in digest.body("plain")
    assert held(session, reader) == {}
    rows = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id)).all()
    assert {row.status for row in rows} == {DeliveryStatus.SENT}
    # A new day: the cap starts again.
    publish(client, "WIPO story 5")
    assert sink.store.to(reader.email)[-1].subject == "WIPO story 5"


def test_quiet_hours_hold_alerts_for_one_round_up(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    reader = night_owl(session, frozen_clock)
    publish(client, "Night story 1")
    publish(client, "Night story 2")
    publish(client, "Night emergency", urgent=True)
    assert [m.subject for m in sink.store.to(reader.email)] == ["Urgent: Night emergency"]
    assert held(session, reader) == {"Night story 1": "quiet", "Night story 2": "quiet"}

    with app.app_context():
        tasks.send_roundups()  # still quiet: nothing goes
    assert len(sink.store.to(reader.email)) == 1

    CLOCK.freeze(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))  # 07:00 in Paris
    with app.app_context():
        tasks.send_roundups()
        tasks.send_roundups()  # a second pass finds nothing more to send
    roundups = sink.store.to(reader.email)[1:]
    assert [m.subject for m in roundups] == ["While your quiet hours were on: 2 articles"]
    text = roundups[0].body("plain")
    assert "Night story 1" in text and "Night story 2" in text
    assert 'You follow "WIPO".' in text
    assert roundups[0].parsed()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert held(session, reader) == {}
    # Sent, and not counted against a daily cap: the round-up is not an alert of the day.
    rows = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id)).all()
    assert sorted((row.status.value, row.held or "") for row in rows) == [
        ("sent", ""),
        ("sent", "quiet"),
        ("sent", "quiet"),
    ]


def test_a_reader_who_leaves_during_quiet_hours_gets_no_round_up(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    reader = night_owl(session, frozen_clock)
    publish(client, "Night story")
    client.post(
        f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    CLOCK.freeze(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    with app.app_context():
        tasks.send_roundups()
    assert sink.store.to(reader.email) == []
    session.expire_all()
    [row] = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id)).all()
    assert row.status is DeliveryStatus.SKIPPED


def test_the_preference_centre_sets_both(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo"])
    link = f"/manage/{token(tokens.Purpose.MANAGE, reader)}"
    page = client.get(link).get_data(as_text=True)
    assert 'id="daily_cap"' in page and 'id="quiet_from"' in page and 'id="feed-address"' in page
    form = {
        "csrf_token": csrf_from(page),
        "action": "save",
        "topics": ["wipo"],
        "frequency-wipo": "immediate",
        "languages": ["en"],
        "timezone": "Europe/Paris",
        "send_hour": "8",
        "send_weekday": "0",
        "locale": "en",
        "instant_fields": "1",
        "daily_cap": "3",
        "quiet_from": str(22 * 60),
        "quiet_until": str(7 * 60),
    }
    assert client.post(link, data=form).status_code == 303
    session.refresh(reader)
    assert (reader.daily_cap, reader.quiet_from, reader.quiet_until) == (3, 1320, 420)
    assert reader.urgent_in_quiet is False  # the box was not ticked
    for bad, field in (
        ({"daily_cap": "7"}, "Choose a daily limit from the list."),
        ({"quiet_until": "1320"}, "Quiet hours must end at another time than they start."),
        ({"quiet_from": "65"}, "Choose when quiet hours start and end from the lists."),
    ):
        response = client.post(link, data={**form, **bad, "urgent_in_quiet": "yes"})
        assert response.status_code == 400 and field in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.daily_cap == 3  # nothing changed
    # A page from before these settings existed posts none of them: they are kept.
    older = {
        k: v
        for k, v in form.items()
        if k not in ("instant_fields", "daily_cap", "quiet_from", "quiet_until")
    }
    assert client.post(link, data=older).status_code == 303
    session.refresh(reader)
    assert (reader.daily_cap, reader.quiet_from, reader.urgent_in_quiet) == (3, 1320, False)
    off = {**form, "daily_cap": "", "quiet_from": "", "quiet_until": "", "urgent_in_quiet": "yes"}
    assert client.post(link, data=off).status_code == 303
    session.refresh(reader)
    assert (reader.daily_cap, reader.quiet_from, reader.urgent_in_quiet) == (None, None, True)


def test_lifting_the_cap_keeps_the_digest_that_carries_what_was_held(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    from alerts import digests

    frozen_clock(NOON)
    reader = factories.subscriber(session, ["wipo"], timezone="Europe/Paris")
    reader.daily_cap = 1
    session.commit()
    publish(client, "WIPO story 1")
    publish(client, "WIPO story 2")
    assert held(session, reader) == {"WIPO story 2": "cap"}
    reader = session.get(Subscriber, reader.id)
    assert reader is not None
    reader.daily_cap = None
    digests.sync_schedules(session, reader)  # what saving the preference centre does
    session.commit()
    CLOCK.freeze(datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    with app.app_context():
        tasks.run_due_digests()
    assert "WIPO story 2" in sink.store.to(reader.email)[-1].body("plain")
    assert held(session, reader) == {}


def test_turning_quiet_hours_off_releases_what_they_held(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    reader = night_owl(session, frozen_clock)
    publish(client, "Night story")
    link = f"/manage/{token(tokens.Purpose.MANAGE, reader)}"
    page = client.get(link).get_data(as_text=True)
    form = {
        "csrf_token": csrf_from(page), "action": "save", "topics": ["wipo"],
        "frequency-wipo": "immediate", "languages": ["en"], "timezone": "Europe/Paris",
        "send_hour": "8", "send_weekday": "0", "locale": "en", "instant_fields": "1",
        "daily_cap": "", "quiet_from": "", "quiet_until": "", "urgent_in_quiet": "yes",
    }  # fmt: skip
    assert client.post(link, data=form).status_code == 303
    with app.app_context():
        tasks.send_roundups()  # no need to wait for 07:00 any more
    assert [m.subject for m in sink.store.to(reader.email)] == [
        "While your quiet hours were on: 1 article"
    ]


def test_a_held_alert_the_reader_no_longer_follows_is_closed_not_kept(
    app: Flask, client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    frozen_clock(NOON)
    reader = factories.subscriber(
        session, {"wipo": Frequency.IMMEDIATE, "patents": Frequency.DAILY}, timezone="Europe/Paris"
    )
    reader.daily_cap = 1
    session.commit()
    publish(client, "WIPO story 1")
    publish(client, "WIPO story 2")
    assert held(session, reader) == {"WIPO story 2": "cap"}
    session.execute(
        Subscription.__table__.delete().where(  # type: ignore[attr-defined]
            Subscription.subscriber_id == reader.id,
            Subscription.topic_id == select(Topic.id).where(Topic.slug == "wipo").scalar_subquery(),
        )
    )
    session.commit()
    CLOCK.freeze(datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    with app.app_context():
        tasks.run_due_digests()
    assert [m.subject for m in sink.store.to(reader.email)] == ["WIPO story 1"]  # no digest
    session.expire_all()
    statuses = session.scalars(
        select(Delivery.status).where(Delivery.subscriber_id == reader.id)
    ).all()
    assert sorted(status.value for status in statuses) == ["sent", "skipped"]


@pytest.mark.parametrize(
    ("evening", "quiet", "still_quiet", "over"),
    [
        # 28 March 2027 in Paris: 02:00 becomes 03:00. Quiet until 07:00 summer time ends
        # at 05:00 UTC, an hour earlier in UTC than the night before.
        ("2027-03-27T21:30", (22 * 60, 7 * 60), "2027-03-28T04:59", "2027-03-28T05:00"),
        # 31 October 2027: 03:00 becomes 02:00 again. Quiet until 02:30 ends the first time
        # the clock reads 02:30 (summer time, 00:30 UTC), not an hour later.
        ("2027-10-30T21:30", (22 * 60, 2 * 60 + 30), "2027-10-31T00:29", "2027-10-31T00:30"),
    ],
)
def test_quiet_hours_end_on_the_wall_clock_the_nights_it_changes(
    app: Flask,
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    frozen_clock: Any,
    evening: str,
    quiet: tuple[int, int],
    still_quiet: str,
    over: str,
) -> None:
    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    frozen_clock(utc(evening))  # 22:30 in Paris
    reader = factories.subscriber(session, ["wipo"], timezone="Europe/Paris")
    reader.quiet_from, reader.quiet_until = quiet
    session.commit()
    publish(client, "A story in the night")
    assert held(session, reader) == {"A story in the night": "quiet"}
    CLOCK.freeze(utc(still_quiet))
    with app.app_context():
        tasks.send_roundups()
    assert sink.store.to(reader.email) == []
    CLOCK.freeze(utc(over))
    with app.app_context():
        tasks.send_roundups()
        tasks.send_roundups()
    assert [m.subject for m in sink.store.to(reader.email)] == [
        "While your quiet hours were on: 1 article"
    ]
