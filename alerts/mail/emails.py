"""One function per email: it gathers the context, renders, and returns the message bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from alerts import i18n, metrics, revisions, tokens
from alerts.clock import now, zone
from alerts.mail import message, smtp
from alerts.mail.render import RenderedEmail, renderer
from alerts.models import Article, Subscriber, SubscriberStatus, Topic
from alerts.subscriptions import FREQUENCY_LABELS, Choices


@dataclass(frozen=True)
class MailSettings:
    """The part of the configuration that sending needs, as plain values."""

    base_url: str
    mail_from: str
    site_name: str
    secret_key: str
    confirm_max_age: int
    smtp: smtp.SmtpSettings

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id: one list for all of this site's alerts and digests."""
        host = urlsplit(self.base_url).hostname or "localhost"
        return f"{self.site_name} news alerts <news-alerts.{host}>"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings:
        return cls(
            base_url=config["BASE_URL"],
            mail_from=config["MAIL_FROM"],
            site_name=config["SITE_NAME"],
            secret_key=config["SECRET_KEY"],
            confirm_max_age=int(config["CONFIRM_MAX_AGE"]),
            smtp=smtp.SmtpSettings.from_url(
                config["SMTP_URL"], timeout=float(config["SMTP_TIMEOUT"])
            ),
        )


def confirm_token(
    settings: MailSettings, subscriber_id: int, nonce: str, changes: Choices | None
) -> str:
    payload: dict[str, Any] = {"s": subscriber_id, "n": nonce}
    if changes is not None:
        payload["c"] = changes.as_payload()
    return tokens.make(settings.secret_key, tokens.Purpose.CONFIRM, payload)


def confirmation(
    settings: MailSettings,
    subscriber: Subscriber,
    nonce: str,
    changes: Choices | None,
) -> bytes | None:
    """The double opt-in email. It holds no text the reader typed (keywords would let anyone
    mail any words to any address): only our words, the topics asked for, and a link."""
    if changes is None and subscriber.status is not SubscriberStatus.PENDING:
        return None  # confirmed (or gone) since the email was queued
    if changes is not None and subscriber.status is not SubscriberStatus.ACTIVE:
        return None
    token = confirm_token(settings, subscriber.id, nonce, changes)
    locale = (changes.locale if changes else None) or subscriber.locale
    if changes is None:
        asked = [(s.topic.label, FREQUENCY_LABELS[s.frequency]) for s in subscriber.subscriptions]
    else:
        session = object_session(subscriber)
        wanted = select(Topic).where(Topic.slug.in_(changes.topics))
        topics = list(session.scalars(wanted)) if session is not None else []
        asked = [(topic.label, FREQUENCY_LABELS[changes.frequency]) for topic in topics]
    context = {
        "asked": sorted(asked, key=lambda row: str(row[0])),
        "site_name": settings.site_name,
        "confirm_url": f"{settings.base_url}/confirm/{token}",
        "is_change": changes is not None,
        "valid_days": max(1, settings.confirm_max_age // 86400),
        "base_url": settings.base_url,
    }
    with i18n.using(locale):
        rendered = renderer().render("confirm", context)
    return message.build(rendered, sender=settings.mail_from, recipient=subscriber.email)


def welcome(settings: MailSettings, subscriber: Subscriber) -> bytes | None:
    """After confirming: what the reader follows, how often, and the link to change it all;
    None once it went out, or for a reader no longer active."""
    if subscriber.status is not SubscriberStatus.ACTIVE or subscriber.welcomed_at is not None:
        return None
    links = reader_links(settings, subscriber)
    with i18n.using(subscriber.locale):
        context = {
            "site_name": settings.site_name,
            "base_url": settings.base_url,
            "subscriptions": sorted(
                (
                    (subscription.topic.label, FREQUENCY_LABELS[subscription.frequency])
                    for subscription in subscriber.subscriptions
                ),
                key=lambda row: str(row[0]),
            ),
            "keywords": [keyword.phrase for keyword in subscriber.keywords],
            "keyword_frequency": (
                FREQUENCY_LABELS[subscriber.keywords[0].frequency] if subscriber.keywords else ""
            ),
            **links,
        }
        rendered = renderer().render("welcome", context)
    return list_message(settings, message.Skeleton.of(rendered), subscriber, links)


def send_welcome(
    session: Session, settings: MailSettings, subscriber_id: int
) -> smtp.Rejection | None:
    """Send the welcome once: recorded as sent in the same breath as the relay's 250 (a
    worker dying between the two is the only way it goes twice). Connection errors raise so
    the task can retry."""
    subscriber = session.get(Subscriber, subscriber_id)
    raw = welcome(settings, subscriber) if subscriber is not None else None
    if subscriber is None or raw is None:
        return None
    with smtp.connect(settings.smtp) as mailer, metrics.SMTP_SECONDS.labels("welcome").time():
        rejection = mailer.send(raw, message.envelope_sender(settings.mail_from), subscriber.email)
    metrics.replied("welcome", rejection)
    if rejection is None or rejection.permanent:
        subscriber.welcomed_at = now()
        session.commit()
    return rejection


def reader_links(settings: MailSettings, subscriber: Subscriber) -> dict[str, str]:
    """The links every alert and digest carries: manage, unsubscribe (one-click)."""
    unsubscribe = tokens.for_reader(
        settings.secret_key, tokens.Purpose.UNSUBSCRIBE, subscriber.id, subscriber.link_key
    )
    manage = tokens.for_reader(
        settings.secret_key, tokens.Purpose.MANAGE, subscriber.id, subscriber.link_key
    )
    return {
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/{unsubscribe}",
        "manage_url": f"{settings.base_url}/manage/{manage}",
    }


def list_message(
    settings: MailSettings, skeleton: message.Skeleton, reader: Subscriber, links: dict[str, str]
) -> bytes:
    """An email of the list (alert, digest, welcome) to one reader, their links filled in,
    with its one-click unsubscribe headers."""
    return message.fill(
        skeleton,
        sender=settings.mail_from,
        recipient=reader.email,
        links=links,
        headers=list_headers(settings, links["unsubscribe_url"]),
    )


def list_headers(settings: MailSettings, unsubscribe_url: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers: mailbox providers show an unsubscribe button from them."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": settings.list_id,
    }


def _local_time(subscriber: Subscriber, article: Article) -> str:
    """When the article came out, in the reader's zone and language."""
    try:
        local = article.published_at.astimezone(zone(subscriber.timezone))
    except (OverflowError, ValueError):
        local = article.published_at
    return i18n.long_datetime(local)


def local_date(subscriber: Subscriber, moment: datetime) -> str:
    """A day in the reader's zone and language."""
    return i18n.long_date(moment.astimezone(zone(subscriber.timezone)))


Shapes = dict[tuple[Any, ...], message.Skeleton]


def alert(
    settings: MailSettings,
    article: Article,
    subscriber: Subscriber,
    reason: Any | None,
    shapes: Shapes | None = None,
    last_before_cap: bool = False,
) -> bytes:
    """An instant alert for one article to one reader, saying what matched (a matching.Reason:
    a topic they follow or a keyword the article mentions). `last_before_cap`: the last one
    the reader's daily cap allows today, which says the rest will come in their digest.

    `shapes` keeps the alert rendered per shape (language, local time, reason) for one batch
    of this article: readers of the same shape differ by their links only.
    """
    links = reader_links(settings, subscriber)
    with i18n.using(subscriber.locale):
        published = _local_time(subscriber, article)
        cap = subscriber.daily_cap if last_before_cap else None
        key = (
            i18n.current(),
            article.version,
            published,
            reason and (reason.kind, str(reason.name)),
            cap,
        )
        skeleton = shapes.get(key) if shapes is not None else None
        if skeleton is None:
            context = {
                "site_name": settings.site_name,
                "base_url": settings.base_url,
                "article": article,
                "published": published,
                "reason": reason,
                "cap": cap,
                **message.markers(links),
            }
            skeleton = message.Skeleton.of(renderer().render("alert", context))
            if shapes is not None:
                shapes[key] = skeleton
    return list_message(settings, skeleton, subscriber, links)


MAX_SHAPES = 1_000  # digests rendered and kept per run (a shape: language, articles, why)


@dataclass(frozen=True)
class ArticleBlock:
    html: str
    text: str


class DigestRenderer:
    """Renders digests of one run: each article block once, only the personal parts per reader."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._blocks: dict[tuple[int, str, int, Any], ArticleBlock] = {}
        self._shapes: Shapes = {}

    def block(self, article: Article) -> ArticleBlock:
        """The article's part of a digest, rendered once per language of the run's readers
        and per content (an article changed mid-run is rendered again)."""
        key = (article.id, i18n.current(), article.version, article.updated_at)
        if key not in self._blocks:
            context = {"article": article, "published": i18n.long_date(article.published_at)}
            env = renderer().env
            self._blocks[key] = ArticleBlock(
                env.get_template("email/digest/article.html").render(context),
                env.get_template("email/digest/article.txt").render(context),
            )
        return self._blocks[key]

    def render(
        self,
        content: Any,
        run_id: int | None,
        test: bool = False,
        links: dict[str, str] | None = None,
    ) -> RenderedEmail:
        """`content` is a digests.DigestContent; `run_id` None for a preview."""
        reader = content.subscriber
        with i18n.using(reader.locale):
            return self._render(content, run_id, test, links)

    def _render(
        self, content: Any, run_id: int | None, test: bool, links: dict[str, str] | None
    ) -> RenderedEmail:
        reader = content.subscriber
        links = dict(links or reader_links(self.settings, reader))
        # The digest as a page (all of it, past the 50 the email shows): not for a preview.
        browser_url = links.pop("browser_url", None)
        if browser_url is None and run_id is not None:
            browser_url = self._browser_url(reader, run_id)
        context = {
            "site_name": self.settings.site_name,
            "base_url": self.settings.base_url,
            "frequency": content.frequency.value,
            "total": content.total,
            "more": content.more,
            "more_url": browser_url if content.more else None,
            "browser_url": browser_url,
            "day": i18n.long_date(content.until or now()),
            "groups": [
                (title, [(item, self.block(item.article)) for item in items])
                for title, items in content.groups
            ],
            # Every update is told (and recorded so); the email shows the newest, its page all.
            "updates": [
                (update, self.block(update.article), local_date(reader, update.revised_at))
                for update in content.updates[: revisions.MAX_UPDATES]
            ],
            "more_updates": max(len(content.updates) - revisions.MAX_UPDATES, 0),
            "updated_total": len(content.updates),
            "test": test,
            **links,
        }
        return renderer().render("digest", context)

    def message(self, content: Any, run_id: int | None, test: bool = False) -> bytes:
        """The reader's digest as bytes: rendered once per shape (language, the articles and
        why each is there), then filled with the reader's links."""
        reader = content.subscriber
        links = reader_links(self.settings, reader)
        if run_id is not None:
            links["browser_url"] = self._browser_url(reader, run_id)
        with i18n.using(reader.locale):
            key = (
                i18n.current(),
                content.frequency,
                content.total,
                content.more,
                i18n.long_date(content.until or now()),
                test,
                tuple(
                    (
                        str(title),
                        tuple(
                            (
                                item.article.id,
                                item.article.version,
                                item.article.updated_at,
                                item.reason.kind,
                                str(item.reason.name),
                            )
                            for item in items
                        ),
                    )
                    for title, items in content.groups
                ),
                tuple(
                    (
                        u.article.id,
                        u.article.version,
                        u.article.updated_at,
                        tuple(u.revision_ids),
                        local_date(reader, u.revised_at),
                    )
                    for u in content.updates
                ),
            )
            skeleton = self._shapes.get(key)
            if skeleton is None:
                if len(self._shapes) >= MAX_SHAPES:
                    self._shapes.clear()
                rendered = self._render(content, run_id, test, message.markers(links))
                skeleton = self._shapes[key] = message.Skeleton.of(rendered)
        return list_message(self.settings, skeleton, reader, links)

    def _browser_url(self, reader: Subscriber, run_id: int) -> str:
        token = tokens.for_reader(
            self.settings.secret_key, tokens.Purpose.DIGEST, reader.id, reader.link_key, r=run_id
        )
        return f"{self.settings.base_url}/digest/{token}"
