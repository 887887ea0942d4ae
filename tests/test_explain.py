"""The admin's "would this reader get this article": how, when and why, or why not."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from test_admin import login

from alerts.models import Delivery, DeliveryStatus, Frequency, SubscriberStatus

import factories

NIGHT = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 23:30 in Paris


def ask(client: FlaskClient, email: str, article: object) -> tuple[int, str]:
    response = client.get(
        "/admin/preview/alert", query_string={"email": email, "article": str(article)}
    )
    return response.status_code, html.unescape(response.get_data(as_text=True))


@pytest.fixture
def article(session: Session, frozen_clock: Any) -> Any:
    frozen_clock(NIGHT)
    return factories.article(session, published_at=NIGHT, title="WIPO story", topics=["WIPO"])


@pytest.mark.parametrize(
    ("options", "answer", "why"),
    [
        ({}, "Yes: instant alert", 'they follow "WIPO"'),
        ({"frequency": Frequency.WEEKLY}, "Yes: weekly digest", 'they follow "WIPO"'),
        ({"topics": ["patents"]}, "No", "none of the topics they follow"),
        ({"languages": ("fr",)}, "No", "the article is in en; they read fr"),
        ({"status": SubscriberStatus.BOUNCED}, "No", "their address bounced"),
        ({"status": SubscriberStatus.UNSUBSCRIBED}, "No", "they unsubscribed"),
        ({"quiet": True}, "Yes: quiet-hours round-up", "during their quiet hours"),
        ({"cap": True}, "Yes: next digest", "their daily limit is 1"),
        ({"paused": True}, "No", "they paused every email until"),
    ],
)
def test_the_answer_says_how_and_why(
    client: FlaskClient,
    session: Session,
    article: Any,
    options: dict[str, Any],
    answer: str,
    why: str,
) -> None:
    quiet, cap, paused = (options.pop(key, False) for key in ("quiet", "cap", "paused"))
    reader = factories.subscriber(
        session, options.pop("topics", ["wipo"]), timezone="Europe/Paris", **options
    )
    if quiet:
        reader.quiet_from, reader.quiet_until = 22 * 60, 7 * 60
    if cap:
        reader.daily_cap = 1
        other = factories.article(session, published_at=NIGHT, title="Earlier", topics=["WIPO"])
        session.add(
            Delivery(
                subscriber_id=reader.id,
                article_id=other.id,
                status=DeliveryStatus.SENT,
                sent_at=NIGHT - timedelta(hours=1),
            )
        )
    if paused:
        reader.paused_until = NIGHT + timedelta(days=7)
    session.commit()
    login(client)
    status, page = ask(client, reader.email, article.id)
    assert status == 200
    assert f"<h2>{answer}</h2>" in page, page[page.find("<h2>") :][:300]
    assert why in page


def test_what_was_sent_is_read_from_the_ledger(
    client: FlaskClient, session: Session, article: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    session.add(
        Delivery(
            subscriber_id=reader.id,
            article_id=article.id,
            status=DeliveryStatus.SENT,
            sent_at=NIGHT,
        )
    )
    session.commit()
    login(client)
    _, page = ask(client, reader.email, article.guid)
    assert "<h2>Yes: instant alert</h2>" in page and "already sent" in page
    assert "2026-11-30 22:30 UTC" in page


def test_unknown_reader_or_article_is_a_clear_404(
    client: FlaskClient, session: Session, article: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    login(client)
    status, page = ask(client, "nobody@example.org", article.id)
    assert status == 404 and "No subscriber has that address." in page
    status, page = ask(client, reader.email, "99999999999999999999")
    assert status == 404 and "No article has that id, guid or URL." in page
    assert client.get("/admin/preview/alert").status_code == 200
