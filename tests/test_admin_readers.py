"""The admin finds a reader (address, status, frequency; keyset pages), sees them whole and
acts with a confirmation step; and sees articles with their fan-out and deliveries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_admin import login

from alerts import readers
from alerts.mail.sink import MailSink
from alerts.models import Frequency, Subscriber, SubscriberStatus

import factories
from support import csrf_from


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    login(client)
    return client


def test_search_by_address_status_and_frequency_with_keyset_pages(
    admin: FlaskClient, session: Session
) -> None:
    for number in range(60):
        factories.subscriber(
            session,
            ["wipo"],
            email=f"reader{number:02d}@{'geneva' if number % 2 else 'example'}.org",
            frequency=Frequency.WEEKLY if number % 3 == 0 else Frequency.DAILY,
        )
    factories.subscriber(session, ["wipo"], email="100%_sure@example.org")
    factories.subscriber(
        session, ["wipo"], email="waiting@example.org", status=SubscriberStatus.PENDING
    )

    first = admin.get("/admin/readers").get_data(as_text=True)
    shown = re.findall(r">([^<>@]+@[^<>]+)</a>", first)
    assert len(shown) == readers.PAGE and shown[0] == "waiting@example.org"  # newest first
    older = re.search(r'href="(/admin/readers\?before=\d+[^"]*)"', first)
    assert older
    second = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    rest = re.findall(r">([^<>@]+@[^<>]+)</a>", second)
    assert len(rest) == 62 - readers.PAGE and not set(rest) & set(shown)

    geneva = admin.get("/admin/readers?q=GENEVA").get_data(as_text=True)
    assert geneva.count("@geneva.org</a>") == 30 and "@example.org</a>" not in geneva
    # % and _ in the search are characters, not wildcards.
    assert "100%_sure@example.org</a>" in admin.get("/admin/readers?q=0%25_").get_data(as_text=True)
    assert admin.get("/admin/readers?q=%25").get_data(as_text=True).count("</a></td>") == 1
    pending = admin.get("/admin/readers?status=pending").get_data(as_text=True)
    assert "waiting@example.org" in pending and "reader01" not in pending
    weekly = admin.get("/admin/readers?frequency=weekly&q=reader").get_data(as_text=True)
    assert weekly.count("</a></td>") == 20
    bad = admin.get("/admin/readers?status=gone")
    assert bad.status_code == 400 and "There is no status" in bad.get_data(as_text=True)


def test_a_readers_page_and_its_actions_need_confirming(
    admin: FlaskClient, session: Session, sink: MailSink
) -> None:
    reader = factories.subscriber(session, ["wipo", "health-ip"], email="seen@example.org")
    admin.post(
        "/api/v1/articles",
        json=factories.article_payload(topics=["WIPO"], title="Assembly opens"),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    page = admin.get(f"/admin/readers/{reader.id}").get_data(as_text=True)
    assert "seen@example.org" in page and "Health &amp; IP" in page
    assert "Assembly opens" in page and ">sent<" in page
    token = csrf_from(page)

    # Without the box ticked nothing happens.
    admin.post(f"/admin/readers/{reader.id}/unsubscribe", data={"csrf_token": token})
    session.expire_all()
    assert reader.status is SubscriberStatus.ACTIVE
    admin.post(
        f"/admin/readers/{reader.id}/unsubscribe", data={"csrf_token": token, "confirm": "yes"}
    )
    session.expire_all()
    assert reader.status is SubscriberStatus.UNSUBSCRIBED and reader.unsubscribe_reason == "admin"
    assert "admin" in admin.get(f"/admin/readers/{reader.id}").get_data(as_text=True)

    # Without its CSRF token, an erase is refused.
    assert (
        admin.post(f"/admin/readers/{reader.id}/erase", data={"confirm": "yes"}).status_code == 400
    )
    admin.post(f"/admin/readers/{reader.id}/erase", data={"csrf_token": token, "confirm": "yes"})
    assert session.scalar(select(Subscriber).where(Subscriber.email == "seen@example.org")) is None
    assert admin.get(f"/admin/readers/{reader.id}").status_code == 404


def test_resend_the_confirmation_to_a_pending_reader_once_an_hour(
    admin: FlaskClient, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    reader = factories.subscriber(
        session, ["wipo"], email="late@example.org", status=SubscriberStatus.PENDING
    )
    page = admin.get(f"/admin/readers/{reader.id}").get_data(as_text=True)
    assert "Resend the confirmation email" in page
    admin.post(f"/admin/readers/{reader.id}/resend", data={"csrf_token": csrf_from(page)})
    admin.post(f"/admin/readers/{reader.id}/resend", data={"csrf_token": csrf_from(page)})
    assert len(sink.store.to("late@example.org")) == 1


def test_articles_with_fan_out_and_deliveries(admin: FlaskClient, session: Session) -> None:
    for _ in range(3):
        factories.subscriber(session, ["wipo"])
    admin.post(
        "/api/v1/articles",
        json=factories.article_payload(topics=["WIPO"], title="Counted article"),
        headers={"Authorization": "Bearer dev-api-token"},
    )
    page = admin.get("/admin/articles").get_data(as_text=True)
    row = page[page.index("Counted article") :].split("</tr>")[0]
    assert "done" in row and "<td>3</td>" in row
