"""Emails that follow up alerts: the round-up at the end of a reader's quiet hours, and the
correction of an article a reader got as an alert."""

from __future__ import annotations

from typing import Any

from alerts import i18n
from alerts.mail import message
from alerts.mail.emails import (
    DigestRenderer,
    MailSettings,
    Shapes,
    list_message,
    local_date,
    reader_links,
)
from alerts.mail.render import renderer
from alerts.models import Subscriber


def correction(
    settings: MailSettings,
    subscriber: Subscriber,
    revision: Any,
    sent: Any,
    shapes: Shapes | None = None,
) -> bytes:
    """The short email that tells a reader who got an article as an alert that its publisher
    corrected it (a models.ArticleRevision): what it said when they got it (`sent`, the first
    change after the version they have), and what it says now."""
    links = reader_links(settings, subscriber)
    with i18n.using(subscriber.locale):
        corrected = local_date(subscriber, revision.created_at)
        key = ("correction", i18n.current(), revision.id, sent.id, corrected)
        skeleton = shapes.get(key) if shapes is not None else None
        if skeleton is None:
            context = {
                "site_name": settings.site_name,
                "base_url": settings.base_url,
                "article": revision.article,
                "revision": revision,
                "was_title": sent.old_title,
                "was_summary": sent.old_summary_text,
                "corrected": corrected,
                **message.markers(links),
            }
            skeleton = message.Skeleton.of(renderer().render("correction", context))
            if shapes is not None:
                shapes[key] = skeleton
    return list_message(settings, skeleton, subscriber, links)


def roundup(settings: MailSettings, subscriber: Subscriber, items: list[Any]) -> bytes:
    """The email at the end of a reader's quiet hours: every alert held during them (a list
    of digest items: article and reason), newest first."""
    links = reader_links(settings, subscriber)
    blocks = DigestRenderer(settings)
    with i18n.using(subscriber.locale):
        context = {
            "site_name": settings.site_name,
            "base_url": settings.base_url,
            "items": [(item, blocks.block(item.article)) for item in items],
            **message.markers(links),
        }
        skeleton = message.Skeleton.of(renderer().render("roundup", context))
    return list_message(settings, skeleton, subscriber, links)
