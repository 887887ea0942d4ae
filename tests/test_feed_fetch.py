"""Feeds come from servers we do not trust: no internal targets (directly or through a
redirect), http and https only, one deadline for the whole read, and the server's charset."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import feeds
from alerts.errors import InvalidInput
from alerts.mail.sink import MailSink
from alerts.models import Article, Feed
from worker import tasks

import factories
from feed_server import FeedServer, Route, serving, wordpress_item, wordpress_rss
from support import csrf_from


@pytest.fixture
def server(app: Flask) -> Iterator[FeedServer]:
    with serving() as running:
        app.config["FEED_ALLOW"] = (running.allow,)
        yield running


class Listener:
    """A port that records whether anything connected to it (it should not)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connected = False
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                continue
            self.connected = True
            connection.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


def poll(app: Flask, session: Session, feed: Feed) -> Feed:
    with app.app_context():
        tasks.poll_feed(feed.id)
    session.expire_all()
    found = session.get(Feed, feed.id)
    assert found is not None
    return found


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.1:{port}/feed/",
        "http://0x7f000001:{port}/feed/",
        "http://2130706433:{port}/feed/",
        "http://[::1]:{port}/feed/",
        "http://localhost:{port}/feed/",
        "http://10.0.0.1/feed/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_internal_addresses_are_refused_when_a_feed_is_added(
    session: Session, listener: Listener, address: str
) -> None:
    with pytest.raises(InvalidInput, match="internal network"):
        feeds.add(session, address.format(port=listener.port))
    assert session.scalar(select(Feed)) is None
    assert not listener.connected


def test_the_admin_is_told_why_and_nothing_is_stored(
    client: FlaskClient, session: Session, listener: Listener
) -> None:
    client.post("/admin/login", data={"password": "admin", "csrf_token": csrf_from(
        client.get("/admin/login").get_data(as_text=True))})  # fmt: skip
    form = client.get("/admin/feeds").get_data(as_text=True)
    answer = client.post(
        "/admin/feeds",
        data={"csrf_token": csrf_from(form), "url": f"http://127.0.0.1:{listener.port}/"},
    )
    assert answer.status_code == 400
    assert "internal network" in answer.get_data(as_text=True)
    assert session.scalar(select(Feed)) is None


def test_an_allowed_host_lets_only_its_own_port_through(
    app: Flask, session: Session, server: FeedServer, listener: Listener
) -> None:
    server.routes["/feed/"] = Route(wordpress_rss(wordpress_item(1, "WIPO", ["WIPO"])))
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    assert poll(app, session, feed).last_error is None
    with pytest.raises(InvalidInput):
        feeds.add(session, f"http://127.0.0.1:{listener.port}/", allow=(server.allow,))


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher"])
def test_a_redirect_to_another_scheme_is_refused(
    app: Flask, session: Session, server: FeedServer, listener: Listener, scheme: str
) -> None:
    server.routes["/feed/"] = Route(b"", location=f"{scheme}://127.0.0.1:{listener.port}/x")
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    polled = poll(app, session, feed)
    assert polled.last_error is not None and "refused: a redirect" in polled.last_error
    assert polled.failures == 1
    time.sleep(0.3)
    assert not listener.connected


def test_a_redirect_to_an_internal_address_is_refused(
    app: Flask, session: Session, server: FeedServer, listener: Listener
) -> None:
    server.routes["/feed/"] = Route(b"", location=f"http://127.0.0.1:{listener.port}/feed")
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    polled = poll(app, session, feed)
    assert polled.last_error is not None and "internal network" in polled.last_error
    time.sleep(0.3)
    assert not listener.connected


def test_a_dripping_server_cannot_hold_a_worker_past_the_deadline(
    app: Flask, session: Session, server: FeedServer
) -> None:
    body = wordpress_rss(wordpress_item(1, "Slow news", ["WIPO"]))
    server.routes["/feed/"] = Route(body, drip=0.2)
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    app.config["FEED_TIMEOUT"] = 1
    started = time.monotonic()
    polled = poll(app, session, feed)
    assert time.monotonic() - started < 2.5  # the body alone would take minutes
    assert polled.last_error is not None and "no answer within 1 s" in polled.last_error


def test_a_charset_given_only_by_the_server_is_honoured(
    app: Flask, session: Session, server: FeedServer
) -> None:
    body = (
        wordpress_rss(wordpress_item(1, "Всемирная организация", ["WIPO"]))
        .decode("utf-8")
        .replace('<?xml version="1.0" encoding="UTF-8"?>\n', "")
        .encode("windows-1251")
    )
    server.routes["/feed/"] = Route(body, content_type="application/rss+xml; charset=windows-1251")
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    polled = poll(app, session, feed)
    assert polled.last_error is None
    titles = list(session.scalars(select(Article.title)))
    assert titles == ["Всемирная организация"]


def test_an_empty_feed_is_read_and_its_first_post_alerts(
    app: Flask, session: Session, server: FeedServer, sink: MailSink
) -> None:
    reader = factories.subscriber(session, ["wipo"])
    server.routes["/feed/"] = Route(wordpress_rss())
    feed, _ = feeds.add(session, server.url("/feed/"), allow=(server.allow,))
    session.commit()
    polled = poll(app, session, feed)
    assert polled.failures == 0 and polled.last_error is None
    assert polled.first_polled_at is not None
    server.routes["/feed/"] = Route(
        wordpress_rss(wordpress_item(1, "WIPO news", ["WIPO"], published=_now_rfc822())),
        etag='"v2"',
    )
    poll(app, session, feed)
    assert [message.recipients for message in sink.store.all()] == [[reader.email]]


def _now_rfc822() -> str:
    from email.utils import format_datetime

    from alerts.clock import now

    return format_datetime(now(), usegmt=True)


def test_credentials_in_a_feed_address_are_never_shown(
    client: FlaskClient, session: Session, server: FeedServer
) -> None:
    address = f"http://newsroom:s3cret-pass@{server.allow}/private/feed/"
    feed, _ = feeds.add(session, address, allow=(server.allow,))
    session.commit()
    client.post("/admin/login", data={"password": "admin", "csrf_token": csrf_from(
        client.get("/admin/login").get_data(as_text=True))})  # fmt: skip
    for page in ("/admin/feeds", f"/admin/feeds/{feed.id}"):
        html = client.get(page).get_data(as_text=True)
        assert f"{server.allow}/private/feed/" in html
        assert "s3cret-pass" not in html and "newsroom:" not in html
