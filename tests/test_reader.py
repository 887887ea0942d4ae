"""The links in every email: one-click unsubscribe (RFC 8058) and the manage page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from alerts import tokens
from alerts.mail.sink import MailSink
from alerts.models import Frequency, Subscriber, SubscriberStatus

import factories
from support import csrf_from


def token(purpose: tokens.Purpose, reader: Subscriber) -> str:
    return tokens.for_reader("test-secret", purpose, reader.id, reader.link_key)


def test_unsubscribe_page_shows_a_button(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session)
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}"
    page = client.get(link)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'<form method="post" action="{link}">' in html
    assert "Unsubscribe from everything</button>" in html
    assert "Switch to a weekly digest" in html and "Stop this topic" in html
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE  # a GET changes nothing


def test_one_click_post_unsubscribes_without_csrf_or_redirect(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session)
    response = client.post(
        f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED
    assert reader.unsubscribed_at is not None
    assert reader.unsubscribe_reason == "one-click (mail client)"
    again = client.post(f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}")
    assert again.status_code == 200
    session.refresh(reader)
    assert reader.unsubscribe_reason == "one-click (mail client)"  # the first "how" is kept


def test_unsubscribe_link_works_after_60_days(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}"
    frozen_clock.advance(timedelta(days=61))
    assert client.post(link).status_code == 200
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED


def test_forged_or_wrong_purpose_unsubscribe_tokens_change_nothing(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session)
    confirm_token = tokens.make("test-secret", tokens.Purpose.CONFIRM, {"s": reader.id, "n": "x"})
    for bad in (
        "forged",
        confirm_token,
        tokens.for_reader("other-secret", tokens.Purpose.UNSUBSCRIBE, reader.id, reader.link_key),
    ):
        response = client.post(f"/unsubscribe/{bad}")
        assert response.status_code == 404
        assert "This link is not valid" in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE


def test_manage_page_lists_topics(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo", "health-ip"])
    page = client.get(f"/manage/{token(tokens.Purpose.MANAGE, reader)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert (
        "WIPO" in html
        and "Health &amp; IP" in html
        and "As soon as an article is published" in html
    )
    assert "/unsubscribe/" in html
    assert client.get(f"/manage/{token(tokens.Purpose.UNSUBSCRIBE, reader)}").status_code == 404


def manage(client: FlaskClient, reader: Subscriber, **fields: Any) -> Any:
    link = f"/manage/{token(tokens.Purpose.MANAGE, reader)}"
    page = client.get(link).get_data(as_text=True)
    data = {
        "csrf_token": csrf_from(page),
        "action": "save",
        "topics": ["wipo", "copyright"],
        "frequency-wipo": "immediate",
        "frequency-copyright": "monthly",
        "languages": ["en", "es"],
        "timezone": "Asia/Tokyo",
        "send_hour": "7",
        "send_weekday": "4",
    }
    data.update(fields)
    return client.post(link, data=data, follow_redirects=True)


def test_preference_centre_changes_everything_at_once(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session, {"patents": Frequency.DAILY})
    response = manage(client, reader)
    # Post, redirect, get: the page after saving is a GET, so a refresh sends nothing again.
    assert response.status_code == 200 and response.request.method == "GET"
    assert [r.status_code for r in response.history] == [303]
    assert "Saved. The changes apply from the next email." in response.get_data(as_text=True)
    session.expire_all()
    assert {s.topic.slug: s.frequency for s in reader.subscriptions} == {
        "wipo": Frequency.IMMEDIATE,
        "copyright": Frequency.MONTHLY,
    }
    assert reader.language_codes == ["en", "es"]
    assert (reader.timezone, reader.send_hour, reader.send_weekday) == ("Asia/Tokyo", 7, 4)
    from alerts.models import DigestSchedule

    schedules = {
        s.frequency: s.next_at
        for s in session.query(DigestSchedule).filter_by(subscriber_id=reader.id)
    }
    # The daily schedule is gone; the monthly one is due on the 1st at 07:00 in Tokyo.
    assert set(schedules) == {Frequency.MONTHLY}
    assert schedules[Frequency.MONTHLY].isoformat() == "2026-11-30T22:00:00+00:00"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"topics": []}, "topics"),
        ({"topics": ["wipo", "nope"], "frequency-nope": "daily"}, "topics"),
        ({"frequency-wipo": "hourly"}, "topics"),
        ({"languages": ["xx"]}, "languages"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"send_hour": "24"}, "send_hour"),
        ({"send_weekday": "-1"}, "send_weekday"),
    ],
)
def test_preference_centre_refuses_bad_input_and_changes_nothing(
    client: FlaskClient, session: Session, fields: dict[str, Any], field: str
) -> None:
    reader = factories.subscriber(session, {"patents": Frequency.DAILY})
    response = manage(client, reader, **fields)
    assert response.status_code == 400
    assert "There is a problem" in response.get_data(as_text=True)
    assert f'href="#{field}-field"' in response.get_data(as_text=True)
    session.expire_all()
    assert [s.topic.slug for s in reader.subscriptions] == ["patents"]
    assert reader.timezone == "UTC"


def test_preference_centre_needs_its_csrf_token(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["patents"])
    response = client.post(
        f"/manage/{token(tokens.Purpose.MANAGE, reader)}",
        data={"topics": ["wipo"], "frequency-wipo": "daily", "languages": ["en"]},
    )
    assert response.status_code == 400
    session.expire_all()
    assert [s.topic.slug for s in reader.subscriptions] == ["patents"]


def test_pause_stops_alerts_for_weeks_then_resume(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    from alerts import matching

    reader = factories.subscriber(session, ["wipo"])
    html = manage(client, reader, action="pause", weeks="2").get_data(as_text=True)
    assert "Paused: no email until 16 November 2026" in html
    article = factories.article(session, topics=["wipo"])
    assert matching.matching_subscribers(session, article) == []
    frozen_clock.advance(timedelta(weeks=2, minutes=1))
    assert matching.matching_subscribers(session, article) == [reader.id]
    assert "Choose 1, 2 or 4 weeks" in manage(client, reader, action="pause", weeks="3").get_data(
        as_text=True
    )


def test_unsubscribe_from_one_topic_only_or_switch_to_weekly(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session, ["wipo", "copyright"])
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}"
    page = client.get(link).get_data(as_text=True)
    response = client.post(f"{link}/topic", data={"csrf_token": csrf_from(page), "topic": "wipo"})
    assert "you no longer follow that topic" in response.get_data(as_text=True)
    session.expire_all()
    assert [s.topic.slug for s in reader.subscriptions] == ["copyright"]
    assert reader.status is SubscriberStatus.ACTIVE
    response = client.post(f"{link}/weekly", data={"csrf_token": csrf_from(page)})
    assert "one weekly digest instead" in response.get_data(as_text=True)
    session.expire_all()
    assert [s.frequency for s in reader.subscriptions] == [Frequency.WEEKLY]
    assert [c.action for c in reader.consents][-2:] == [
        "unsubscribe topic wipo",
        "switch to weekly digest",
    ]
    # Stopping the last topic stops everything, and records how.
    client.post(f"{link}/topic", data={"csrf_token": csrf_from(page), "topic": "copyright"})
    session.expire_all()
    assert reader.status is SubscriberStatus.UNSUBSCRIBED
    assert reader.unsubscribe_reason == "unsubscribe page: last topic copyright"


def test_download_your_data(client: FlaskClient, session: Session) -> None:
    from alerts.subscriptions import Consent, subscribe, validate

    email, choices = validate(session, "me@example.org", ["wipo"], ["en"], "daily")
    subscribe(
        session,
        email,
        choices,
        Consent("signup-2026-11", ip_address="198.51.100.7"),
        resend_interval=timedelta(hours=1),
    )
    session.commit()
    reader = session.query(Subscriber).one()
    response = client.get(f"/manage/{token(tokens.Purpose.MANAGE, reader)}/data.json")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    data = response.get_json()
    assert data["email"] == "me@example.org"
    assert data["subscriptions"][0]["topic"] == "wipo"
    assert data["consent_records"][0]["ip_address"] == "198.51.100.7"
    assert data["consent_records"][0]["form_version"] == "signup-2026-11"
    assert data["deliveries"] == []


def test_erase_keeps_only_anonymous_counts(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    from sqlalchemy import func, select

    from alerts.models import ConsentRecord, Delivery, DeliveryCount

    reader = factories.subscriber(session, ["wipo"])
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(topics=["wipo"]),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    assert session.scalar(select(func.count()).select_from(Delivery)) == 1
    link = f"/manage/{token(tokens.Purpose.MANAGE, reader)}"
    page = client.get(link).get_data(as_text=True)
    refused = client.post(f"{link}/erase", data={"csrf_token": csrf_from(page)})
    assert refused.status_code == 400 and session.get(Subscriber, reader.id) is not None
    done = client.post(f"{link}/erase", data={"csrf_token": csrf_from(page), "confirm": "yes"})
    assert done.status_code == 200 and "Your data is erased" in done.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert session.scalar(select(func.count()).select_from(ConsentRecord)) == 0
    [count] = session.scalars(select(DeliveryCount)).all()
    assert (count.status.value, count.count) == ("sent", 1)
    assert client.get(link).status_code == 404


def test_an_erased_readers_links_never_open_the_next_one(
    client: FlaskClient, session: Session
) -> None:
    from alerts import subscriptions

    alice = factories.subscriber(session, email="alice@example.org")
    old_link = f"/manage/{token(tokens.Purpose.MANAGE, alice)}"
    subscriptions.erase(session, alice.id)
    session.commit()
    bob = factories.subscriber(session, email="bob@example.org")
    if session.get_bind().dialect.name == "sqlite":
        assert bob.id == alice.id  # SQLite hands the id out again
    response = client.get(old_link)
    assert response.status_code == 404
    assert "bob@example.org" not in response.get_data(as_text=True)


def test_links_made_before_links_had_keys_still_unsubscribe_their_reader(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    from alerts import subscriptions

    erased = factories.subscriber(session, email="gone@example.org")
    stale_link = tokens.make("test-secret", tokens.Purpose.UNSUBSCRIBE, {"s": erased.id})
    subscriptions.erase(session, erased.id)
    session.commit()
    frozen_clock.advance(timedelta(days=1))
    reader = factories.subscriber(session, email="kept@example.org")
    # An old-style link (no key) of the erased reader opens nobody else...
    assert client.post(f"/unsubscribe/{stale_link}").status_code == 404
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE
    # ...while an old-style link made for the reader still unsubscribes them (RFC 8058).
    old_style = tokens.make("test-secret", tokens.Purpose.UNSUBSCRIBE, {"s": reader.id})
    assert client.post(f"/unsubscribe/{old_style}").status_code == 200
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED


def test_an_old_emails_one_click_does_not_end_a_subscription_started_again(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    old_link = token(tokens.Purpose.UNSUBSCRIBE, reader)  # in an email of the first subscription
    frozen_clock.advance(timedelta(days=3))
    one_click = {"data": "List-Unsubscribe=One-Click",
                 "content_type": "application/x-www-form-urlencoded"}  # fmt: skip
    assert client.post(f"/unsubscribe/{old_link}", **one_click).status_code == 200
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED
    # They sign up again and confirm, days later; the old email's mail client POSTs again.
    frozen_clock.advance(timedelta(days=2))
    reader.status = SubscriberStatus.ACTIVE
    reader.confirmed_at = frozen_clock.now()
    session.commit()
    frozen_clock.advance(timedelta(hours=1))
    late = client.post(f"/unsubscribe/{old_link}", **one_click)
    assert late.status_code == 200
    assert "changed nothing" in late.get_data(as_text=True)
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE
    # A link of the new subscription works as ever.
    assert (
        client.post(f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}").status_code == 200
    )
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED


def test_unsubscribed_by_mistake_undo_within_30_days_with_the_same_choices(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    from alerts import matching, subscriptions

    reader = factories.subscriber(session, {"wipo": Frequency.IMMEDIATE})
    subscriptions.add_keywords(session, reader, ["TRIPS waiver"], Frequency.IMMEDIATE)
    session.commit()
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}"
    page = client.post(link).get_data(as_text=True)  # one click: no CSRF token
    assert "Undo: keep my alerts" in page
    session.expire_all()
    assert reader.status is SubscriberStatus.UNSUBSCRIBED
    undo = client.post(f"{link}/undo", data={"csrf_token": csrf_from(page)})
    assert undo.status_code == 200 and "Your alerts are on again." in undo.get_data(as_text=True)
    session.expire_all()
    assert reader.status is SubscriberStatus.ACTIVE and reader.unsubscribed_at is None
    article = factories.article(session, topics=["wipo"])
    assert matching.matching_subscribers(session, article) == [reader.id]
    assert [k.phrase for k in reader.keywords] == ["TRIPS waiver"]
    # Past 30 days there is nothing to undo: signing up again confirms the address first.
    page = client.post(link).get_data(as_text=True)
    frozen_clock.advance(timedelta(days=31))
    late = client.post(f"{link}/undo", data={"csrf_token": csrf_from(page)})
    assert late.status_code == 400 and "no longer be undone" in late.get_data(as_text=True)
    session.expire_all()
    assert reader.status is SubscriberStatus.UNSUBSCRIBED


def test_stop_one_keyword_only_from_the_unsubscribe_page(
    client: FlaskClient, session: Session
) -> None:
    from alerts import subscriptions

    reader = factories.subscriber(session, {"wipo": Frequency.DAILY})
    subscriptions.add_keywords(session, reader, ["ICANN", "TRIPS waiver"], Frequency.IMMEDIATE)
    session.commit()
    session.expire_all()
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader)}"
    page = client.get(link).get_data(as_text=True)
    assert "Stop this keyword" in page and "TRIPS waiver" in page
    icann = next(k for k in reader.keywords if k.phrase == "ICANN")
    done = client.post(
        f"{link}/keyword", data={"csrf_token": csrf_from(page), "keyword": str(icann.id)}
    )
    assert "you no longer follow that keyword" in done.get_data(as_text=True)
    session.expire_all()
    assert [k.phrase for k in reader.keywords] == ["TRIPS waiver"]
    other = client.post(f"{link}/keyword", data={"csrf_token": csrf_from(page), "keyword": "999"})
    assert other.status_code == 400
