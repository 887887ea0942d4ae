"""The topic tree of the reference site (sections, venues, themes) and its languages."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.i18n import Localized, Text
from alerts.models import Language, Topic, TopicAlias, TopicKind
from alerts.topic_tree import TopicTree


@dataclass(frozen=True)
class TopicSeed:
    slug: str
    name: str
    kind: TopicKind
    children: tuple[TopicSeed, ...] = field(default=())


def _branch(slug: str, name: str, kind: TopicKind, *children: tuple[str, str]) -> TopicSeed:
    return TopicSeed(slug, name, kind, tuple(TopicSeed(s, n, kind) for s, n in children))


# Slugs are stable identifiers (links, the API, CSV files): rename a topic, never its slug.
TOPIC_TREE: tuple[TopicSeed, ...] = (
    TopicSeed("copyright", "Copyright", TopicKind.SECTION),
    TopicSeed("patents", "Patents", TopicKind.SECTION),
    TopicSeed("trademarks", "Trademarks", TopicKind.SECTION),
    TopicSeed("opinions", "Opinions", TopicKind.SECTION),
    TopicSeed("people-news", "People News", TopicKind.SECTION),
    _branch(
        "venues",
        "Venues",
        TopicKind.VENUE,
        ("wipo", "WIPO"),
        ("wto-trips", "WTO/TRIPS"),
        ("who", "WHO"),
        ("itu-icann", "ITU/ICANN"),
        ("un-other", "United Nations \N{EN DASH} other"),
        ("bilateral-regional-negotiations", "Bilateral/Regional Negotiations"),
        ("africa", "Africa"),
        ("asia-pacific", "Asia/Pacific"),
        ("europe", "Europe"),
        ("latin-america-caribbean", "Latin America/Caribbean"),
        ("north-america", "North America"),
    ),
    _branch(
        "themes",
        "Themes",
        TopicKind.THEME,
        ("access-to-knowledge", "Access to Knowledge/Open Innovation & Science"),
        ("food-security", "Food Security/Agriculture/Genetic Resources"),
        ("finance", "Finance"),
        ("health-ip", "Health & IP"),
        ("human-rights", "Human Rights"),
        ("internet-governance", "Internet Governance/Digital Economy/Cyberspace"),
        ("lobbying", "Lobbying"),
        ("technology-transfer", "Technical Cooperation/Technology Transfer"),
    ),
)

# Each topic's name in the site's other languages: (French, Spanish, Chinese, Arabic).
TOPIC_NAMES: dict[str, tuple[str, str, str, str]] = {
    "copyright": ("Droit d'auteur", "Derecho de autor", "版权", "حق المؤلف"),
    "patents": ("Brevets", "Patentes", "专利", "البراءات"),
    "trademarks": ("Marques", "Marcas", "商标", "العلامات التجارية"),
    "opinions": ("Opinions", "Opiniones", "观点", "آراء"),
    "people-news": ("Personnalités", "Personas", "人物动态", "أخبار الأشخاص"),
    "venues": ("Enceintes", "Foros", "机构与论坛", "المحافل"),
    "wipo": ("OMPI", "OMPI", "世界知识产权组织", "الويبو"),
    "wto-trips": ("OMC/ADPIC", "OMC/ADPIC", "世贸组织/TRIPS", "منظمة التجارة العالمية/تريبس"),
    "who": ("OMS", "OMS", "世卫组织", "منظمة الصحة العالمية"),
    "itu-icann": ("UIT/ICANN", "UIT/ICANN", "国际电联/ICANN", "الاتحاد الدولي للاتصالات/آيكان"),
    "un-other": (
        "Nations Unies \N{EN DASH} autres",
        "Naciones Unidas \N{EN DASH} otros",
        "联合国 \N{EN DASH} 其他",
        "الأمم المتحدة \N{EN DASH} أخرى",
    ),
    "bilateral-regional-negotiations": (
        "Négociations bilatérales/régionales",
        "Negociaciones bilaterales/regionales",
        "双边/区域谈判",
        "المفاوضات الثنائية/الإقليمية",
    ),
    "africa": ("Afrique", "África", "非洲", "أفريقيا"),
    "asia-pacific": ("Asie/Pacifique", "Asia/Pacífico", "亚洲/太平洋", "آسيا/المحيط الهادئ"),
    "europe": ("Europe", "Europa", "欧洲", "أوروبا"),
    "latin-america-caribbean": (
        "Amérique latine/Caraïbes",
        "América Latina/Caribe",
        "拉丁美洲/加勒比",
        "أمريكا اللاتينية/الكاريبي",
    ),
    "north-america": ("Amérique du Nord", "América del Norte", "北美洲", "أمريكا الشمالية"),
    "themes": ("Thématiques", "Temáticas", "议题", "المحاور"),
    "access-to-knowledge": (
        "Accès au savoir/Innovation et science ouvertes",
        "Acceso al conocimiento/Innovación y ciencia abiertas",
        "知识获取/开放创新与科学",
        "النفاذ إلى المعرفة/الابتكار والعلم المفتوحان",
    ),
    "food-security": (
        "Sécurité alimentaire/Agriculture/Ressources génétiques",
        "Seguridad alimentaria/Agricultura/Recursos genéticos",
        "粮食安全/农业/遗传资源",
        "الأمن الغذائي/الزراعة/الموارد الوراثية",
    ),
    "finance": ("Finance", "Finanzas", "金融", "المالية"),
    "health-ip": ("Santé et PI", "Salud y PI", "卫生与知识产权", "الصحة والملكية الفكرية"),
    "human-rights": ("Droits humains", "Derechos humanos", "人权", "حقوق الإنسان"),
    "internet-governance": (
        "Gouvernance de l'internet/Économie numérique/Cyberespace",
        "Gobernanza de internet/Economía digital/Ciberespacio",
        "互联网治理/数字经济/网络空间",
        "حوكمة الإنترنت/الاقتصاد الرقمي/الفضاء الإلكتروني",
    ),
    "lobbying": ("Lobbying", "Cabildeo", "游说", "الضغط والمناصرة"),
    "technology-transfer": (
        "Coopération technique/Transfert de technologie",
        "Cooperación técnica/Transferencia de tecnología",
        "技术合作/技术转让",
        "التعاون التقني/نقل التكنولوجيا",
    ),
}


def names_of(slug: str) -> dict[str, str] | None:
    """A seeded topic's names by locale, or None for a topic the seed does not name."""
    names = TOPIC_NAMES.get(slug)
    return dict(zip(("fr", "es", "zh", "ar"), names, strict=True)) if names else None


LANGUAGES: tuple[tuple[str, str, str], ...] = (
    ("en", "English", "English"),
    ("fr", "French", "Français"),
    ("es", "Spanish", "Español"),
    ("zh", "Chinese", "中文"),
    ("ar", "Arabic", "العربية"),
)

# Names the reference site writes in its "Filed Under" lines, beyond each topic's own name
# and slug. None marks a known category that carries no topic of ours (a parent, a legacy one).
TOPIC_ALIASES: tuple[tuple[str, str | None], ...] = (
    ("Copyright Policy", "copyright"),
    ("Patent Policy", "patents"),
    ("Trademarks/Geographical Indications/Domains", "trademarks"),
    ("Access to Knowledge/ Education", "access-to-knowledge"),
    ("Information and Communications Technology/ Broadcasting", "internet-governance"),
    ("Internet Governance", "internet-governance"),
    ("Public Health", "health-ip"),
    ("Health", "health-ip"),
    ("UN - other", "un-other"),
    ("United Nations", "un-other"),
    ("WTO", "wto-trips"),
    ("TRIPS", "wto-trips"),
    ("ICANN", "itu-icann"),
    ("ITU", "itu-icann"),
    ("Regional Negotiations", "bilateral-regional-negotiations"),
    ("Asia", "asia-pacific"),
    ("Latin America", "latin-america-caribbean"),
    ("Technology Transfer", "technology-transfer"),
    ("Genetic Resources", "food-security"),
    ("IP Policies", None),
    ("Language", None),
    ("Uncategorized", None),
)

# Category names that say which language an article is in.
LANGUAGE_ALIASES: tuple[tuple[str, str], ...] = (
    ("English", "en"),
    ("Français", "fr"),
    ("French", "fr"),
    ("Español", "es"),
    ("Spanish", "es"),
    ("中文", "zh"),
    ("Chinese", "zh"),
    ("اللغة العربية", "ar"),
    ("العربية", "ar"),
    ("Arabic", "ar"),
)


def alias_key(name: str) -> str:
    """A topic name folded for lookup: "ITU/ICANN", "itu icann" and "Itu-Icann" are one key."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    without_accents = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[\W_]+", "", without_accents)[:200]


GROUP_TITLES = {
    TopicKind.SECTION: Text("Sections"),
    TopicKind.VENUE: Text("Venues"),
    TopicKind.THEME: Text("Themes"),
}


@dataclass
class SeedReport:
    created: int = 0
    updated: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def seed(session: Session) -> SeedReport:
    """Create or update the topics and languages; a second run changes nothing."""
    report = SeedReport()
    existing = {topic.slug: topic for topic in session.scalars(select(Topic))}

    def upsert(item: TopicSeed, parent: Topic | None, position: int) -> None:
        topic = existing.get(item.slug)
        wanted = {
            "name": item.name,
            "names": names_of(item.slug),
            "kind": item.kind,
            "parent": parent,
            "position": position,
        }
        if topic is None:
            topic = Topic(slug=item.slug, **wanted)
            session.add(topic)
            existing[item.slug] = topic
            report.created += 1
        elif any(getattr(topic, key) != value for key, value in wanted.items()):
            for key, value in wanted.items():
                setattr(topic, key, value)
            report.updated += 1
        for child_position, child in enumerate(item.children):
            upsert(child, topic, child_position)

    for position, item in enumerate(TOPIC_TREE):
        upsert(item, None, position)

    languages = {language.code: language for language in session.scalars(select(Language))}
    for position, (code, name, native_name) in enumerate(LANGUAGES):
        language = languages.get(code)
        wanted_language = {"name": name, "native_name": native_name, "position": position}
        if language is None:
            session.add(Language(code=code, **wanted_language))
            report.created += 1
        elif any(getattr(language, key) != value for key, value in wanted_language.items()):
            for key, value in wanted_language.items():
                setattr(language, key, value)
            report.updated += 1
    session.flush()
    _seed_aliases(session, existing, report)
    return report


def _seed_aliases(session: Session, topics: dict[str, Topic], report: SeedReport) -> None:
    """Every topic answers to its name and slug; the site's other names come on top."""
    wanted: dict[str, tuple[str, int | None, str | None]] = {}
    for topic in topics.values():
        for name in (topic.slug, topic.name):
            wanted.setdefault(alias_key(name), (name, topic.id, None))
    for name, slug in TOPIC_ALIASES:
        wanted.setdefault(alias_key(name), (name, topics[slug].id if slug else None, None))
    for name, code in LANGUAGE_ALIASES:
        wanted.setdefault(alias_key(name), (name, None, code))
    existing = {alias.key: alias for alias in session.scalars(select(TopicAlias))}
    for key, (name, topic_id, language_code) in wanted.items():
        alias = existing.get(key)
        if alias is None:
            session.add(
                TopicAlias(key=key, name=name, topic_id=topic_id, language_code=language_code)
            )
            report.created += 1
        elif (alias.topic_id, alias.language_code) != (topic_id, language_code):
            alias.topic_id, alias.language_code = topic_id, language_code
            report.updated += 1
    session.flush()


@dataclass(frozen=True)
class TopicNode:
    slug: str
    name: str
    kind: TopicKind
    children: tuple[TopicNode, ...]
    label: Localized = field(compare=False)  # the name as the reader's language has it

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "names": dict(self.label.names),
            "kind": self.kind.value,
            "children": [child.as_dict() for child in self.children],
        }


def tree(session: Session) -> list[TopicNode]:
    """The whole topic tree, roots in site order, from one query."""
    topics = TopicTree.load(session)

    def build(topic: Topic) -> TopicNode:
        children = tuple(build(child) for child in topics.children(topic.id))
        return TopicNode(topic.slug, topic.name, topic.kind, children, topic.label)

    return [build(root) for root in topics.roots()]


def groups(session: Session) -> list[tuple[Text, list[TopicNode]]]:
    """The tree split into the signup form's groups: Sections, Venues, Themes."""
    grouped: dict[TopicKind, list[TopicNode]] = {kind: [] for kind in GROUP_TITLES}
    for node in tree(session):
        grouped[node.kind].append(node)
    return [(GROUP_TITLES[kind], nodes) for kind, nodes in grouped.items() if nodes]


def languages(session: Session) -> list[Language]:
    return list(session.scalars(select(Language).order_by(Language.position)))
