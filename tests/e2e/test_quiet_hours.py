"""Quiet hours and the daily cap on real parts: a Celery worker and beat on an embedded
Redis, a real SMTP sink, articles published over HTTP. The quiet hours end a minute from now
in the reader's own zone, so beat's round-up pass finds them over while the test waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts import db
from alerts.clock import now, zone
from alerts.models import Delivery, DeliveryStatus, Subscriber

import factories
from processes import Browser, Stack


@pytest.mark.timeout(300)
@pytest.mark.settings(ALERTS_RECONCILE_INTERVAL="2")
def test_alerts_held_in_quiet_hours_arrive_in_one_email_when_they_end(
    stack: Stack, browser: Browser
) -> None:
    local = now().astimezone(zone("Asia/Kolkata"))  # a zone half an hour off UTC
    minute = local.hour * 60 + local.minute
    with stack.app.app_context():
        session = db.session()
        reader = factories.subscriber(
            session, ["wipo"], email="night-owl@example.org", timezone="Asia/Kolkata"
        )
        # Quiet since an hour ago, until the start of the minute after next.
        reader.quiet_from, reader.quiet_until = (minute - 60) % 1440, (minute + 2) % 1440
        session.commit()
        ends = now().replace(second=0, microsecond=0) + timedelta(minutes=2)
    stack.start_beat()
    for number in (1, 2):
        status, body = browser.publish(
            factories.article_payload(topics=["WIPO"], title=f"Night story {number}")
        )
        assert status == 201, body
    status, body = browser.publish(
        factories.article_payload(topics=["WIPO"], title="Night emergency", urgent=True)
    )
    assert status == 201, body
    [urgent] = stack.wait_for_mail(lambda m: "night-owl@example.org" in m.recipients)
    assert urgent.subject == "Urgent: Night emergency"

    [roundup] = stack.wait_for_mail(
        lambda m: "night-owl@example.org" in m.recipients and "quiet hours" in m.subject,
        timeout=200,
    )
    assert now() >= ends  # not before the quiet hours were over
    assert roundup.subject == "While your quiet hours were on: 2 articles"
    text = roundup.body("plain")
    assert "Night story 1" in text and "Night story 2" in text
    stack.settle()
    assert len(stack.to("night-owl@example.org")) == 2  # the urgent alert and one round-up
    with stack.app.app_context():
        session = db.session()
        statuses = session.scalars(
            select(Delivery.status)
            .join(Subscriber)
            .where(Subscriber.email == "night-owl@example.org")
        ).all()
    assert sorted(statuses) == [DeliveryStatus.SENT] * 3


@pytest.mark.timeout(300)
def test_alerts_past_the_daily_cap_come_in_the_next_digest(stack: Stack, browser: Browser) -> None:
    capped = "capped@example.org"
    with stack.app.app_context():
        session = db.session()
        reader = factories.subscriber(
            session, ["wipo"], email=capped, confirmed_at=now() - timedelta(days=1)
        )
        reader.daily_cap = 2
        session.commit()
    for title in ("Cap story 1", "Cap story 2", "Cap story 3", "Cap story 4"):
        status, body = browser.publish(factories.article_payload(topics=["WIPO"], title=title))
        assert status == 201, body
    status, body = browser.publish(
        factories.article_payload(topics=["WIPO"], title="Cap emergency", urgent=True)
    )
    assert status == 201, body
    stack.wait_for_mail(lambda m: capped in m.recipients and "emergency" in m.subject)
    stack.settle()
    alerts = stack.to(capped)
    # Alerts run in parallel per article: which two get through first is the worker's order;
    # the urgent one always does, and the last before the cap says the rest will follow.
    assert len(alerts) == 3 and "Urgent: Cap emergency" in [m.subject for m in alerts]
    regular = [m for m in alerts if not m.subject.startswith("Urgent")]
    assert len(regular) == 2
    notes = [m for m in regular if "That is your last instant alert today" in m.body("plain")]
    assert len(notes) == 1
    with stack.app.app_context():
        session = db.session()
        held = session.scalars(
            select(Delivery.held)
            .join(Subscriber)
            .where(Subscriber.email == capped, Delivery.status == DeliveryStatus.HELD)
        ).all()
    assert held == ["cap", "cap"]

    status, body = browser.request(
        "/api/v1/digests",
        json_body={"frequency": "daily"},
        headers={"Authorization": "Bearer dev-api-token"},
    )
    assert status == 202, body
    [digest] = stack.wait_for_mail(lambda m: capped in m.recipients and "daily" in m.subject)
    sent_as_alerts = {m.subject for m in regular}
    missing = {f"Cap story {n}" for n in (1, 2, 3, 4)} - sent_as_alerts
    assert "2 new articles" in digest.subject
    assert all(title in digest.body("plain") for title in missing)
    assert not any(title in digest.body("plain") for title in sent_as_alerts)
    stack.settle()
    assert len(stack.to(capped)) == 4  # each article once: 3 alerts and one digest
