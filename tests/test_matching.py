"""Who gets which article: topic tree, language, status, frequency, each reader once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from alerts import digests, matching, subscriptions
from alerts.clock import now
from alerts.models import Frequency, Subscriber, SubscriberStatus

import factories

IMMEDIATE = (Frequency.IMMEDIATE,)


def test_subscriber_of_the_topic_matches(session: Session) -> None:
    reader = factories.subscriber(session, ["itu-icann"])
    other = factories.subscriber(session, ["patents"])
    article = factories.article(session, topics=["ITU/ICANN"])
    matched = matching.matching_subscribers(session, article)
    assert reader.id in matched and other.id not in matched


def test_parent_topic_covers_its_branch(session: Session) -> None:
    venues = factories.subscriber(session, ["venues"])
    factories.subscriber(session, ["themes"])  # another branch: must not match
    article = factories.article(session, topics=["wipo"])
    assert matching.matching_subscribers(session, article) == [venues.id]


def test_language_must_be_one_of_the_readers(session: Session) -> None:
    english = factories.subscriber(session, ["wipo"], languages=("en",))
    french = factories.subscriber(session, ["wipo"], languages=("fr",))
    both = factories.subscriber(session, ["wipo"], languages=("en", "fr"))
    article = factories.article(session, topics=["wipo"], language="fr")
    assert matching.matching_subscribers(session, article) == [french.id, both.id]
    assert english.id not in matching.matching_subscribers(session, article)


def test_only_active_readers_match(session: Session) -> None:
    active = factories.subscriber(session, ["wipo"])
    for status in (
        SubscriberStatus.PENDING,
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED,
    ):
        factories.subscriber(session, ["wipo"], status=status)
    article = factories.article(session, topics=["wipo"])
    assert matching.matching_subscribers(session, article) == [active.id]


def test_a_reader_matching_two_topics_comes_once(session: Session) -> None:
    reader = factories.subscriber(session, ["wipo", "venues", "health-ip"])
    article = factories.article(session, topics=["wipo", "health-ip"])
    assert matching.matching_subscribers(session, article) == [reader.id]


def test_frequency_of_the_matching_subscription_decides(session: Session) -> None:
    # WIPO at once, the rest of Venues weekly (GOV.UK style: frequency per topic).
    reader = factories.subscriber(
        session, {"wipo": Frequency.IMMEDIATE, "venues": Frequency.WEEKLY}
    )
    wipo = factories.article(session, topics=["wipo"])
    wto = factories.article(session, topics=["wto-trips"])
    assert matching.matching_subscribers(session, wipo, IMMEDIATE) == [reader.id]
    assert matching.matching_subscribers(session, wto, IMMEDIATE) == []
    assert matching.matching_subscribers(session, wto, (Frequency.WEEKLY,)) == [reader.id]


def test_pages_cover_every_match_once_in_order(session: Session) -> None:
    readers = [factories.subscriber(session, [topic]).id for topic in ["wipo", "venues", "who"] * 9]
    article = factories.article(session, topics=["wipo", "who"])
    scope = matching.scope(session, article)
    pages = list(matching.subscriber_pages(session, scope, IMMEDIATE, batch_size=4))
    assert all(len(page) <= 4 for page in pages)
    flat = [subscriber_id for page in pages for subscriber_id in page]
    assert flat == sorted(readers)


def test_article_without_topics_matches_nobody(session: Session) -> None:
    factories.subscriber(session, ["wipo"])
    article = factories.article(session, topics=[])
    assert matching.matching_subscribers(session, article) == []


def test_why_names_the_most_specific_followed_topic(session: Session) -> None:
    both = factories.subscriber(session, ["venues", "wipo"])
    parent_only = factories.subscriber(session, ["venues"])
    article = factories.article(session, topics=["wipo"])
    scope = matching.scope(session, article)
    why = matching.reasons(session, scope, [both.id, parent_only.id], [Frequency.IMMEDIATE])
    assert why[both.id] == matching.Reason("topic", "WIPO")
    assert why[parent_only.id] == matching.Reason("topic", "Venues")


def test_topics_added_later_to_a_branch_are_covered(session: Session) -> None:
    from alerts.models import Topic, TopicKind

    reader = factories.subscriber(session, ["venues"])
    venues = session.query(Topic).filter_by(slug="venues").one()
    session.add(Topic(slug="unesco", name="UNESCO", kind=TopicKind.VENUE, parent=venues))
    session.commit()
    article = factories.article(session, topics=["unesco"])
    assert matching.matching_subscribers(session, article) == [reader.id]


# --- one rule: alerts and digests give the same readers the same articles, for the same reasons


PROFILES: list[dict[str, Any]] = [
    {"topics": ["venues"]},  # a parent covers its branch
    {"topics": ["wipo"], "languages": ("fr",)},  # French only
    {"topics": ["wipo", "venues"], "languages": ("en", "fr")},  # the most specific is named
    {"topics": ["copyright"], "keywords": ["patent"]},  # a topic named before a keyword
    {"topics": ["people-news"], "keywords": ["broadcasting treaty"]},  # a phrase
    {"topics": ["people-news"], "keywords": ["patent"], "within": True},  # not in its topics
    {"topics": ["venues"], "keywords": ["treaty"], "within": True},  # keyword, within topics
    {"topics": ["patents"], "keywords": ["WIPO", "copyright"], "within": True},
    {"topics": ["trademarks"], "paused": True},  # paused: nothing
]
ARTICLES: list[dict[str, Any]] = [
    {"title": "Broadcasting treaty talks stall at WIPO", "topics": ["WIPO"]},
    {"title": "Le traité sur la radiodiffusion", "topics": ["WIPO"], "language": "fr"},
    {"title": "Patent pools meet copyright", "topics": ["Copyright"]},
    {"title": "A patent office opens in Geneva", "topics": ["Patents"]},
    {"title": "Treaty news of the week", "topics": ["People News"]},
    {"title": "Trademarks in Africa", "topics": ["Trademarks", "Africa"]},
]


def _reader_like(session: Session, profile: dict[str, Any], frequency: Frequency) -> Subscriber:
    reader = factories.subscriber(
        session,
        dict.fromkeys(profile["topics"], frequency),
        languages=profile.get("languages", ("en",)),
    )
    if profile.get("keywords"):
        subscriptions.add_keywords(session, reader, profile["keywords"], frequency)
    reader.keywords_within_topics = bool(profile.get("within"))
    if profile.get("paused"):
        reader.paused_until = now() + timedelta(days=7)
    session.commit()
    return reader


def test_alerts_and_digests_share_one_rule(session: Session) -> None:
    twins = [
        (
            _reader_like(session, profile, Frequency.IMMEDIATE),
            _reader_like(session, profile, Frequency.DAILY),
        )
        for profile in PROFILES
    ]
    published = [factories.article(session, **overrides) for overrides in ARTICLES]

    # Instant alerts: who each article's fan-out reaches, and the "why" of each alert.
    alerted: dict[int, set[tuple[int, matching.Reason]]] = {}
    for article in published:
        scope = matching.scope(session, article)
        readers = matching.matching_subscribers(session, article, [Frequency.IMMEDIATE])
        why = matching.reasons(session, scope, readers, [Frequency.IMMEDIATE])
        assert set(why) == set(readers)
        for reader_id in readers:
            alerted.setdefault(reader_id, set()).add((article.id, why[reader_id]))

    # Daily digests of the twin readers, built as a digest run builds them.
    contents = digests.build_contents(session, Frequency.DAILY, [daily.id for _, daily in twins])
    for (instant, daily), profile in zip(twins, PROFILES, strict=True):
        content = contents.get(daily.id)
        in_digest = (
            {(item.article.id, item.reason) for _, items in content.groups for item in items}
            if content is not None
            else set()
        )
        assert in_digest == alerted.get(instant.id, set()), profile

    # And the rule was exercised, not vacuous: topics, keywords, languages and "within".
    reasons = {reason for pairs in alerted.values() for _, reason in pairs}
    assert matching.Reason("topic", "WIPO") in reasons
    assert matching.Reason("topic", "Venues") in reasons
    assert matching.Reason("keyword", "broadcasting treaty") in reasons
    assert matching.Reason("keyword", "treaty") in reasons
    french = twins[1][0].id
    assert {article_id for article_id, _ in alerted[french]} == {published[1].id}
    assert twins[5][0].id not in alerted  # "patent" outside its topics
    assert twins[8][0].id not in alerted  # paused
