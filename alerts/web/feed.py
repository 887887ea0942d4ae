"""A reader's private Atom feed (RFC 4287) at /feed/<key>, and the preference centre's
button that gives it a new address (the old one stops working at once).

Entries keep their ids whatever changes (tag URIs of the article's id), carry the reason the
reader gets each article, and the response answers conditional GETs (ETag, Last-Modified,
304) so a feed reader polling every few minutes costs one query and no body.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, abort, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue

from alerts import db, i18n, tokens
from alerts.i18n import gettext as _
from alerts.matching import feed
from alerts.matching.rule import Reason
from alerts.models import Article, Subscriber
from alerts.web.reader import reader_link

bp = Blueprint("feed", __name__)

ATOM = "http://www.w3.org/2005/Atom"
TAG_DATE = "2026"  # the tag URIs' date: fixed forever, so ids never change


@bp.get("/feed/<key>")
def private_feed(key: str) -> ResponseReturnValue:
    session = db.session()
    subscriber = feed.reader_of(session, key)
    if subscriber is None:
        abort(404)
    found = feed.entries(session, subscriber)
    with i18n.using(subscriber.locale):
        body = _atom(subscriber, key, found)
    response = Response(body, content_type="application/atom+xml; charset=utf-8")
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.last_modified = _updated(subscriber, found)
    response.cache_control.private = True
    response.cache_control.max_age = 300
    # A private address: never listed by search engines, never sent on as a Referer.
    response.headers["X-Robots-Tag"] = "noindex"
    return response.make_conditional(request)


@bp.post("/manage/<token>/feed")
@reader_link(tokens.Purpose.MANAGE, acts=True)
def new_feed_address(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    """The "new address" button: the old feed address stops working."""
    session = db.session()
    feed.key(session, subscriber, renew=True)
    session.commit()
    return redirect(url_for("reader.manage", token=token, saved="feed") + "#feed", code=303)


def _updated(subscriber: Subscriber, found: list[tuple[Article, Reason]]) -> datetime:
    # The reader's own changes too (topics, languages, locale change what the feed holds).
    times = [max(article.updated_at, article.published_at) for article, _ in found]
    latest = max([*times, subscriber.updated_at])
    return latest.replace(tzinfo=UTC, microsecond=0)


def _stamp(value: datetime) -> str:
    return value.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def _why(reason: Reason) -> str:
    if reason.kind == "keyword":
        return _("It mentions %(keyword)s, a keyword you follow.", keyword=f'"{reason.name}"')
    return _("You follow %(topic)s.", topic=f'"{reason.name}"')


def _atom(subscriber: Subscriber, key: str, found: list[tuple[Article, Reason]]) -> bytes:
    base = current_app.config["BASE_URL"]
    site = current_app.config["SITE_NAME"]
    host = urlsplit(base).hostname or "localhost"
    ET.register_namespace("", ATOM)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> None:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        element.text = text

    root = ET.Element(f"{{{ATOM}}}feed", {"xml:lang": subscriber.locale})
    # The feed's id outlives a new address: it names the reader, not the key.
    reader = uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/reader/{subscriber.id}/{subscriber.link_key}")
    add(root, "id", f"tag:{host},{TAG_DATE}:feed/{reader}")
    add(root, "title", _("%(site)s news alerts", site=site))
    add(root, "subtitle", _("Everything matched for you, and why."))
    add(root, "updated", _stamp(_updated(subscriber, found)))
    add(root, "link", rel="self", href=f"{base}/feed/{key}", type="application/atom+xml")
    add(root, "link", rel="alternate", href=f"{base}/", type="text/html")
    author = ET.SubElement(root, f"{{{ATOM}}}author")
    add(author, "name", site)
    add(root, "generator", "news alerts")
    for article, reason in found:
        entry = ET.SubElement(root, f"{{{ATOM}}}entry")
        add(entry, "id", f"tag:{host},{TAG_DATE}:article/{article.id}")
        add(entry, "title", article.title)
        add(entry, "link", rel="alternate", href=article.url, type="text/html")
        add(entry, "published", _stamp(article.published_at))
        add(entry, "updated", _stamp(max(article.updated_at, article.published_at)))
        if article.author:
            writer = ET.SubElement(entry, f"{{{ATOM}}}author")
            add(writer, "name", article.author)
        add(entry, "category", term=f"{reason.kind}:{reason.name}", label=reason.name)
        add(entry, "summary", f"{article.summary_text}\n\n{_why(reason)}".strip(), type="text")
    tree: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return tree
