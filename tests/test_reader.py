"""The links in every email: one-click unsubscribe (RFC 8058) and the manage page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from alerts import tokens
from alerts.clock import now
from alerts.models import SubscriberStatus

import factories


def token(purpose: tokens.Purpose, subscriber_id: int) -> str:
    return tokens.make("test-secret", purpose, {"s": subscriber_id})


def test_unsubscribe_page_shows_a_button(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session)
    page = client.get(f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader.id)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<form method="post">' in html and "Unsubscribe</button>" in html
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE  # a GET changes nothing


def test_one_click_post_unsubscribes_without_csrf_or_redirect(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session)
    response = client.post(
        f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader.id)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED
    assert reader.unsubscribed_at is not None and reader.unsubscribe_reason == "unsubscribe link"
    again = client.post(f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader.id)}")
    assert again.status_code == 200


def test_unsubscribe_link_works_after_60_days(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    link = f"/unsubscribe/{token(tokens.Purpose.UNSUBSCRIBE, reader.id)}"
    frozen_clock(now() + timedelta(days=61))
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
        tokens.make("other-secret", tokens.Purpose.UNSUBSCRIBE, {"s": reader.id}),
    ):
        response = client.post(f"/unsubscribe/{bad}")
        assert response.status_code == 404
        assert "This link is not valid" in response.get_data(as_text=True)
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE


def test_manage_page_lists_topics(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo", "health-ip"])
    page = client.get(f"/manage/{token(tokens.Purpose.MANAGE, reader.id)}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert (
        "WIPO" in html
        and "Health &amp; IP" in html
        and "As soon as an article is published" in html
    )
    assert "/unsubscribe/" in html
    assert client.get(f"/manage/{token(tokens.Purpose.UNSUBSCRIBE, reader.id)}").status_code == 404
