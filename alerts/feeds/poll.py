"""RSS and Atom feeds: add them, poll them (conditional GET through `fetch`), turn new
entries into articles.

Entries go through the same publishing path as the API (articles.parse, articles.publish).
An entry seen again updates its article and alerts nobody; entries a feed already held
when it was added (its first poll, or dated before it) are stored without alerting.
"""

from __future__ import annotations

import calendar
import html
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import feedparser
import nh3
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import articles
from alerts.clock import now
from alerts.errors import InvalidInput
from alerts.feeds.fetch import FeedError, allowed, fetch, public_addresses
from alerts.models import Feed, FeedCategory, Language, Topic
from alerts.taxonomy import alias_key

MAX_BACKOFF = timedelta(hours=24)
# Feed dates have second precision and publishers' clocks drift: an entry counts as older
# than the first poll only when it is older by more than this.
CLOCK_GRACE = timedelta(hours=1)


_GLOBAL_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S")


def check_url(url: str, allow: Collection[str] = ()) -> str:
    """The address, trimmed.

    Raises:
        InvalidInput: not an http(s) URL, an impossible port, or a host on an internal
            network (unless `allow`, ALERTS_FEED_ALLOW, names it).
    """
    url = url.strip()
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput({"url": "That address has an impossible port."}) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidInput({"url": "A feed address must be an http:// or https:// URL."})
    port = port or (443 if parts.scheme == "https" else 80)
    if not allowed(parts.hostname, port, allow):
        try:
            public_addresses(parts.hostname, port, allow)
        except FeedError as error:
            if str(error).startswith("refused"):
                raise InvalidInput(
                    {"url": "That address is on an internal network: feeds must be public."}
                ) from None
            # Not resolvable now: every poll checks again, and records why it failed.
    return url


def add(
    session: Session,
    url: str,
    language: str | None = None,
    interval_minutes: int = 15,
    allow: Collection[str] = (),
) -> tuple[Feed, bool]:
    """Add a feed (or return the one with this address); it is polled at once.

    Raises:
        InvalidInput: a bad address, an unknown language or an interval out of range.
    """
    url = check_url(url, allow)
    if language and session.get(Language, language) is None:
        raise InvalidInput({"language": f"Unknown language {language!r}."})
    if not 1 <= interval_minutes <= 1440:
        raise InvalidInput({"interval": "Poll every 1 to 1440 minutes."})
    existing = session.scalar(select(Feed).where(Feed.url == url))
    if existing is not None:
        return existing, False
    feed = Feed(url=url, language_code=language or None, interval_minutes=interval_minutes)
    session.add(feed)
    session.flush()
    return feed, True


@dataclass
class PollReport:
    feed_id: int
    status: str = ""  # "ok", "not modified" or the error
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    to_alert: list[int] = field(default_factory=list)  # new articles to fan out, after commit
    rejected: list[str] = field(default_factory=list)  # entries that are not articles, and why
    unmapped: list[str] = field(default_factory=list)


def due(session: Session, limit: int = 100) -> list[Feed]:
    return list(
        session.scalars(
            select(Feed)
            .where(Feed.active.is_(True), Feed.next_poll_at <= now())
            .order_by(Feed.next_poll_at)
            .limit(limit)
        )
    )


def lease(session: Session, feed: Feed) -> None:
    """Move the next poll on before polling, so beat does not queue the same feed twice."""
    feed.next_poll_at = now() + timedelta(minutes=feed.interval_minutes)


def poll(
    session: Session,
    feed: Feed,
    timeout: float = 20.0,
    fetcher: Any = fetch,
    allow: Collection[str] = (),
) -> PollReport:
    """Fetch and ingest one feed; records success or the error on the feed. The caller
    commits, then queues fanout_article for report.to_alert."""
    report = PollReport(feed.id)
    started = now()
    feed.last_polled_at = started
    try:
        fetched = fetcher(feed.url, feed.etag, feed.last_modified, timeout, allow)
        if fetched.status == 304:
            report.status = "not modified"
        else:
            try:
                # The server's headers tell feedparser the charset and the content type;
                # the feed's address resolves relative links ("/2026/11/story/").
                parsed = feedparser.parse(
                    fetched.body,
                    response_headers={**fetched.headers, "content-location": feed.url},
                )
            except Exception as error:  # feedparser can choke on odd character references
                raise FeedError(f"unreadable feed: {type(error).__name__}: {error}") from error
            if not parsed.get("version"):
                problem = parsed.get("bozo_exception") or "no RSS or Atom document found"
                raise FeedError(f"not a feed: {problem}")
            if parsed.get("bozo"):
                problem = f"malformed feed: {parsed.get('bozo_exception')}"
                if not parsed.entries:
                    raise FeedError(problem)
                # Readable in spite of it (feedparser is lenient): take the entries, but
                # show the admin what is wrong with the feed.
                feed.last_error, feed.last_error_at = problem[:2000], started
            feed.title = str(parsed.feed.get("title", ""))[:500] or feed.title
            first_poll = feed.first_polled_at is None
            if first_poll:
                feed.first_polled_at = started
            for entry in parsed.entries:
                _ingest(session, feed, entry, first_poll, report)
            feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
            report.status = "ok"
        feed.last_status = fetched.status
        feed.failures = 0
        feed.next_poll_at = started + timedelta(minutes=feed.interval_minutes)
    except Exception as error:
        problem = error if isinstance(error, FeedError) else f"{type(error).__name__}: {error}"
        feed.failures += 1
        feed.last_error = str(problem)[:2000]
        feed.last_error_at = started
        feed.last_status = None
        backoff = timedelta(minutes=feed.interval_minutes) * 2 ** min(feed.failures, 10)
        feed.next_poll_at = started + min(backoff, MAX_BACKOFF)
        report.status = f"error: {problem}"
    if report.rejected and report.status == "ok":
        # Entries that are not articles (no usable link, no title...) are the admin's business.
        feed.last_error = (
            f"{len(report.rejected)} entries skipped: " + "; ".join(report.rejected[:5])
        )[:2000]
        feed.last_error_at = started
    session.flush()
    return report


def _entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        # Read as a plain dict: feedparser's own get() maps a missing "published" to
        # "updated" with a deprecation warning.
        value = dict.get(entry, key)
        if value:
            try:
                moment = datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                return None
            # A placeholder like 31 Dec 9999 is no date at all.
            return moment if articles.plausible(moment) else None
    return None


def _ingest(session: Session, feed: Feed, entry: Any, first_poll: bool, report: PollReport) -> None:
    link = str(entry.get("link", "")).strip()
    guid = str(entry.get("id") or link).strip()
    if not _GLOBAL_ID.match(guid):
        # Ids like "1" or "post-42" are unique within one feed only; URLs, "urn:" and "tag:"
        # ids are unique everywhere.
        guid = f"{feed.url}#{guid}"
    title = str(entry.get("title", ""))
    if "html" in str(entry.get("title_detail", {}).get("type", "")):
        title = html.unescape(nh3.clean(title, tags=set()))
    categories = [str(tag.get("term", "")).strip() for tag in entry.get("tags", [])]
    categories = [name for name in categories if name]
    topic_ids, language, unknown = articles.resolve_topics(session, categories)
    for name in unknown:
        _remember_unmapped(session, feed, name)
        report.unmapped.append(name)
    summary = entry.get("summary") or ""
    if not summary and entry.get("content"):
        summary = entry["content"][0].get("value", "")
    published = _entry_time(entry)
    slugs = (
        list(session.scalars(select(Topic.slug).where(Topic.id.in_(topic_ids))))
        if topic_ids
        else []
    )
    payload = {
        "guid": guid[: articles.MAX_GUID],
        "url": link,
        "title": title,
        "summary": summary[: articles.MAX_SUMMARY],
        "author": str(entry.get("author", ""))[: articles.MAX_AUTHOR],
        "language": language or feed.language_code or "en",
        "topics": slugs,
    }
    if published is not None:
        payload["published_at"] = published.isoformat()
    try:
        with session.begin_nested():
            result = articles.publish(
                session, articles.parse(session, payload), articles.feed_source(feed.id)
            )
    except articles.InvalidArticle as invalid:
        report.rejected.append(f"{guid[:80]}: {invalid}")
        return
    if not result.created:
        if result.changed:
            report.updated += 1
        else:
            report.unchanged += 1
        return
    report.created += 1
    feed.articles_created += 1
    # No flood when a feed is added: what it held before its first poll does not alert.
    old = (
        published is not None
        and feed.first_polled_at is not None
        and published < feed.first_polled_at - CLOCK_GRACE
    )
    if not first_poll and not old:
        report.to_alert.append(result.article_id)
    else:
        articles.alert_nobody(session, result.article_id)


def _remember_unmapped(session: Session, feed: Feed, name: str) -> None:
    key = alias_key(name)
    if not key:
        return
    row = session.get(FeedCategory, (feed.id, key))
    if row is None:
        row = FeedCategory(feed_id=feed.id, key=key, name=name[:200], seen=0)
        session.add(row)
    row.seen += 1
    row.last_seen_at = now()


def map_category(session: Session, feed_id: int, key: str, topic_slug: str | None) -> bool:
    """Map an unmapped category to a topic (or mark it as carrying none): from now on every
    feed's entries with that category get the topic."""
    from alerts.models import TopicAlias

    row = session.get(FeedCategory, (feed_id, key))
    if row is None:
        return False
    topic_id = None
    if topic_slug:
        topic_id = session.scalar(select(Topic.id).where(Topic.slug == topic_slug))
        if topic_id is None:
            return False
    alias = session.get(TopicAlias, key)
    if alias is None:
        session.add(TopicAlias(key=key, name=row.name, topic_id=topic_id))
    else:
        alias.topic_id = topic_id
    session.execute(
        FeedCategory.__table__.delete().where(FeedCategory.key == key)  # type: ignore[attr-defined]
    )
    session.flush()
    return True
