"""An article belongs to its source: a feed may update only what it published, the API only
what the API published; a clash changes nothing and is recorded on the feed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import feeds
from alerts.models import Article, Feed
from worker import tasks

import factories
from feed_server import FeedServer, Route, serving, wordpress_item, wordpress_rss

AUTH = {"Authorization": "Bearer dev-api-token"}
GUID = "https://news.example.org/?p=7"


@pytest.fixture
def server(app: Flask) -> Iterator[FeedServer]:
    with serving() as running:
        app.config["FEED_ALLOW"] = (running.allow,)
        yield running


def add_and_poll(app: Flask, session: Session, server: FeedServer, path: str) -> Feed:
    feed, _ = feeds.add(session, server.url(path), allow=(server.allow,))
    session.commit()
    with app.app_context():
        tasks.poll_feed(feed.id)
    session.expire_all()
    found = session.get(Feed, feed.id)
    assert found is not None
    return found


def the_article(session: Session) -> Article:
    session.expire_all()
    return session.scalars(select(Article).where(Article.guid == GUID)).one()


def test_a_feed_cannot_rewrite_an_api_article(
    app: Flask, client: FlaskClient, session: Session, server: FeedServer
) -> None:
    payload = factories.article_payload(guid=GUID, title="WIPO treaty talks", topics=["WIPO"])
    assert client.post("/api/v1/articles", json=payload, headers=AUTH).status_code == 201
    server.routes["/evil/"] = Route(
        wordpress_rss(wordpress_item(7, "Click here to keep your account", ["Patents"]))
    )
    feed = add_and_poll(app, session, server, "/evil/")
    article = the_article(session)
    assert article.title == "WIPO treaty talks"
    assert article.url == payload["url"]
    assert {topic.slug for topic in article.topics} == {"wipo"}
    assert article.source == "api"
    assert feed.last_error is not None and "another source" in feed.last_error
    # The API still updates its own article.
    payload["title"] = "WIPO treaty talks resume"
    answer = client.post("/api/v1/articles", json=payload, headers=AUTH)
    assert answer.status_code == 200 and answer.get_json()["changed"] == ["title"]


def test_a_feed_updates_its_own_articles_and_not_another_feeds(
    app: Flask, client: FlaskClient, session: Session, server: FeedServer
) -> None:
    server.routes["/feed/"] = Route(wordpress_rss(wordpress_item(7, "ICANN reform", ["ITU/ICANN"])))
    first = add_and_poll(app, session, server, "/feed/")
    assert the_article(session).source == f"feed:{first.id}"
    server.routes["/copy/"] = Route(wordpress_rss(wordpress_item(7, "Rewritten", ["Patents"])))
    copy = add_and_poll(app, session, server, "/copy/")
    assert the_article(session).title == "ICANN reform"
    assert copy.last_error is not None and "another source" in copy.last_error
    # Its own feed changes the title: the article follows.
    server.routes["/feed/"] = Route(
        wordpress_rss(wordpress_item(7, "ICANN reform, revised", ["ITU/ICANN"])), etag='"v2"'
    )
    with app.app_context():
        tasks.poll_feed(first.id)
    assert the_article(session).title == "ICANN reform, revised"
    # And the API cannot take over the feed's article either.
    payload = factories.article_payload(guid=GUID, title="Hijacked", topics=["WIPO"])
    answer = client.post("/api/v1/articles", json=payload, headers=AUTH)
    assert answer.status_code == 422
    assert "another source" in answer.get_json()["fields"]["guid"]
    assert the_article(session).title == "ICANN reform, revised"
