"""Feeds from a local server shaped like a WordPress site: first poll, 304, new and changed
items, errors that never stop the other feeds, categories, Atom."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import clock, feeds
from alerts.mail.sink import MailSink
from alerts.models import Article, ArticleRevision, Feed, FeedCategory, TopicAlias
from worker import tasks

import factories
from feed_server import FeedServer, Route, atom_feed, serving, wordpress_item, wordpress_rss
from support import csrf_from

REFERENCE_CATEGORIES = [
    "IP Policies",
    "Language",
    "Themes",
    "Venues",
    "Access to Knowledge/ Education",
    "Copyright Policy",
    "English",
    "ITU/ICANN",
    "Information and Communications Technology/ Broadcasting",
    "Trademarks/Geographical Indications/Domains",
]


@pytest.fixture
def server(app: Flask) -> Iterator[FeedServer]:
    with serving() as running:
        app.config["FEED_ALLOW"] = (running.allow,)
        yield running


def rfc822(at: datetime) -> str:
    return format_datetime(at.astimezone(UTC), usegmt=True)


def add_feed(session: Session, server: FeedServer, path: str = "/feed/") -> Feed:
    feed, _ = feeds.add(session, server.url(path), allow=(server.allow,))
    session.commit()
    return feed


def poll(app: Flask, feed_id: int) -> str:
    with app.app_context():
        return str(tasks.poll_feed(feed_id))


def articles_count(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Article)) or 0)


def test_wordpress_feed_lifecycle(
    app: Flask, session: Session, sink: MailSink, server: FeedServer
) -> None:
    reader = factories.subscriber(session, ["itu-icann"])
    bystander = factories.subscriber(session, ["patents"])
    server.routes["/feed/"] = Route(
        wordpress_rss(
            wordpress_item(1, "ITU Plenipotentiary Conference", REFERENCE_CATEGORIES),
            wordpress_item(2, "WIPO General Assembly", ["WIPO", "English"]),
        )
    )
    feed = add_feed(session, server)

    # First poll: the feed's existing items become articles, and nobody is alerted.
    assert poll(app, feed.id) == "ok"
    assert articles_count(session) == 2
    assert sink.store.all() == []
    itu = session.scalars(
        select(Article).where(Article.guid == "https://news.example.org/?p=1")
    ).one()
    assert itu.author == "Monika Ermert" and itu.language_code == "en"
    assert {t.slug for t in itu.topics} == {
        "themes", "venues", "access-to-knowledge", "copyright", "itu-icann",
        "internet-governance", "trademarks",
    }  # fmt: skip
    assert itu.published_at == datetime(2014, 11, 5, 18, 0, tzinfo=UTC)

    # Second poll: the server answers 304 to our ETag; nothing changes.
    assert poll(app, feed.id) == "not modified"
    assert server.requests[-1] == ("/feed/", '"v1"')

    # A new item alerts exactly its readers, once.
    fresh = wordpress_item(
        3, "ICANN accountability reform", ["ITU/ICANN"], published=rfc822(clock.now())
    )
    server.routes["/feed/"] = Route(
        wordpress_rss(fresh, wordpress_item(2, "WIPO General Assembly", ["WIPO", "English"])),
        etag='"v2"',
    )
    assert poll(app, feed.id) == "ok"
    assert [m.subject for m in sink.store.to(reader.email)] == ["ICANN accountability reform"]
    assert sink.store.to(bystander.email) == []
    assert poll(app, feed.id) == "not modified"

    # A changed item (same guid, new title) updates the article and alerts nobody.
    server.routes["/feed/"] = Route(
        wordpress_rss(
            wordpress_item(
                3,
                "ICANN accountability reform, updated",
                ["ITU/ICANN"],
                published=rfc822(clock.now()),
            )
        ),
        etag='"v3"',
    )
    assert poll(app, feed.id) == "ok"
    assert len(sink.store.to(reader.email)) == 1
    session.expire_all()
    assert (
        session.scalars(select(Article.title).where(Article.guid.endswith("p=3"))).one()
        == "ICANN accountability reform, updated"
    )
    # ...as a revision, which the reader's next digest (if they had one) would tell of.
    [revision] = session.scalars(select(ArticleRevision)).all()
    assert (revision.old_title, revision.new_title, revision.correction) == (
        "ICANN accountability reform",
        "ICANN accountability reform, updated",
        False,
    )


def test_an_item_dated_before_the_first_poll_does_not_alert(
    app: Flask, session: Session, sink: MailSink, server: FeedServer, frozen_clock: Any
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    server.routes["/feed/"] = Route(wordpress_rss())
    feed = add_feed(session, server)
    poll(app, feed.id)
    frozen_clock.advance(timedelta(hours=1))
    backdated = wordpress_item(
        7, "Old news, found late", ["WIPO"], published=rfc822(clock.now() - timedelta(days=3))
    )
    server.routes["/feed/"] = Route(wordpress_rss(backdated), etag='"v2"')
    poll(app, feed.id)
    assert articles_count(session) == 1
    assert sink.store.to(reader.email) == []


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (
            Route(
                b'<rss version="2.0"><channel><title>Broken &amp feed</title>',
                content_type="application/rss+xml",
            ),
            "malformed feed",
        ),
        (
            Route(b"<!doctype html><html><body>Not a feed</body></html>", content_type="text/html"),
            "not a feed",
        ),
        (Route(b"", status=500), "HTTP 500"),
        (None, "HTTP 404"),
        (Route(wordpress_rss(), delay=2.0), "no answer within 1 s"),
    ],
    ids=["malformed xml", "html page", "server error", "missing", "timeout"],
)
def test_a_failing_feed_records_its_error_and_backs_off_without_stopping_the_others(
    app: Flask, session: Session, server: FeedServer, route: Route | None, error: str
) -> None:
    app.config["FEED_TIMEOUT"] = 1
    if route is not None:
        server.routes["/bad/"] = route
    server.routes["/good/"] = Route(wordpress_rss(wordpress_item(1, "Still here", ["WIPO"])))
    bad = add_feed(session, server, "/bad/")
    good = add_feed(session, server, "/good/")
    with app.app_context():
        assert tasks.poll_due_feeds() == 2
    session.expire_all()
    assert bad.failures == 1 and error in (bad.last_error or "")
    assert bad.last_error_at is not None
    assert bad.next_poll_at - bad.last_polled_at >= timedelta(minutes=30)  # backed off
    assert good.failures == 0 and good.articles_created == 1
    # The next beat leaves the backed-off feed alone.
    with app.app_context():
        assert tasks.poll_due_feeds() == 0


def test_unmapped_categories_are_kept_and_can_be_mapped(
    app: Flask, client: FlaskClient, session: Session, server: FeedServer
) -> None:
    server.routes["/feed/"] = Route(
        wordpress_rss(wordpress_item(1, "Plant variety rights", ["UPOV", "WIPO"]))
    )
    feed = add_feed(session, server)
    poll(app, feed.id)
    [category] = session.scalars(select(FeedCategory)).all()
    assert (category.name, category.seen) == ("UPOV", 1)

    page = client.get("/admin/login").get_data(as_text=True)
    client.post("/admin/login", data={"csrf_token": csrf_from(page), "password": "admin"})
    html = client.get(f"/admin/feeds/{feed.id}").get_data(as_text=True)
    assert "UPOV" in html and "Categories that map to no topic (1)" in html
    client.post(
        f"/admin/feeds/{feed.id}/map",
        data={"csrf_token": csrf_from(html), "key": "upov", "topic": "food-security"},
    )
    session.expire_all()
    assert session.get(TopicAlias, "upov").topic.slug == "food-security"  # type: ignore[union-attr]
    assert session.scalars(select(FeedCategory)).all() == []
    server.routes["/feed/"] = Route(
        wordpress_rss(wordpress_item(2, "UPOV council", ["UPOV"])), etag='"v2"'
    )
    poll(app, feed.id)
    article = session.scalars(select(Article).where(Article.title == "UPOV council")).one()
    assert [t.slug for t in article.topics] == ["food-security"]


def test_a_language_category_sets_the_language(
    app: Flask, session: Session, server: FeedServer
) -> None:
    server.routes["/feed/"] = Route(
        wordpress_rss(wordpress_item(1, "L'OMPI adopte un traité", ["WIPO", "Français"]))
    )
    feed = add_feed(session, server)
    poll(app, feed.id)
    assert session.scalars(select(Article.language_code)).one() == "fr"


def test_atom_feeds_work_too(
    app: Flask, session: Session, sink: MailSink, server: FeedServer
) -> None:
    reader = factories.subscriber(session, ["health-ip"])
    server.routes["/atom/"] = Route(
        atom_feed([("urn:1", "Pandemic accord", ["Health & IP"], "2026-01-01T00:00:00Z")]),
        content_type="application/atom+xml",
    )
    feed = add_feed(session, server, "/atom/")
    poll(app, feed.id)
    article = session.scalars(select(Article)).one()
    assert (article.guid, article.author, article.summary_text) == (
        "urn:1",
        "Catherine Saez",
        "Atom content 0",
    )
    now_text = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    server.routes["/atom/"] = Route(
        atom_feed(
            [
                ("urn:2", "WHO assembly", ["Health & IP"], now_text),
                ("urn:1", "Pandemic accord", ["Health & IP"], "2026-01-01T00:00:00Z"),
            ]
        ),
        etag='"v2"',
        content_type="application/atom+xml",
    )
    poll(app, feed.id)
    assert [m.subject for m in sink.store.to(reader.email)] == ["WHO assembly"]


def test_cli_add_list_and_poll(app: Flask, session: Session, server: FeedServer) -> None:
    from alerts.cli import main

    server.routes["/feed/"] = Route(wordpress_rss(wordpress_item(1, "Story", ["WIPO", "Mystery"])))
    runner = app.test_cli_runner()
    added = runner.invoke(main, args=["feeds", "add", server.url("/feed/"), "--interval", "30"])
    assert added.exit_code == 0 and "added" in added.output
    again = runner.invoke(main, args=["feeds", "add", server.url("/feed/")])
    assert "already there" in again.output
    bad = runner.invoke(main, args=["feeds", "add", "ftp://example.org/feed"])
    assert bad.exit_code != 0 and "http://" in bad.output
    polled = runner.invoke(main, args=["feeds", "poll"])
    assert polled.exit_code == 0, polled.output
    assert "Polling" in polled.output and "ok; 1 new (0 alerting)" in polled.output
    assert "unmapped categories: Mystery" in polled.output
    listed = runner.invoke(main, args=["feeds", "list"])
    assert (
        "[active]" in listed.output
        and "every 30 min" in listed.output
        and "1 articles" in listed.output
    )


def test_admin_adds_pauses_and_inspects_feeds(
    client: FlaskClient, session: Session, server: FeedServer
) -> None:
    server.routes["/feed/"] = Route(wordpress_rss(wordpress_item(1, "Story", ["WIPO"])))
    page = client.get("/admin/login").get_data(as_text=True)
    client.post("/admin/login", data={"csrf_token": csrf_from(page), "password": "admin"})
    form = client.get("/admin/feeds").get_data(as_text=True)
    refused = client.post(
        "/admin/feeds", data={"csrf_token": csrf_from(form), "url": "javascript:alert(1)"}
    )
    assert refused.status_code == 400 and "http:// or https://" in refused.get_data(as_text=True)
    added = client.post(
        "/admin/feeds",
        data={"csrf_token": csrf_from(form), "url": server.url("/feed/"), "interval": "15"},
    )
    assert added.status_code == 302
    detail = client.get(added.headers["Location"]).get_data(as_text=True)
    assert (
        "Intellectual Property Watch" in detail
        and '1</span><span class="name">articles from it' in detail
    )
    feed_id = session.scalars(select(Feed.id)).one()
    client.post(f"/admin/feeds/{feed_id}/toggle", data={"csrf_token": csrf_from(detail)})
    session.expire_all()
    assert session.get(Feed, feed_id).active is False  # type: ignore[union-attr]
    assert client.get("/admin/feeds").status_code == 200


def test_short_guids_are_unique_per_feed_and_links_resolve(
    app: Flask, session: Session, server: FeedServer
) -> None:
    item = """<item><title>{title}</title><link>/2026/11/{slug}/</link>
<guid isPermaLink="false">1</guid><pubDate>Wed, 05 Nov 2014 18:00:00 +0000</pubDate>
<category>WIPO</category></item>"""
    server.routes["/a/"] = Route(wordpress_rss(item.format(title="Story of site A", slug="a")))
    server.routes["/b/"] = Route(wordpress_rss(item.format(title="Story of site B", slug="b")))
    for path in ("/a/", "/b/"):
        poll(app, add_feed(session, server, path).id)
    session.expire_all()
    stored = sorted(session.execute(select(Article.title, Article.url)).all())
    assert stored == [
        ("Story of site A", server.url("/2026/11/a/")),
        ("Story of site B", server.url("/2026/11/b/")),
    ]


def test_html_titles_become_text(app: Flask, session: Session, server: FeedServer) -> None:
    server.routes["/atom/"] = Route(
        b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>
<id>urn:t</id><updated>2026-01-01T00:00:00Z</updated><entry><id>urn:x</id>
<title type="html">WIPO&amp;#8217;s Q&amp;amp;A on &lt;em&gt;AI&lt;/em&gt;</title>
<link href="https://news.example.org/qa"/><updated>2026-01-01T00:00:00Z</updated></entry></feed>""",
        content_type="application/atom+xml",
    )
    poll(app, add_feed(session, server, "/atom/").id)
    assert session.scalars(select(Article.title)).one() == "WIPO\u2019s Q&A on AI"


def test_a_garbled_server_and_a_placeholder_date_are_handled(
    app: Flask, session: Session, server: FeedServer
) -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def garble() -> None:
        connection, _ = listener.accept()
        connection.recv(1024)
        connection.sendall(b"NONSENSE\r\n\r\n")
        connection.close()

    threading.Thread(target=garble, daemon=True).start()
    garbler = f"127.0.0.1:{listener.getsockname()[1]}"
    app.config["FEED_ALLOW"] = (server.allow, garbler)
    broken, _ = feeds.add(session, f"http://{garbler}/feed", allow=(garbler,))
    server.routes["/feed/"] = Route(
        wordpress_rss(
            wordpress_item(1, "Dated 9999", ["WIPO"], published="Fri, 31 Dec 9999 23:59:59 GMT")
        )
    )
    good = add_feed(session, server)
    from alerts.cli import main

    result = app.test_cli_runner().invoke(main, args=["feeds", "poll"])
    listener.close()
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert broken.failures == 1 and "cannot read the feed" in (broken.last_error or "")
    assert good.articles_created == 1
    article = session.scalars(select(Article)).one()
    assert article.published_at.year == clock.now().year  # the placeholder counts as no date


def test_a_valid_feed_served_as_application_xml_shows_no_error(
    app: Flask, client: Any, session: Session, server: FeedServer
) -> None:
    """It used to read "malformed feed: no Content-type specified" on its admin page:
    feedparser was handed the response headers without the content type."""
    server.routes["/feed/"] = Route(
        atom_feed([("urn:x", "Treaty text agreed", ["WIPO"], "2026-01-01T00:00:00Z")]),
        content_type="application/xml",
    )
    feed = add_feed(session, server, "/feed/")
    poll(app, feed.id)
    session.refresh(feed)
    assert feed.last_error is None
    from test_admin import login

    login(client)
    page = client.get(f"/admin/feeds/{feed.id}")
    assert page.status_code == 200 and server.url("/feed/") in page.get_data(as_text=True)
    assert "Last error</th><td>none</td>" in page.get_data(as_text=True)
