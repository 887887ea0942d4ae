"""A reader's private Atom feed: the same rule as their emails, with the reason; valid Atom
with stable ids; conditional GET; a new address revokes the old one."""

from __future__ import annotations

import re
from datetime import timedelta

import feedparser
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from alerts import tokens
from alerts.clock import now
from alerts.models import Article, Frequency, Subscriber, SubscriberStatus
from alerts.subscriptions import lifecycle

import factories
from support import csrf_from


def manage_link(reader: Subscriber) -> str:
    return "/manage/" + tokens.for_reader(
        "test-secret", tokens.Purpose.MANAGE, reader.id, reader.link_key
    )


def feed_path(client: FlaskClient, reader: Subscriber) -> str:
    """The address the preference centre shows the reader."""
    page = client.get(manage_link(reader)).get_data(as_text=True)
    found = re.search(r'id="feed-address"[^>]*value="http://alerts\.test(/feed/[^"]+)"', page)
    assert found, "the preference centre shows no feed address"
    return found.group(1)


def recent(
    session: Session, title: str, topics: list[str], days: float = 1, **extra: object
) -> Article:
    return factories.article(
        session,
        published_at=now() - timedelta(days=days),
        title=title,
        topics=topics,
        **extra,
    )


def test_the_feed_holds_what_the_rule_matches_with_why(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session, {"wipo": Frequency.DAILY})
    lifecycle.add_keywords(session, reader, ["broadcasting treaty"], Frequency.WEEKLY)
    session.commit()
    recent(session, "WIPO assembly opens", ["WIPO"], days=2)
    recent(
        session,
        "Patent office news",
        ["Patents"],
        days=1,
        summary="<p>Talks on the Broadcasting Treaty stalled again.</p>",
    )
    recent(session, "Unrelated trade story", ["WTO/TRIPS"])
    recent(session, "L'OMPI en assemblée", ["WIPO"], language="fr")  # not a language they read
    recent(session, "Old WIPO story", ["WIPO"], days=120)  # past the feed's 90 days

    response = client.get(feed_path(client, reader))
    assert response.status_code == 200
    assert response.content_type == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.get_data())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [entry.title for entry in parsed.entries] == [
        "Patent office news",
        "WIPO assembly opens",
    ]
    keyword_entry, topic_entry = parsed.entries
    assert keyword_entry.summary.endswith(
        'It mentions "broadcasting treaty", a keyword you follow.'
    )
    assert topic_entry.summary.endswith('You follow "WIPO".')
    assert topic_entry.link.startswith("https://news.example.org/")
    assert topic_entry.updated and topic_entry.published and parsed.feed.updated
    assert parsed.feed.title == "IP Policy Watch news alerts"


def test_ids_stay_the_same_when_an_article_changes(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo"])
    article = recent(session, "WIPO budget", ["WIPO"])
    path = feed_path(client, reader)
    first = feedparser.parse(client.get(path).get_data())
    article.title = "WIPO budget (corrected)"
    session.commit()
    second = feedparser.parse(client.get(path).get_data())
    assert [e.id for e in first.entries] == [e.id for e in second.entries]
    assert second.entries[0].title == "WIPO budget (corrected)"
    assert first.feed.id == second.feed.id


def test_conditional_get_answers_304_until_something_new(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    recent(session, "WIPO story", ["WIPO"])
    path = feed_path(client, reader)
    first = client.get(path)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    recent(session, "Another WIPO story", ["WIPO"], days=0.1)
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert len(feedparser.parse(changed.get_data()).entries) == 2


def test_a_new_address_revokes_the_old_one(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo"])
    old = feed_path(client, reader)
    old_id = feedparser.parse(client.get(old).get_data()).feed.id
    page = client.get(manage_link(reader)).get_data(as_text=True)
    response = client.post(manage_link(reader) + "/feed", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your feed has a new address. The old one no longer works." in shown
    new = feed_path(client, reader)
    assert new != old
    assert client.get(old).status_code == 404
    assert feedparser.parse(client.get(new).get_data()).feed.id == old_id


def test_paused_readers_keep_their_feed_and_leavers_lose_it(
    client: FlaskClient, session: Session
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    recent(session, "WIPO story", ["WIPO"])
    path = feed_path(client, reader)
    reader.paused_until = now() + timedelta(weeks=2)
    session.commit()
    assert len(feedparser.parse(client.get(path).get_data()).entries) == 1
    reader.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    assert client.get(path).status_code == 404
    assert client.get("/feed/not-a-key").status_code == 404


def test_a_hostile_title_stays_text(client: FlaskClient, session: Session) -> None:
    reader = factories.subscriber(session, ["wipo"])
    recent(session, 'WIPO <script>alert("x")</script> & "friends"', ["WIPO"])
    body = client.get(feed_path(client, reader)).get_data()
    assert b"<script>" not in body
    parsed = feedparser.parse(body)
    assert not parsed.bozo
    assert parsed.entries[0].title == 'WIPO <script>alert("x")</script> & "friends"'
