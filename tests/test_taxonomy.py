"""The topic tree: seeding is complete, stable and idempotent."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from alerts import taxonomy
from alerts.models import Language, Subscription, Topic, TopicKind


def test_seed_twice_changes_nothing(session: Session) -> None:
    session.execute(delete(Subscription))
    session.execute(delete(Topic).where(Topic.parent_id.is_not(None)))
    session.execute(delete(Topic))
    session.execute(delete(Language))
    session.commit()
    first = taxonomy.seed(session)
    session.commit()
    assert first.created == 31 and first.updated == 0
    second = taxonomy.seed(session)
    assert not second.changed


def test_seed_puts_back_a_renamed_topic(session: Session) -> None:
    wipo = session.scalars(select(Topic).where(Topic.slug == "wipo")).one()
    wipo.name = "Renamed"
    session.commit()
    report = taxonomy.seed(session)
    assert report.updated == 1
    assert wipo.name == "WIPO"


def test_tree_has_sections_venues_with_regions_and_themes(session: Session) -> None:
    roots = {node.slug: node for node in taxonomy.tree(session)}
    assert {"copyright", "patents", "trademarks", "opinions", "people-news"} <= set(roots)
    assert roots["copyright"].kind is TopicKind.SECTION and roots["copyright"].children == ()
    venues = [child.slug for child in roots["venues"].children]
    assert venues[:6] == [
        "wipo",
        "wto-trips",
        "who",
        "itu-icann",
        "un-other",
        "bilateral-regional-negotiations",
    ]
    assert venues[6:] == [
        "africa",
        "asia-pacific",
        "europe",
        "latin-america-caribbean",
        "north-america",
    ]
    assert len(roots["themes"].children) == 8
    assert [title for title, _ in taxonomy.groups(session)] == ["Sections", "Venues", "Themes"]


def test_languages_are_seeded_in_site_order(session: Session) -> None:
    assert [language.code for language in taxonomy.languages(session)] == [
        "en",
        "fr",
        "es",
        "zh",
        "ar",
    ]
