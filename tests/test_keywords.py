"""Keyword alerts: whole words, case and accents ignored, phrases, "only within my topics"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from alerts import matching, subscriptions
from alerts.errors import InvalidInput
from alerts.mail.sink import MailSink
from alerts.models import Frequency, Keyword, Subscriber

import factories
from support import CLOCK, confirm_link_in, csrf_from

AUTH = {"Authorization": "Bearer dev-api-token"}


def follow(
    session: Session,
    reader: Subscriber,
    *phrases: str,
    within: bool = False,
    frequency: Frequency = Frequency.IMMEDIATE,
) -> None:
    subscriptions.add_keywords(session, reader, phrases, frequency)
    reader.keywords_within_topics = within
    session.flush()
    from alerts import digests

    digests.sync_schedules(session, reader)
    session.commit()


@pytest.mark.parametrize(
    ("phrase", "text", "found"),
    [
        ("ICANN", "The ICANN board met", True),
        ("ICANN", "icann's reform is slow", True),
        ("ICANN", "ICANNOT is not a word", False),
        ("ICANN", "PRE-ICANN talks", True),
        ("TRIPS waiver", "the TRIPS Waiver debate", True),
        ("TRIPS waiver", "a waiver of TRIPS rules", False),
        ("propriété intellectuelle", "Propriete Intellectuelle: the treaty", True),
        ("Propriete intellectuelle", "La propriété intellectuelle en Afrique", True),
        ("Müller", "Interview with MULLER", True),
        ("WHO", "whole world", False),
    ],
)
def test_whole_words_case_and_accent_insensitive(phrase: str, text: str, found: bool) -> None:
    article: Any = type("A", (), {"title": text, "summary_text": ""})()
    assert matching.ArticleWords.of(article).contains(matching.words(phrase)) is found


def test_parse_keywords() -> None:
    assert subscriptions.parse_keywords('ICANN\n"TRIPS waiver"\n\nicann\n  spaced   out  ') == (
        "ICANN",
        "TRIPS waiver",
        "spaced out",
    )
    with pytest.raises(InvalidInput, match="at most 20"):
        subscriptions.parse_keywords("\n".join(f"word{n}" for n in range(21)))
    with pytest.raises(InvalidInput, match="no word"):
        subscriptions.parse_keywords("!!!")
    with pytest.raises(InvalidInput, match="under 100"):
        subscriptions.parse_keywords("x" * 101)


def test_keyword_readers_get_matching_articles(session: Session) -> None:
    keyword_only = factories.subscriber(session, ["patents"])
    follow(session, keyword_only, "ICANN")
    within = factories.subscriber(session, ["itu-icann"])
    follow(session, within, "ICANN", within=True)
    within_other_topic = factories.subscriber(session, ["patents"])
    follow(session, within_other_topic, "ICANN", within=True)
    topic_only = factories.subscriber(session, ["itu-icann"])

    about_icann = factories.article(
        session, topics=["itu-icann"], title="ICANN's accountability reform"
    )
    mentions_icann_elsewhere = factories.article(
        session, topics=["copyright"], title="Copyright office talks to ICANN"
    )
    no_mention = factories.article(session, topics=["itu-icann"], title="ITU plenipotentiary opens")

    assert matching.matching_subscribers(session, about_icann) == sorted(
        [keyword_only.id, within.id, topic_only.id]
    )
    assert matching.matching_subscribers(session, mentions_icann_elsewhere) == [keyword_only.id]
    # "Only within my topics": a topic match is not enough without the keyword.
    assert matching.matching_subscribers(session, no_mention) == [topic_only.id]
    assert within_other_topic.id not in matching.matching_subscribers(session, about_icann)


def test_pages_stay_correct_with_keywords_and_topics(session: Session) -> None:
    readers = []
    for number in range(30):
        reader = factories.subscriber(session, ["wipo"] if number % 3 else ["patents"])
        if number % 2:
            follow(session, reader, "broadcasting treaty")
        readers.append(reader)
    article = factories.article(
        session, topics=["wipo"], title="WIPO: the broadcasting treaty at last"
    )
    scope = matching.scope(session, article)
    pages = list(matching.subscriber_pages(session, scope, (Frequency.IMMEDIATE,), batch_size=4))
    flat = [reader for page in pages for reader in page]
    expected = [r.id for n, r in enumerate(readers) if n % 3 or n % 2]
    assert flat == expected and all(len(page) <= 4 for page in pages)


def test_alert_says_which_keyword(client: FlaskClient, session: Session, sink: MailSink) -> None:
    reader = factories.subscriber(session, ["patents"])
    follow(session, reader, "TRIPS waiver")
    client.post(
        "/api/v1/articles",
        json=factories.article_payload(
            topics=["wto-trips"], title="Ministers revisit the TRIPS waiver"
        ),
        headers=AUTH,
    )
    [message] = sink.store.to(reader.email)
    assert 'You get this because it mentions "TRIPS waiver"' in message.body("plain")


def test_signup_with_keywords_then_confirm(
    client: FlaskClient, session: Session, sink: MailSink
) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'name="keywords"' in page and 'name="within_topics"' in page
    client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page),
            "email": "kw@example.org",
            "keywords": "ICANN\nTRIPS waiver",
            "languages": ["en"],
            "frequency": "daily",
        },
    )
    client.get(
        confirm_link_in(sink.store.all()[0].body("plain")).removeprefix("http://alerts.test")
    )
    reader = session.query(Subscriber).one()
    assert [(k.phrase, k.frequency) for k in reader.keywords] == [
        ("ICANN", Frequency.DAILY),
        ("TRIPS waiver", Frequency.DAILY),
    ]
    from alerts.models import DigestSchedule

    # Keywords alone bring a daily digest schedule.
    assert [
        s.frequency for s in session.query(DigestSchedule).filter_by(subscriber_id=reader.id)
    ] == [Frequency.DAILY]
    too_many = client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_from(page),
            "email": "many@example.org",
            "keywords": "\n".join(f"w{n}" for n in range(21)),
            "languages": ["en"],
            "frequency": "daily",
        },
    )
    assert too_many.status_code == 400 and "at most 20 keywords" in too_many.get_data(as_text=True)


def test_preference_centre_edits_keywords(client: FlaskClient, session: Session) -> None:
    from alerts import tokens

    reader = factories.subscriber(session, ["wipo"])
    follow(session, reader, "ICANN")
    link = f"/manage/{tokens.for_reader('test-secret', tokens.Purpose.MANAGE, reader.id, reader.link_key)}"
    page = client.get(link).get_data(as_text=True)
    assert ">ICANN</textarea>" in page
    client.post(
        link,
        data={
            "csrf_token": csrf_from(page),
            "action": "save",
            "topics": ["wipo"],
            "frequency-wipo": "immediate",
            "keywords": "Geographical indications\nUPOV",
            "keyword_frequency": "weekly",
            "within_topics": "yes",
            "languages": ["en"],
            "timezone": "UTC",
            "send_hour": "8",
            "send_weekday": "0",
        },
    )
    session.expire_all()
    assert [(k.phrase, k.frequency) for k in reader.keywords] == [
        ("Geographical indications", Frequency.WEEKLY),
        ("UPOV", Frequency.WEEKLY),
    ]
    assert reader.keywords_within_topics is True
    assert session.query(Keyword).count() == 2


def test_keyword_articles_come_in_digests_under_your_keywords(
    app: Flask, session: Session, sink: MailSink, frozen_clock: Any
) -> None:
    from worker import tasks

    monday = datetime(2026, 11, 2, tzinfo=UTC)
    frozen_clock(monday)
    reader = factories.subscriber(session, {"copyright": Frequency.DAILY})
    follow(session, reader, "ICANN", frequency=Frequency.DAILY)
    factories.article(
        session,
        published_at=monday + timedelta(hours=1),
        topics=["itu-icann"],
        title="ICANN elects a chair",
    )
    factories.article(
        session,
        published_at=monday + timedelta(hours=2),
        topics=["copyright"],
        title="Copyright treaty",
    )
    CLOCK.freeze(monday + timedelta(hours=8))
    with app.app_context():
        tasks.run_due_digests()
    [message] = sink.store.to(reader.email)
    text = message.body("plain")
    assert "== Copyright ==" in text and "== Your keywords ==" in text
    assert 'It mentions "ICANN", a keyword you follow.' in text


def test_keyword_pages_never_cut_a_reader_in_two(session: Session) -> None:
    """With small pages, a reader whose matching keyword sits past the row limit is kept."""
    readers = []
    for _ in range(6):
        reader = factories.subscriber(session, ["patents"])
        # Several keywords whose first word is in the article; only the last phrase matches.
        follow(session, reader, *[f"alpha beta{n}" for n in range(8)], "alpha omega")
        readers.append(reader)
    article = factories.article(session, topics=["copyright"], title="alpha omega and more alpha")
    scope = matching.scope(session, article)
    for size in (1, 2, 3, 5):
        pages = list(
            matching.subscriber_pages(session, scope, (Frequency.IMMEDIATE,), batch_size=size)
        )
        assert [r for page in pages for r in page] == [r.id for r in readers], size
