"""A broad corpus of feeds, served with their headers, polled as beat polls them: no crash, no
hang, a clear error when a feed cannot be read, and the right text when it can."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from feed_corpus import cases
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import feeds
from alerts.models import Article, Feed

from feed_server import FeedServer, Route, serving

CASES = list(cases())


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with serving() as running:
        for number, case in enumerate(CASES):
            running.routes[f"/corpus/{number}/"] = Route(case.body, content_type=case.content_type)
        yield running


def test_the_corpus_is_broad() -> None:
    readable = [case for case in CASES if case.readable]
    assert len(CASES) >= 100
    for kind in ("rss091", "rss092", "rss10", "rss20", "atom03", "atom10"):
        for how in ("header", "declaration", "both", "neither", "conflict", "relative"):
            assert any(f"-{kind}-" in case.name and case.name.endswith(how) for case in readable)
    assert sum(not case.readable for case in CASES) >= 5


def test_every_feed_of_the_corpus(app: Flask, session: Session, server: FeedServer) -> None:
    allow = (server.allow,)
    problems = []
    for number, case in enumerate(CASES):
        feed, _ = feeds.add(session, server.url(f"/corpus/{number}/"), allow=allow)
        started = time.monotonic()
        report = feeds.poll(session, feed, timeout=5, allow=allow)
        session.commit()
        if time.monotonic() - started > 5:
            problems.append(f"{case.name}: took {time.monotonic() - started:.1f} s")
        stored = list(session.scalars(select(Article).where(Article.source == f"feed:{feed.id}")))
        found = session.get(Feed, feed.id)
        assert found is not None
        if not case.readable:
            if stored or not report.status.startswith("error:") or not found.last_error:
                problems.append(f"{case.name}: read as a feed ({report.status})")
            continue
        if case.title is None:  # header and declaration disagree: anything but a crash
            continue
        if report.status != "ok" or [article.title for article in stored] != [case.title]:
            titles = [article.title for article in stored]
            problems.append(f"{case.name}: {report.status}, titles {titles}")
            continue
        if "-atom10-" in case.name and stored[0].language_code != "fr":
            # Its category "Français" files it as French, whatever the encoding was.
            problems.append(f"{case.name}: language {stored[0].language_code}")
        if case.link is not None and stored[0].url != case.link.format(base=server.url("")):
            problems.append(f"{case.name}: link {stored[0].url}")
    assert problems == []
