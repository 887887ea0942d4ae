"""An alert or a digest rendered once per shape and filled per reader is, to every reader,
exactly the email rendered for them alone: their own links, nobody else's, valid MIME."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from alerts.digests import DigestContent, DigestItem
from alerts.mail import emails, message
from alerts.mail.render import RenderedEmail
from alerts.matching import Reason
from alerts.models import Frequency, Topic

import factories


def parts(raw: bytes) -> tuple[str, str, str, str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return str(parsed["Subject"]), str(parsed["List-Unsubscribe"]), text, html


def assert_short_lines(raw: bytes) -> None:
    """RFC 2045: no quoted-printable line longer than 76 characters."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"\n" not in body.replace(b"\r\n", b"")


@pytest.fixture(autouse=True)
def one_second(frozen_clock: Any) -> None:
    """Signed links carry the second they were made (by the service clock): the two renders
    compared must not straddle a second."""


def test_alerts_filled_from_shapes_equal_alerts_rendered_one_by_one(
    app: Any, session: Session
) -> None:
    settings = emails.MailSettings.from_config(app.config)
    wipo = session.query(Topic).filter_by(slug="wipo").one()
    article = factories.article(
        session,
        topics=["wipo"],
        title="WIPO members agree a broadcasting treaty text = progress",
        published_at=datetime(2026, 11, 28, 23, 30, tzinfo=UTC),
    )
    readers = [
        factories.subscriber(session, ["wipo"], locale=locale, timezone=zone)
        for locale, zone in [
            ("en", "UTC"),
            ("en", "UTC"),
            ("fr", "Europe/Paris"),
            ("ar", "Asia/Riyadh"),
            ("en", "America/New_York"),
        ]
    ]
    reasons = [
        Reason("topic", wipo.label, wipo.id),
        Reason("topic", wipo.label, wipo.id),
        Reason("keyword", "broadcasting"),
        None,
        Reason("topic", wipo.label, wipo.id),
    ]
    shapes: emails.Shapes = {}
    for reader, reason in zip(readers, reasons, strict=True):
        shared = emails.alert(settings, article, reader, reason, shapes)
        alone = emails.alert(settings, article, reader, reason)
        assert parts(shared) == parts(alone)
        assert_short_lines(shared)
        links = emails.reader_links(settings, reader)
        _subject, unsubscribe, text, html = parts(shared)
        assert unsubscribe == f"<{links['unsubscribe_url']}>"
        assert links["manage_url"] in text and links["manage_url"] in html
        for other in readers:
            if other is not reader:
                assert emails.reader_links(settings, other)["manage_url"] not in text + html
    # The two English readers in UTC shared one rendering; the others each had their own.
    assert len(shapes) == 4


def test_digests_filled_from_shapes_equal_digests_rendered_one_by_one(
    app: Any, session: Session
) -> None:
    settings = emails.MailSettings.from_config(app.config)
    wipo = session.query(Topic).filter_by(slug="wipo").one()
    stories = [
        factories.article(session, topics=["wipo"], title=f"Story {number} – Genève")
        for number in range(3)
    ]
    renderer = emails.DigestRenderer(settings)
    readers = [factories.subscriber(session, ["wipo"], locale=code) for code in ("en", "en", "zh")]
    for reader in readers:
        items = [DigestItem(story, Reason("topic", wipo.label, wipo.id)) for story in stories]
        content = DigestContent(
            reader,
            Frequency.DAILY,
            [(wipo.label, items)],
            article_ids=[story.id for story in stories],
            until=datetime(2026, 11, 29, 7, tzinfo=UTC),
        )
        shared = renderer.message(content, run_id=7)
        links = emails.reader_links(settings, reader)
        links["browser_url"] = renderer._browser_url(reader, 7)
        rendered = emails.DigestRenderer(settings).render(content, 7, links=dict(links))
        alone = message.build(
            rendered,
            sender=settings.mail_from,
            recipient=reader.email,
            headers=emails.list_headers(settings, links["unsubscribe_url"]),
        )
        assert parts(shared) == parts(alone)
        assert links["browser_url"] in parts(shared)[2]
        assert_short_lines(shared)
    assert len(renderer._shapes) == 2  # English once, Chinese once


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200,
        "trailing space \nand = signs = here\n",
        "ends without a newline ",
        "é" * 90,
    ],
)
def test_segments_around_a_link_decode_to_the_text_with_the_link(text: str) -> None:
    marker = message.markers({"manage_url": "x"})["manage_url"]
    url = "https://news.example.org/manage/" + "Ab9_-." * 20
    rendered = RenderedEmail("Subject", f"{text}{marker}{text}", f"<p>{text}{marker}</p>")
    raw = message.fill(
        message.Skeleton.of(rendered),
        sender="Alerts <alerts@example.org>",
        recipient="reader@example.org",
        links={"manage_url": url},
    )
    _subject, _unsubscribe, plain, html = parts(raw)
    assert plain.replace("\r\n", "\n") == f"{text}{url}{text}"
    assert html.replace("\r\n", "\n") == f"<p>{text}{url}</p>"
    assert_short_lines(raw)


def test_a_link_in_a_subject_is_refused() -> None:
    marker = message.markers({"manage_url": "x"})["manage_url"]
    with pytest.raises(ValueError, match="subject"):
        message.Skeleton.of(RenderedEmail(f"See {marker}", "text", "<p>html</p>"))
