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
