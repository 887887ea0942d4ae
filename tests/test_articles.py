"""Publishing: validation of every field, sanitizing, one article per guid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import articles
from alerts.models import Article

import factories


def parse(session: Session, **overrides: Any) -> articles.ArticleInput:
    return articles.parse(session, factories.article_payload(**overrides))


def errors(session: Session, payload: Any) -> dict[str, str]:
    with pytest.raises(articles.InvalidArticle) as raised:
        articles.parse(session, payload)
    return raised.value.errors


def test_reference_article_parses(session: Session) -> None:
    article = parse(session)
    assert article.title.startswith("ITU Plenipotentiary Conference")
    assert article.author == "Monika Ermert"
    assert article.published_at == datetime(2014, 11, 5, 18, 0, tzinfo=UTC)
    assert article.summary_text.startswith("The much belaboured takeover")
    assert len(article.topic_ids) == 2


def test_guid_defaults_to_the_url(session: Session) -> None:
    payload = factories.article_payload()
    del payload["guid"]
    assert articles.parse(session, payload).guid == payload["url"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "ftp://news.example.org/a"}, "url"),
        ({"url": "https://news.example.org/a b"}, "url"),
        ({"url": "https://news.example.org/a\r\nX-Injected: 1"}, "url"),
        ({"url": None}, "url"),
        ({"title": ""}, "title"),
        ({"title": 42}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"title": "nul\x00byte"}, "title"),
        ({"summary": "x" * (articles.MAX_SUMMARY + 1)}, "summary"),
        ({"language": "klingon"}, "language"),
        ({"published_at": "yesterday"}, "published_at"),
        ({"topics": "wipo"}, "topics"),
        ({"topics": ["wipo", "Not A Topic"]}, "topics"),
        ({"urgent": "yes"}, "urgent"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_named(session: Session, overrides: dict[str, Any], field: str) -> None:
    payload = factories.article_payload(**overrides)
    if overrides.get("url", "") is None:
        del payload["url"]
    assert field in errors(session, payload)


def test_unknown_topics_are_listed(session: Session) -> None:
    found = errors(session, factories.article_payload(topics=["wipo", "Quantum", "Astrology"]))
    assert found["topics"] == "unknown topic: Quantum, Astrology"


def test_not_an_object_is_refused(session: Session) -> None:
    assert errors(session, ["a", "list"]) == {"article": "must be a JSON object"}


def test_hostile_title_is_one_line(session: Session) -> None:
    article = parse(session, title="Breaking\r\nBcc: victim@example.org\n<script>x</script>")
    assert article.title == "Breaking Bcc: victim@example.org <script>x</script>"


def test_summary_is_sanitized_and_has_a_text_version(session: Session) -> None:
    article = parse(
        session,
        summary='<p onclick="x()">One &amp; <b>two</b><script>alert(1)</script></p>'
        '<img src="https://t.example/p.gif" onerror="x()"><ul><li>A</li><li>B</li></ul>'
        '<a href="javascript:alert(1)">bad</a> <a href="https://ok.example/">good</a>',
    )
    assert "<script" not in article.summary_html and "onclick" not in article.summary_html
    assert "<img" not in article.summary_html and "javascript:" not in article.summary_html
    assert (
        '<a href="https://ok.example/" rel="noopener noreferrer">good</a>' in article.summary_html
    )
    assert article.summary_text == "One & two\n- A\n- B\nbad good"


def test_language_can_come_from_a_category_name(session: Session) -> None:
    payload = factories.article_payload(topics=["WIPO", "Français"])
    del payload["language"]
    assert articles.parse(session, payload).language_code == "fr"


def test_same_guid_updates_and_is_not_new(session: Session) -> None:
    payload = factories.article_payload()
    first = articles.publish(session, articles.parse(session, payload))
    session.commit()
    payload["title"] = "ITU Plenipotentiary: corrected title"
    second = articles.publish(session, articles.parse(session, payload))
    session.commit()
    assert first.created and not second.created
    assert second.article_id == first.article_id
    assert second.changed == ("title",)
    assert session.scalar(select(func.count()).select_from(Article)) == 1
    stored = session.get(Article, first.article_id)
    assert stored is not None and stored.title == "ITU Plenipotentiary: corrected title"


def test_republishing_unchanged_changes_nothing(session: Session) -> None:
    payload = factories.article_payload()
    articles.publish(session, articles.parse(session, payload))
    session.commit()
    again = articles.publish(session, articles.parse(session, payload))
    assert again.changed == ()
