"""POST /api/v1/articles: token, validation as JSON errors, one article per guid, fan-out."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.mail.sink import MailSink
from alerts.models import Article, Delivery

import factories

AUTH = {"Authorization": "Bearer dev-api-token"}


def publish(client: FlaskClient, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/api/v1/articles", json=payload, headers=AUTH if headers is None else headers
    )


def articles_stored(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Article)) or 0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "dev-api-token"},
        {"Authorization": "Basic dev-api-token"},
    ],
)
def test_publishing_needs_the_token(
    client: FlaskClient, session: Session, headers: dict[str, str]
) -> None:
    response = publish(client, factories.article_payload(), headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert articles_stored(session) == 0


def test_new_article_is_201_and_alerts_its_readers(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    reader = factories.subscriber(session, ["itu-icann"])
    response = publish(client, factories.article_payload())
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] is True and isinstance(body["id"], int)
    # Tasks run eagerly here: fan-out and the send happened inside the request.
    [message] = sink.store.to(reader.email)
    assert message.subject.startswith("ITU Plenipotentiary Conference")


def test_same_guid_is_200_with_the_same_id_and_alerts_nobody_again(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    factories.subscriber(session, ["itu-icann"])
    payload = factories.article_payload()
    first = publish(client, payload).get_json()
    payload["title"] = "Corrected title"
    second = publish(client, payload)
    assert second.status_code == 200
    assert second.get_json() == {
        "id": first["id"],
        "guid": payload["guid"],
        "created": False,
        "changed": ["title"],
        # A revision: told in the reader's next digest, not by email (not a correction).
        "revision": {"id": second.get_json()["revision"]["id"], "correction": False},
    }
    assert len(sink.store.all()) == 1
    assert session.scalar(select(func.count()).select_from(Delivery)) == 1


def test_invalid_json_is_400(client: FlaskClient, session: Session) -> None:
    response = client.post(
        "/api/v1/articles", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert articles_stored(session) == 0


def test_invalid_fields_are_422_naming_each(client: FlaskClient, session: Session) -> None:
    response = publish(
        client, factories.article_payload(url="javascript:alert(1)", title="", topics=["Nope"])
    )
    assert response.status_code == 422
    fields = response.get_json()["fields"]
    assert set(fields) == {"url", "title", "topics"}
    assert fields["topics"] == "unknown topic: Nope"
    assert articles_stored(session) == 0


def test_huge_body_is_refused_as_json(client: FlaskClient, session: Session) -> None:
    response = publish(client, factories.article_payload(summary="x" * (10 * 1024 * 1024)))
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert articles_stored(session) == 0


def test_urgent_article_reaches_digest_readers_at_once(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    from alerts.models import Frequency

    weekly = factories.subscriber(session, ["wipo"], frequency=Frequency.WEEKLY)
    publish(client, factories.article_payload(topics=["wipo"], title="Normal"))
    assert sink.store.to(weekly.email) == []
    publish(client, factories.article_payload(topics=["wipo"], title="Treaty adopted", urgent=True))
    [message] = sink.store.to(weekly.email)
    assert message.subject == "Urgent: Treaty adopted"


def test_fanout_pages_through_readers_in_batches(
    app: Any, client: FlaskClient, session: Session, sink: MailSink
) -> None:
    app.config["FANOUT_BATCH_SIZE"] = 2
    people = [factories.subscriber(session, ["wipo"]) for _ in range(5)]
    publish(client, factories.article_payload(topics=["wipo"], title="Paged"))
    assert sorted(m.recipients[0] for m in sink.store.all()) == sorted(p.email for p in people)


def test_a_key_given_twice_is_refused_and_nothing_is_stored(
    client: FlaskClient, session: Session
) -> None:
    body = b'{"guid": "a", "title": "One", "title": "Two", "url": "https://news.example.org/x"}'
    answer = client.post(
        "/api/v1/articles", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "duplicate_key"
    assert "'title'" in answer.get_json()["message"]
    assert session.scalar(select(func.count()).select_from(Article)) == 0


@pytest.mark.parametrize(
    "url", ["http://[::1", "https://[evil]/", "https://news.example.org:99999/", "http://x:y/"]
)
def test_an_address_that_cannot_be_read_is_a_422_not_a_500(
    client: FlaskClient, session: Session, url: str
) -> None:
    answer = publish(client, factories.article_payload(url=url))
    assert answer.status_code == 422
    assert "url" in answer.get_json()["fields"]
    assert session.scalar(select(func.count()).select_from(Article)) == 0


def test_links_inside_a_summary_survive_in_the_plain_text_part(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    reader = factories.subscriber(session, ["itu-icann"])
    summary = (
        '<p>Read <a href="https://www.itu.int/pp14/?lang=en&amp;s=1">the final acts</a> '
        'and <a href="https://news.example.org/">https://news.example.org/</a>.</p>'
    )
    assert publish(client, factories.article_payload(summary=summary)).status_code == 201
    [message] = sink.store.to(reader.email)
    text = message.parsed().get_body(preferencelist=("plain",)).get_content()
    assert "Read the final acts (https://www.itu.int/pp14/?lang=en&s=1) and" in text
    assert "https://news.example.org/ (https://news.example.org/)" not in text
    # Matching and the stored text are unchanged: addresses are not words of the article.
    article = session.scalars(select(Article)).one()
    assert "itu.int" not in article.summary_text
