"""Hostile input against the public forms, the API and the links: each gets a 4xx or a clear
form error, nothing half-written, no header injected, no markup unescaped."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import tokens
from alerts.mail.sink import MailSink
from alerts.models import (
    Article,
    ConsentRecord,
    Delivery,
    Subscriber,
    SubscriberStatus,
    Subscription,
)

import factories
from support import csrf_from

AUTH = {"Authorization": "Bearer dev-api-token"}


def snapshot(session: Session) -> tuple[int, ...]:
    session.expire_all()
    return tuple(
        int(session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (Subscriber, Subscription, ConsentRecord, Article, Delivery)
    )


def post_signup(client: FlaskClient, **fields: Any) -> Any:
    page = client.get("/").get_data(as_text=True)
    data = {
        "csrf_token": csrf_from(page),
        "email": "reader@example.org",
        "topics": ["wipo"],
        "languages": ["en"],
        "frequency": "daily",
    }
    data.update(fields)
    return client.post("/subscribe", data=data)


HOSTILE_SIGNUPS = {
    "crlf in email": {"email": "reader@example.org\r\nBcc: victim@example.org"},
    "bare cr in email": {"email": "reader@example.org\rBcc: victim@example.org"},
    "bare lf in email": {"email": "reader@example.org\nX-Injected: 1"},
    "fullwidth at": {"email": "reader\uff20example.org"},
    "300 characters": {"email": "a" * 290 + "@example.org"},
    "nul byte": {"email": "reader\x00@example.org"},
    "quoted local part": {"email": '"reader..x"@example.org'},
    "ip literal domain": {"email": "reader@[127.0.0.1]"},
    "markup as email": {"email": "<script>alert(1)</script>@example.org"},
    "unknown topic": {"topics": ["wipo", "no-such-topic"]},
    "sql in topic": {"topics": ["wipo' OR '1'='1"]},
    "template in topic": {"topics": ["{{7*7}}"]},
    "crlf in frequency": {"frequency": "daily\r\nX-Injected: 1"},
    "crlf in language": {"languages": ["en\r\nBcc: victim@example.org"]},
    "no topic at all": {"topics": []},
}


@pytest.mark.parametrize("fields", HOSTILE_SIGNUPS.values(), ids=HOSTILE_SIGNUPS.keys())
def test_hostile_signups_get_a_form_error_and_change_nothing(
    client: FlaskClient, session: Session, sink: MailSink, fields: dict[str, Any]
) -> None:
    before = snapshot(session)
    response = post_signup(client, **fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There is a problem" in html
    assert "<script>alert(1)" not in html and "X-Injected" not in response.headers
    assert snapshot(session) == before
    assert sink.store.all() == []


def test_non_utf8_form_bytes_are_refused_cleanly(client: FlaskClient, session: Session) -> None:
    page = client.get("/").get_data(as_text=True)
    body = (
        b"csrf_token="
        + csrf_from(page).encode()
        # Raw bytes that are not UTF-8 (not percent-escapes, which are valid address text).
        + b"&email=r\xff\xfe@example.org&topics=wipo&languages=en&frequency=daily"
    )
    response = client.post(
        "/subscribe", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert 400 <= response.status_code < 500
    assert snapshot(session) == (0, 0, 0, 0, 0)


def test_a_huge_form_is_refused(client: FlaskClient, session: Session) -> None:
    response = post_signup(client, email="r@example.org", topics=["wipo"] * 200_000)
    assert response.status_code == 413
    assert snapshot(session) == (0, 0, 0, 0, 0)


HOSTILE_ARTICLES = {
    "javascript url": ({"url": "javascript:alert(1)"}, "url"),
    "data url": ({"url": "data:text/html,<script>alert(1)</script>"}, "url"),
    "crlf in url": ({"url": "https://news.example.org/a\r\nSet-Cookie: x=1"}, "url"),
    "nul in title": ({"title": "Title\x00"}, "title"),
    "nul in author": ({"author": "Monika\x00Ermert"}, "author"),
    "control in guid": ({"guid": "guid\x07bell"}, "guid"),
    "unknown topics": ({"topics": ["WIPO", "Quantum Gravity"]}, "topics"),
    "topics not a list": ({"topics": "WIPO"}, "topics"),
    "bad date": ({"published_at": "2026-13-45T99:00:00Z"}, "published_at"),
    "bad language": ({"language": "en\r\nX: y"}, "language"),
    "urgent not a bool": ({"urgent": "true"}, "urgent"),
}


@pytest.mark.parametrize(
    ("fields", "field"), HOSTILE_ARTICLES.values(), ids=HOSTILE_ARTICLES.keys()
)
def test_hostile_articles_are_422_and_store_nothing(
    client: FlaskClient, session: Session, fields: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/api/v1/articles", json=factories.article_payload(**fields), headers=AUTH
    )
    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    assert snapshot(session) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xfe{\x00", "application/json", 400),
        (b'["a", "list"]', "application/json", 422),
        (b'{"title": "no url"', "application/json", 400),
        (b"title=form", "application/x-www-form-urlencoded", 400),
        (b'{"summary": "' + b"x" * (10 * 1024 * 1024) + b'"}', "application/json", 413),
        (b"[" * 100_000, "application/json", 400),
        (b'{"url": "https://a.example/x", "title": "\\ud800"}', "application/json", 422),
        (
            b'{"url": "https://a.example/x", "title": "t", "published_at": "9999-12-31T23:00:00Z"}',
            "application/json",
            422,
        ),
    ],
    ids=[
        "non-utf8 bytes",
        "json array",
        "truncated json",
        "form instead of json",
        "10 MB summary",
        "nested 100,000 deep",
        "lone surrogate",
        "year 9999",
    ],
)
def test_malformed_api_bodies_are_4xx(
    client: FlaskClient, session: Session, body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/api/v1/articles", data=body, content_type=content_type, headers=AUTH)
    assert response.status_code == status
    assert response.is_json
    assert snapshot(session) == (0, 0, 0, 0, 0)


def test_hostile_article_text_reaches_readers_inert(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    hostile = {
        "title": 'Treaty {{7*7}} <img src=x onerror="alert(1)">\r\nBcc: victim@example.org\rX-Evil: 1',
        "author": "Eve\r\nReply-To: eve@evil.example",
        "summary": '<p onmouseover="x()">Text</p><script>alert(1)</script><a href="javascript:x()">link</a>',
        "topics": ["wipo"],
    }
    assert (
        client.post(
            "/api/v1/articles", json=factories.article_payload(**hostile), headers=AUTH
        ).status_code
        == 201
    )
    [message] = sink.store.to(reader.email)
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None and parsed["Reply-To"] is None
    assert (
        parsed["Subject"]
        == 'Treaty {{7*7}} <img src=x onerror="alert(1)"> Bcc: victim@example.org X-Evil: 1'
    )
    html = message.body("html")
    assert "<img" not in html and "<script" not in html and "onmouseover" not in html
    assert "javascript:" not in html
    assert "{{7*7}}" in html and "Treaty 49" not in message.body("plain")
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


@pytest.mark.parametrize(
    "make",
    [
        lambda reader_id: "forged.token.value",
        lambda reader_id: tokens.make(
            "test-secret", tokens.Purpose.CONFIRM, {"s": reader_id, "n": "x"}
        ),
        lambda reader_id: tokens.make("test-secret", tokens.Purpose.MANAGE, {"s": reader_id}),
        lambda reader_id: tokens.make(
            "another-secret", tokens.Purpose.UNSUBSCRIBE, {"s": reader_id}
        ),
        lambda reader_id: tokens.make("test-secret", tokens.Purpose.UNSUBSCRIBE, {"s": "1 OR 1=1"}),
        lambda reader_id: tokens.for_reader(
            "test-secret", tokens.Purpose.UNSUBSCRIBE, reader_id, "0" * 16
        ),
    ],
    ids=[
        "forged",
        "confirm token to unsubscribe",
        "manage token to unsubscribe",
        "other key",
        "sql in payload",
        "wrong link key",
    ],
)
def test_bad_tokens_cannot_unsubscribe(client: FlaskClient, session: Session, make: Any) -> None:
    reader = factories.subscriber(session)
    response = client.post(f"/unsubscribe/{make(reader.id)}")
    assert response.status_code == 404
    session.refresh(reader)
    assert reader.status is SubscriberStatus.ACTIVE


def test_expired_tokens_get_a_clear_page(
    client: FlaskClient, session: Session, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session)
    manage_token = tokens.for_reader(
        "test-secret", tokens.Purpose.MANAGE, reader.id, reader.link_key
    )
    confirm_token = tokens.make("test-secret", tokens.Purpose.CONFIRM, {"s": reader.id, "n": "x"})
    frozen_clock.advance(timedelta(days=401))
    for path in (f"/manage/{manage_token}", f"/confirm/{confirm_token}"):
        response = client.get(path)
        assert response.status_code == 410
        assert "This link has expired" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer dev-api-token\r\nX-Injected: 1",
        "Bearer  ",
        "Bearer dev-api-tokenX",
        "bearer" + " " * 5000,
    ],
    ids=["crlf", "empty", "suffix", "long"],
)
def test_bad_bearer_tokens_are_401(client: FlaskClient, session: Session, header: str) -> None:
    try:
        response = client.post(
            "/api/v1/articles", json=factories.article_payload(), headers={"Authorization": header}
        )
    except ValueError:
        return  # the HTTP layer itself refuses a header with a line break
    assert response.status_code == 401
    assert snapshot(session) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/digests/99999999999999999999",
        "/admin/feeds/99999999999999999999",
        "/admin/digests/99999999999999999999",
    ],
)
def test_ids_past_any_column_are_no_page_not_a_500(client: FlaskClient, path: str) -> None:
    client.post("/admin/login", data={"password": "admin", "csrf_token": csrf_from(
        client.get("/admin/login").get_data(as_text=True))})  # fmt: skip
    headers = {"Authorization": "Bearer dev-api-token"}
    assert client.get(path, headers=headers).status_code == 404
    reactivate = client.post(
        "/admin/subscribers/99999999999999999999/reactivate",
        data={"csrf_token": csrf_from(client.get("/admin/subscribers").get_data(as_text=True))},
    )
    assert reactivate.status_code == 404


@pytest.mark.parametrize("target", ["/admin/feeds\r\nSet-Cookie: x=1", "/admin/\n", "/admin/\x00"])
def test_a_next_with_control_characters_opens_the_dashboard(
    client: FlaskClient, target: str
) -> None:
    form = client.get("/admin/login").get_data(as_text=True)
    answer = client.post(
        "/admin/login",
        query_string={"next": target},
        data={"password": "admin", "csrf_token": csrf_from(form)},
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/admin/")
    assert "Set-Cookie: x" not in str(answer.headers)
