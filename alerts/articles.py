"""Publishing articles: validate what a publisher sends, store each guid once, keep topics."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import nh3
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import revisions
from alerts.clock import now
from alerts.errors import InvalidInput
from alerts.models import Article, Language, Topic, TopicAlias
from alerts.taxonomy import alias_key

MAX_GUID = 1000
MAX_URL = 2000
MAX_TITLE = 500
MAX_AUTHOR = 200
MAX_SUMMARY = 200_000
MAX_TOPICS = 50
FIELDS = {
    "guid",
    "url",
    "title",
    "summary",
    "author",
    "language",
    "published_at",
    "topics",
    "urgent",
    "correction",
}
MAX_NOTE = 1000

# What a summary may keep: text structure and links, nothing that runs or loads.
SUMMARY_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote", "q"}
SUMMARY_ATTRIBUTES = {"a": {"href", "title"}}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidArticle(InvalidInput):
    """The article cannot be taken; `errors` maps each bad field to what is wrong with it."""


@dataclass(frozen=True)
class ArticleInput:
    guid: str
    url: str
    title: str
    summary_html: str
    summary_text: str
    author: str
    language_code: str
    published_at: datetime | None  # None: now for a new article, unchanged for a known one
    topic_ids: tuple[int, ...]
    urgent: bool = False
    # An update the publisher marks as a correction to notify: its note ("" for none). None:
    # not a correction (a changed title or summary still shows as updated in digests).
    correction: str | None = None


@dataclass(frozen=True)
class PublishResult:
    article_id: int
    created: bool
    changed: tuple[str, ...] = field(default=())
    revision_id: int | None = None  # the title or summary changed: readers are told once
    correction: bool = False  # ...and it is a correction: instant readers get an email


def one_line(value: str) -> str:
    """Collapse every run of whitespace (CR and LF included) into one space."""
    return " ".join(value.split())


def sanitize_summary(raw_html: str) -> str:
    cleaned: str = nh3.clean(
        raw_html,
        tags=SUMMARY_TAGS,
        attributes=SUMMARY_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return cleaned.strip()


_LINK = re.compile(r'(?is)<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>')


def _link_as_text(match: re.Match[str]) -> str:
    href, label = match.group(1), match.group(2)
    if html.unescape(re.sub(r"<[^>]+>", "", label)).strip() == html.unescape(href):
        return label
    return f"{label} ({href})"


def summary_as_text(clean_html: str, links: bool = False) -> str:
    """A plain-text version of a sanitized summary: paragraphs kept, tags and entities gone;
    with `links`, each link's address follows its text ("the treaty (https://…)"), for the
    plain-text part of an email. (Matching reads it without: addresses are not words.)"""
    if links:
        clean_html = _LINK.sub(_link_as_text, clean_html)
    with_breaks = re.sub(r"(?i)<br\s*/?>|</(p|li|blockquote)>", "\n", clean_html)
    with_breaks = re.sub(r"(?i)<li[^>]*>", "- ", with_breaks)
    text = html.unescape(re.sub(r"<[^>]+>", "", with_breaks))
    lines = (one_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _text(payload: Mapping[str, Any], name: str, limit: int, errors: dict[str, str]) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[name] = "must be a string"
        return ""
    if "\x00" in value:
        errors[name] = "must not contain NUL bytes"
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        errors[name] = "must be valid Unicode text (no lone surrogates)"
        return ""
    if len(value) > limit:
        errors[name] = f"must be at most {limit} characters"
        return ""
    return value


def _check_url(url: str) -> str | None:
    if not url:
        return "is required"
    if any(ch.isspace() for ch in url) or _CONTROL.search(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # both raise on a malformed address
    except ValueError:
        return "is not a valid address (its host or port cannot be read)"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// address"
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # "0001-01-01T00:00:00+01:00" overflows in UTC
        return None
    return moment if plausible(moment) else None


def plausible(moment: datetime) -> bool:
    """Years an article can carry: far from the ends of the calendar, where converting to a
    reader's time zone would overflow."""
    return 1900 <= moment.year <= 2200


def resolve_topics(
    session: Session, names: Sequence[str]
) -> tuple[list[int], str | None, list[str]]:
    """Topic ids for slugs or names as a site writes them; plus a language the names imply,
    and the names nobody knows."""
    by_slug = dict(session.execute(select(Topic.slug, Topic.id).where(Topic.slug.in_(names))).all())
    keys = {name: alias_key(name) for name in names if name not in by_slug}
    aliases = {
        alias.key: alias
        for alias in session.scalars(select(TopicAlias).where(TopicAlias.key.in_(keys.values())))
    }
    topic_ids: list[int] = []
    language: str | None = None
    unknown: list[str] = []
    for name in names:
        if name in by_slug:
            topic_ids.append(by_slug[name])
            continue
        alias = aliases.get(keys[name])
        if alias is None:
            unknown.append(name)
        elif alias.topic_id is not None:
            topic_ids.append(alias.topic_id)
        elif alias.language_code is not None:
            language = language or alias.language_code
    return list(dict.fromkeys(topic_ids)), language, unknown


def parse(session: Session, payload: Any) -> ArticleInput:
    """Validate one article as the API or a file gives it; every problem is reported at once.

    Raises:
        InvalidArticle: every bad field with what is wrong with it.
    """
    if not isinstance(payload, Mapping):
        raise InvalidArticle({"article": "must be a JSON object"})
    errors: dict[str, str] = {}
    for name in sorted(set(payload) - FIELDS):
        errors[str(name)[:50]] = "is not a field of an article"

    url = _text(payload, "url", MAX_URL, errors).strip()
    if "url" not in errors and (problem := _check_url(url)):
        errors["url"] = problem
    guid = _text(payload, "guid", MAX_GUID, errors).strip() or url
    if "guid" not in errors and _CONTROL.search(guid):
        errors["guid"] = "must not contain control characters"

    title = one_line(_text(payload, "title", MAX_TITLE * 4, errors))
    if "title" not in errors:
        if not title:
            errors["title"] = "is required"
        elif len(title) > MAX_TITLE:
            errors["title"] = f"must be at most {MAX_TITLE} characters"
    summary_html = sanitize_summary(_text(payload, "summary", MAX_SUMMARY, errors))
    author = one_line(_text(payload, "author", MAX_AUTHOR, errors))

    published_at: datetime | None = None
    if payload.get("published_at") is not None:
        parsed = _parse_time(payload["published_at"])
        if parsed is None:
            errors["published_at"] = (
                "must be an ISO 8601 date and time between 1900 and 2200, like 2026-11-28T09:30:00Z"
            )
        else:
            published_at = parsed

    urgent = payload.get("urgent", False)
    if not isinstance(urgent, bool):
        errors["urgent"] = "must be true or false"
        urgent = False

    correction: str | None = None
    flag = payload.get("correction", False)
    if isinstance(flag, str):
        correction = one_line(_text(payload, "correction", MAX_NOTE, errors))
        # A flag sent as a string ("false") must not email every reader a note saying so.
        if "correction" not in errors and (
            not correction or correction.lower() in ("true", "false", "yes", "no", "0", "1")
        ):
            errors["correction"] = "must be true, false, or a note saying what was corrected"
    elif flag is True:
        correction = ""
    elif flag is not False and flag is not None:
        errors["correction"] = "must be true, false, or a note saying what was corrected"

    topics = payload.get("topics", [])
    topic_ids: list[int] = []
    implied_language: str | None = None
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        errors["topics"] = "must be a list of topic slugs or names"
    elif len(topics) > MAX_TOPICS:
        errors["topics"] = f"must hold at most {MAX_TOPICS} topics"
    else:
        names = [one_line(t) for t in topics if one_line(t)]
        topic_ids, implied_language, unknown = resolve_topics(session, names)
        if unknown:
            errors["topics"] = "unknown topic: " + ", ".join(unknown[:10])

    language = _text(payload, "language", 8, errors).strip().lower() or implied_language or "en"
    if "language" not in errors and session.get(Language, language) is None:
        errors["language"] = f"unknown language {language!r}"

    if errors:
        raise InvalidArticle(errors)
    return ArticleInput(
        guid=guid,
        url=url,
        title=title,
        summary_html=summary_html,
        summary_text=summary_as_text(summary_html),
        author=author,
        language_code=language,
        published_at=published_at,
        topic_ids=tuple(topic_ids),
        urgent=urgent,
        correction=correction,
    )


API_SOURCE = "api"


def feed_source(feed_id: int) -> str:
    return f"feed:{feed_id}"


def publish(session: Session, article: ArticleInput, source: str = API_SOURCE) -> PublishResult:
    """Store a new article, or update the one with the same guid (which alerts nobody again:
    a changed title or summary is a revision, told once to readers who got it; see
    `alerts.revisions`).

    An article belongs to its source (`API_SOURCE`, or `feed_source(id)`): another source
    sending the same guid changes nothing.

    Raises:
        InvalidArticle: the guid belongs to an article of another source.
    """
    existing = session.scalar(_by_guid(session, article.guid))
    if existing is None:
        created = Article(
            guid=article.guid,
            source=source,
            url=article.url,
            title=article.title,
            summary_html=article.summary_html,
            summary_text=article.summary_text,
            author=article.author,
            language_code=article.language_code,
            published_at=article.published_at or now(),
            urgent=article.urgent,
            # Awaiting fan-out (fanned_out_at NULL) from the very transaction that stores it:
            # the reconciler fans it out even if its task never reaches the broker.
            queued_at=now(),
        )
        try:
            with session.begin_nested():
                session.add(created)
                created.topics = _topics(session, article.topic_ids)
        except IntegrityError:
            # The same guid arrived in a parallel request: treat this one as an update.
            existing = session.scalar(_by_guid(session, article.guid))
            if existing is None:
                raise
        else:
            return PublishResult(created.id, created=True)

    if existing.source is None:
        existing.source = source  # stored before sources were recorded: the first one claims it
    elif existing.source != source:
        raise InvalidArticle(
            {"guid": "already used by an article from another source; it was not changed"}
        )
    old_title, old_summary_text = existing.title, existing.summary_text
    changed = []
    for name in ("url", "title", "summary_html", "summary_text", "author", "language_code"):
        if getattr(existing, name) != getattr(article, name):
            setattr(existing, name, getattr(article, name))
            changed.append(name)
    if article.published_at is not None and existing.published_at != article.published_at:
        existing.published_at = article.published_at
        changed.append("published_at")
    if {topic.id for topic in existing.topics} != set(article.topic_ids):
        existing.topics = _topics(session, article.topic_ids)
        changed.append("topics")
    session.flush()
    revision = revisions.record(session, existing, old_title, old_summary_text, article.correction)
    if revision is None:
        return PublishResult(existing.id, created=False, changed=tuple(changed))
    return PublishResult(
        existing.id,
        created=False,
        changed=tuple(changed),
        revision_id=revision.id,
        correction=revision.correction,
    )


def _by_guid(session: Session, guid: str) -> Select[Article]:
    """The article with this guid; locked on PostgreSQL, so that two updates of it at once
    take turns (each revision records what the other left)."""
    query = select(Article).where(Article.guid == guid)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return query


def alert_nobody(session: Session, article_id: int) -> None:
    """Store an article without fanning it out (what a feed held before its first poll)."""
    article = session.get(Article, article_id)
    if article is not None and article.fanned_out_at is None:
        article.fanned_out_at = now()


def _topics(session: Session, topic_ids: Sequence[int]) -> list[Topic]:
    if not topic_ids:
        return []
    return list(session.scalars(select(Topic).where(Topic.id.in_(topic_ids))))
