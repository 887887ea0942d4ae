"""The topic tree: seeding is complete, stable and idempotent."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alerts import taxonomy
from alerts.models import Language, Subscription, Topic, TopicAlias, TopicKind


def test_seed_twice_changes_nothing(session: Session) -> None:
    session.execute(delete(Subscription))
    session.execute(delete(TopicAlias))
    session.execute(delete(Topic).where(Topic.parent_id.is_not(None)))
    session.execute(delete(Topic))
    session.execute(delete(Language))
    session.commit()
    first = taxonomy.seed(session)
    session.commit()
    assert first.updated == 0
    assert session.scalar(select(func.count()).select_from(Topic)) == 26
    assert session.scalar(select(func.count()).select_from(Language)) == 5
    aliases = session.scalar(select(func.count()).select_from(TopicAlias))
    assert first.created == 26 + 5 + aliases
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


def test_site_category_names_resolve_to_topics(session: Session) -> None:
    from alerts.articles import resolve_topics

    filed_under = [
        "IP Policies",
        "Language",
        "Themes",
        "Venues",
        "Access to Knowledge/ Education",
        "Copyright Policy",
        "English",
        "ITU/ICANN",
        "Information and Communications Technology/ Broadcasting",
        "Trademarks/Geographical Indications/Domains",
    ]
    topic_ids, language, unknown = resolve_topics(session, filed_under)
    slugs = {session.get(Topic, topic_id).slug for topic_id in topic_ids}  # type: ignore[union-attr]
    assert slugs == {
        "themes",
        "venues",
        "access-to-knowledge",
        "copyright",
        "itu-icann",
        "internet-governance",
        "trademarks",
    }
    assert language == "en"
    assert unknown == []


def test_alias_keys_ignore_case_accents_and_punctuation() -> None:
    assert taxonomy.alias_key("ITU/ICANN") == taxonomy.alias_key("itu - icann")
    assert taxonomy.alias_key("Français") == taxonomy.alias_key("francais")
    assert taxonomy.alias_key("Health & IP") == taxonomy.alias_key("health-ip")
