"""Who gets which article: topic tree, language, status, frequency, each reader once."""

from __future__ import annotations

from sqlalchemy.orm import Session

from alerts import matching
from alerts.models import Frequency, SubscriberStatus

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
    why = matching.matched_topics(session, scope, [both.id, parent_only.id])
    assert why[both.id].slug == "wipo"
    assert why[parent_only.id].slug == "venues"


def test_topics_added_later_to_a_branch_are_covered(session: Session) -> None:
    from alerts.models import Topic, TopicKind

    reader = factories.subscriber(session, ["venues"])
    venues = session.query(Topic).filter_by(slug="venues").one()
    session.add(Topic(slug="unesco", name="UNESCO", kind=TopicKind.VENUE, parent=venues))
    session.commit()
    article = factories.article(session, topics=["unesco"])
    assert matching.matching_subscribers(session, article) == [reader.id]
