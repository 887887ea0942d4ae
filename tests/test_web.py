"""The public pages over Flask's test client, with tasks run eagerly into a real SMTP sink."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.mail.sink import MailSink
from alerts.models import ConsentRecord, Subscriber, SubscriberStatus, Subscription

from support import confirm_link_in, csrf_from


def signup(client: FlaskClient, **fields: Any) -> Any:
    page = client.get("/")
    data = {
        "csrf_token": csrf_from(page.get_data(as_text=True)),
        "email": "reader@example.org",
        "topics": ["wipo", "copyright"],
        "languages": ["en"],
        "frequency": "daily",
    }
    data.update(fields)
    return client.post("/subscribe", data=data)


def count(session: Session, model: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_signup_page_groups_topics_and_works_without_javascript(client: FlaskClient) -> None:
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    # One script only, which fills the hidden time zone from the browser; every signup test
    # here posts without it, as a browser without JavaScript would.
    assert html.count("<script") == 1 and "resolvedOptions().timeZone" in html
    assert "<script src" not in html
    for legend in (
        "<legend>Sections</legend>",
        "<legend>Venues</legend>",
        "<legend>Themes</legend>",
    ):
        assert legend in html
    assert 'value="venues"' in html and "All of Venues" in html
    assert '<label for="topic-wipo">WIPO</label>' in html
    assert 'name="languages" value="fr"' in html
    assert 'name="frequency" value="monthly"' in html
    assert 'name="csrf_token"' in html


def test_signup_sends_confirmation_and_stores_pending(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    response = signup(client, email="Reader@EXAMPLE.org")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/subscribe/check-your-email")
    assert "Check your email" in client.get(response.headers["Location"]).get_data(as_text=True)

    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.email == "Reader@example.org"  # email-validator's normalized form
    assert subscriber.status is SubscriberStatus.PENDING
    assert {s.topic.slug for s in subscriber.subscriptions} == {"wipo", "copyright"}
    assert {s.frequency.value for s in subscriber.subscriptions} == {"daily"}
    consent = session.scalars(select(ConsentRecord)).one()
    assert consent.form_version == "signup-2026-11" and consent.ip_address == "127.0.0.1"

    [message] = sink.store.all()
    assert message.recipients == ["Reader@example.org"]
    assert message.subject == "Confirm your IP Policy Watch news alerts"
    assert confirm_link_in(message.body("plain")).startswith("http://alerts.test/confirm/")
    assert "/confirm/" in message.body("html")


def test_confirmation_link_activates_and_lists_choices(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    signup(client, topics=["venues", "health-ip"], languages=["en", "fr"], frequency="weekly")
    link = confirm_link_in(sink.store.all()[0].body("plain"))
    page = client.get(link.removeprefix("http://alerts.test"))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "You are signed up" in html
    assert "Venues" in html and "Health &amp; IP" in html and "Once a week" in html
    assert "Français" in html
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None

    again = client.get(link.removeprefix("http://alerts.test"))
    assert again.status_code == 200
    assert "already confirmed" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "Enter a valid email address"),
        ({"email": ""}, "email", "Enter your email address"),
        ({"email": "reader@example.org\r\nBcc: x@evil.test"}, "email", "valid email"),
        ({"topics": []}, "topics", "Choose at least one topic"),
        ({"topics": ["wipo", "no-such-topic"]}, "topics", "Unknown topic: no-such-topic"),
        ({"languages": ["xx"]}, "languages", "Choose languages from the list"),
        ({"languages": []}, "languages", "Choose at least one language"),
        ({"frequency": "hourly"}, "frequency", "Choose how often"),
    ],
)
def test_bad_input_shows_the_form_again_and_stores_nothing(
    client: FlaskClient,
    session: Session,
    sink: MailSink,
    fields: dict[str, Any],
    field: str,
    message: str,
) -> None:
    response = signup(client, **fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="{field}-error"' in html
    assert message in html
    assert "There is a problem" in html
    assert count(session, Subscriber) == 0
    assert count(session, Subscription) == 0
    assert count(session, ConsentRecord) == 0
    assert sink.store.all() == []


def test_form_keeps_what_the_reader_chose_after_an_error(client: FlaskClient) -> None:
    html = signup(client, email="nope", topics=["wipo"], frequency="monthly").get_data(as_text=True)
    assert 'value="wipo" id="topic-wipo" checked' in html
    assert 'value="monthly" id="frequency-monthly" checked' in html
    assert 'value="nope"' in html


def test_hostile_email_is_escaped_in_the_form(client: FlaskClient) -> None:
    html = signup(client, email='"><script>alert(1)</script>').get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html


def test_post_without_csrf_token_is_refused(client: FlaskClient, session: Session) -> None:
    response = client.post(
        "/subscribe",
        data={"email": "a@example.org", "topics": "wipo", "languages": "en", "frequency": "daily"},
    )
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert count(session, Subscriber) == 0


def test_answer_does_not_reveal_a_known_address(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    first = signup(client)
    link = confirm_link_in(sink.store.all()[0].body("plain"))
    client.get(link.removeprefix("http://alerts.test"))
    known = signup(client)
    fresh = signup(client, email="someone-else@example.org")
    assert first.status_code == known.status_code == fresh.status_code == 303
    assert first.headers["Location"] == known.headers["Location"] == fresh.headers["Location"]


def test_pending_address_gets_at_most_one_confirmation_an_hour(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:

    signup(client)
    signup(client, topics=["patents"])
    assert len(sink.store.all()) == 1
    subscriber = session.scalars(select(Subscriber)).one()
    # Signing up again while pending updates what the one link confirms.
    assert [s.topic.slug for s in subscriber.subscriptions] == ["patents"]

    frozen_clock.advance(timedelta(minutes=61))
    signup(client)
    messages = sink.store.all()
    assert len(messages) == 2
    # Both emails carry a working link to the same pending signup.
    first = client.get(
        confirm_link_in(messages[0].body("plain")).removeprefix("http://alerts.test")
    )
    assert "You are signed up" in first.get_data(as_text=True)
    second = client.get(
        confirm_link_in(messages[1].body("plain")).removeprefix("http://alerts.test")
    )
    assert "already confirmed" in second.get_data(as_text=True)


def test_active_reader_changes_choices_only_through_the_emailed_link(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:

    signup(client, topics=["wipo"], frequency="immediate")
    client.get(
        confirm_link_in(sink.store.all()[0].body("plain")).removeprefix("http://alerts.test")
    )

    frozen_clock.advance(timedelta(hours=2))
    signup(client, topics=["copyright"], frequency="weekly")
    subscriber = session.scalars(select(Subscriber)).one()
    assert [s.topic.slug for s in subscriber.subscriptions] == ["wipo"]  # unchanged by the form

    change_email = sink.store.all()[-1]
    assert change_email.subject == "Confirm the changes to your IP Policy Watch news alerts"
    page = client.get(
        confirm_link_in(change_email.body("plain")).removeprefix("http://alerts.test")
    )
    assert "Your alerts are updated" in page.get_data(as_text=True)
    session.expire_all()
    frequencies = {s.topic.slug: s.frequency.value for s in subscriber.subscriptions}
    assert frequencies == {"wipo": "immediate", "copyright": "weekly"}

    reused = client.get(
        confirm_link_in(change_email.body("plain")).removeprefix("http://alerts.test")
    )
    assert reused.status_code == 409
    assert "already been used" in reused.get_data(as_text=True)


def test_confirmation_email_holds_no_text_the_reader_typed(
    client: FlaskClient, sink: MailSink
) -> None:
    signup(client, email="winner.claim.your.prize@example.org")
    message = sink.store.all()[0]
    for part in (message.body("plain"), message.body("html"), message.subject):
        assert "winner" not in part and "prize" not in part


@pytest.mark.parametrize(
    ("token", "status", "title"),
    [
        ("garbage", 404, "This link is not valid"),
        ("eyJzIjoxLCJuIjoiMDAifQ.AAAAAA.forgedsignature", 404, "This link is not valid"),
    ],
)
def test_bad_confirmation_links_get_a_clear_page(
    client: FlaskClient, token: str, status: int, title: str
) -> None:
    response = client.get(f"/confirm/{token}")
    assert response.status_code == status
    assert title in response.get_data(as_text=True)


def test_expired_confirmation_link_gets_a_clear_page(
    client: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:

    signup(client)
    link = confirm_link_in(sink.store.all()[0].body("plain"))
    frozen_clock.advance(timedelta(days=8))
    response = client.get(link.removeprefix("http://alerts.test"))
    assert response.status_code == 410
    assert "This link has expired" in response.get_data(as_text=True)
    assert session.scalars(select(Subscriber)).one().status is SubscriberStatus.PENDING


def test_link_signed_for_another_purpose_is_refused(client: FlaskClient) -> None:
    from alerts import tokens

    token = tokens.make("test-secret", tokens.Purpose.UNSUBSCRIBE, {"s": 1, "n": "00"})
    assert client.get(f"/confirm/{token}").status_code == 404


def test_topics_api_returns_the_tree(client: FlaskClient) -> None:
    body = client.get("/api/v1/topics").get_json()
    roots = [topic["slug"] for topic in body["topics"]]
    assert roots[:5] == ["copyright", "patents", "trademarks", "opinions", "people-news"]
    venues = next(topic for topic in body["topics"] if topic["slug"] == "venues")
    assert venues["kind"] == "venue"
    assert {"wipo", "wto-trips", "africa", "north-america"} <= {
        child["slug"] for child in venues["children"]
    }
    assert [language["code"] for language in body["languages"]] == ["en", "fr", "es", "zh", "ar"]


def test_unknown_page_is_a_page_not_a_stack_trace(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_dev_mail_lists_and_shows_messages(client: FlaskClient, sink: MailSink) -> None:
    signup(client)
    inbox = client.get("/dev/mail/").get_data(as_text=True)
    [message] = sink.store.all()
    assert "Confirm your IP Policy Watch news alerts" in inbox
    page = client.get(f"/dev/mail/{message.id}").get_data(as_text=True)
    assert "srcdoc=" in page and "Message-ID" in page and "/confirm/" in page
    raw = client.get(f"/dev/mail/{message.id}.eml")
    assert raw.status_code == 200 and b"Subject:" in raw.data
    assert client.get("/dev/mail/..%2Fetc").status_code == 404


def test_the_browsers_time_zone_is_the_new_readers_and_the_list_is_of_places(
    client: FlaskClient, session: Session
) -> None:
    from alerts.models import Subscriber

    signup(client, email="tz@example.org", timezone="Europe/Paris")
    signup(client, email="bogus@example.org", timezone="Mars/Olympus_Mons")
    zones = dict(session.execute(select(Subscriber.email, Subscriber.timezone)).all())
    assert zones == {"tz@example.org": "Europe/Paris", "bogus@example.org": "UTC"}

    from alerts.clock import offered_timezones

    offered = offered_timezones()
    assert "Europe/Paris" in offered and "America/Argentina/Buenos_Aires" in offered
    for alias in ("Factory", "localtime", "W-SU", "US/Eastern", "Etc/GMT+5", "posixrules"):
        assert alias not in offered
