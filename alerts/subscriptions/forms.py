"""The reader's forms: signup and preference centre checked field by field, so every bad
field gets its own message at once (raised as InvalidInput)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import literal_column, null, select, union_all
from sqlalchemy.orm import Session

from alerts import i18n
from alerts.clock import timezones
from alerts.db import Prepared
from alerts.errors import InvalidInput
from alerts.i18n import Text
from alerts.matching import MAX_KEYWORDS, words
from alerts.models import Frequency, Language, Topic

MAX_EMAIL_LENGTH = 254

# How each frequency reads to a reader (forms, the confirmed page, the welcome email).
FREQUENCY_LABELS = {
    Frequency.IMMEDIATE: Text("As soon as an article is published"),
    Frequency.DAILY: Text("Once a day"),
    Frequency.WEEKLY: Text("Once a week"),
    Frequency.MONTHLY: Text("Once a month"),
}


def form_int(text: str, default: int = -1) -> int:
    """A small whole number typed in a form, or `default` ("²" or "٣" are digits to
    str.isdigit() but not numbers we take)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else default


@dataclass(frozen=True)
class Choices:
    """What a reader asked for: topic slugs, language codes, one frequency for those topics."""

    topics: tuple[str, ...]
    languages: tuple[str, ...]
    frequency: Frequency
    keywords: tuple[str, ...] = ()  # words or phrases, as the reader typed them
    within_topics: bool = False  # keywords count only in articles of their topics
    # The language of our pages and emails to this reader; None in links from before.
    locale: str | None = None
    # The browser's time zone, for a new reader's digest hour (not carried in links).
    timezone: str | None = None
    # The topics' ids, when validate() read them (not carried in links): a new signup
    # writes them without reading them again.
    topic_ids: tuple[int, ...] = field(default=(), compare=False)

    def as_payload(self) -> dict[str, Any]:
        return {
            "topics": list(self.topics),
            "languages": list(self.languages),
            "frequency": self.frequency.value,
            "keywords": list(self.keywords),
            "within_topics": self.within_topics,
            "locale": self.locale,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Choices:
        return cls(
            topics=tuple(payload["topics"]),
            languages=tuple(payload["languages"]),
            frequency=Frequency(payload["frequency"]),
            keywords=tuple(payload.get("keywords", ())),
            within_topics=bool(payload.get("within_topics", False)),
            locale=i18n.known(payload["locale"]) if payload.get("locale") else None,
        )


MAX_KEYWORD_LENGTH = 100


def parse_keywords(text: str) -> tuple[str, ...]:
    """One keyword or phrase per line ("ICANN", "TRIPS waiver", quotes allowed); at most 20,
    each with at least one word; duplicates (once folded) dropped.

    Raises:
        InvalidInput: on "keywords": a keyword too long, one with no word, or too many.
    """
    phrases: dict[str, str] = {}
    for line in text.replace("\r", "\n").split("\n"):
        phrase = " ".join(line.strip().strip("\"\u201c\u201d'").split())
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise InvalidInput(
                {
                    "keywords": Text(
                        "Keep each keyword under %(count)s characters.", count=MAX_KEYWORD_LENGTH
                    )
                }
            )
        folded = " ".join(words(phrase))
        if not folded:
            raise InvalidInput(
                {"keywords": Text("“%(keyword)s” has no word in it.", keyword=phrase[:30])}
            )
        phrases.setdefault(folded, phrase)
    if len(phrases) > MAX_KEYWORDS:
        raise InvalidInput(
            {"keywords": Text("Choose at most %(count)s keywords.", count=MAX_KEYWORDS)}
        )
    return tuple(phrases.values())


def normalize_email(raw: str) -> str:
    """The address as email-validator normalizes it.

    Raises:
        InvalidInput: on "email": empty, too long, or not a valid address.
    """
    candidate = raw.strip()
    if not candidate:
        raise InvalidInput({"email": Text("Enter your email address.")})
    if len(candidate) > MAX_EMAIL_LENGTH or any(ch in candidate for ch in "\r\n\0"):
        raise InvalidInput({"email": Text("Enter a valid email address, like name@example.org.")})
    try:
        # No SMTPUTF8 local parts: not every server on the way can deliver them.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        # email-validator explains in English only ("An email address must have an @-sign.").
        explained = f"Enter a valid email address: {error}"
        message = Text("Enter a valid email address, like name@example.org.", english=explained)
        raise InvalidInput({"email": message}) from error
    normalized: str = result.normalized
    return normalized


# Every topic's slug and id and every language's code: a few dozen rows, read afresh for each
# form (an admin may have changed them) in one prepared statement, for less than two IN
# queries through the ORM cost (a fifth of a signup's time in the web process).
_VOCABULARY = Prepared(
    union_all(
        select(literal_column("'topic'"), Topic.slug, Topic.id),
        select(literal_column("'language'"), Language.code, null()),
    )
)


@dataclass(frozen=True)
class Vocabulary:
    """The topics and languages a form may name."""

    topics: dict[str, int]  # slug -> id
    languages: frozenset[str]

    @classmethod
    def load(cls, session: Session) -> Vocabulary:
        topics: dict[str, int] = {}
        languages: set[str] = set()
        for kind, key, topic_id in _VOCABULARY.rows(session, {}):
            if kind == "topic":
                topics[key] = int(topic_id)
            else:
                languages.add(key)
        return cls(topics, frozenset(languages))

    def check_topics(self, slugs: Collection[str]) -> tuple[tuple[int, ...], str | None]:
        """The topics' ids in order, and the message for topics that do not exist (or None)."""
        unknown = sorted(set(slugs) - set(self.topics))
        if unknown:
            return (), Text("Unknown topic: %(topics)s.", topics=", ".join(unknown[:5]))
        return tuple(self.topics[slug] for slug in slugs), None

    def check_languages(self, codes: Collection[str]) -> str | None:
        """The message for no language or one that is not offered, or None."""
        if not codes:
            return Text("Choose at least one language.")
        return Text("Choose languages from the list.") if set(codes) - self.languages else None


def _check_locale(code: str | None) -> Text | None:
    """The message for a language of emails and pages the site does not speak, or None."""
    if code is None or code in i18n.LOCALES:
        return None
    return Text("Choose the language of our emails from the list.")


def _check_languages(session: Session, codes: Collection[str]) -> str | None:
    """The message for no language or one that is not offered, or None."""
    if not codes:
        return Text("Choose at least one language.")
    known = set(session.scalars(select(Language.code).where(Language.code.in_(list(codes)))))
    return Text("Choose languages from the list.") if set(codes) - known else None


def validate(
    session: Session,
    email: str,
    topics: Sequence[str],
    languages: Sequence[str],
    frequency: str,
    keywords: str = "",
    within_topics: bool = False,
    locale: str | None = None,
    timezone: str = "",
) -> tuple[str, Choices]:
    """Check every field at once, so the form can show each message next to its field.

    Raises:
        InvalidInput: every bad field ("email", "keywords", "topics", "languages",
            "frequency", "locale") with its message.
    """
    errors: dict[str, str] = {}
    vocabulary = Vocabulary.load(session)
    normalized = ""
    try:
        normalized = normalize_email(email)
    except InvalidInput as error:
        errors.update(error.errors)
    wanted_keywords: tuple[str, ...] = ()
    try:
        wanted_keywords = parse_keywords(keywords)
    except InvalidInput as error:
        errors.update(error.errors)

    wanted_topics = tuple(dict.fromkeys(slug.strip() for slug in topics if slug.strip()))
    topic_ids: tuple[int, ...] = ()
    if not wanted_topics:
        if not wanted_keywords and "keywords" not in errors:
            errors["topics"] = Text("Choose at least one topic, or type a keyword.")
        elif within_topics:
            errors["topics"] = Text("Choose topics for your keywords to stay within.")
    else:
        topic_ids, problem = vocabulary.check_topics(wanted_topics)
        if problem:
            errors["topics"] = problem

    wanted_languages = tuple(dict.fromkeys(code.strip() for code in languages if code.strip()))
    if problem := vocabulary.check_languages(wanted_languages):
        errors["languages"] = problem

    try:
        chosen_frequency = Frequency(frequency)
    except ValueError:
        errors["frequency"] = Text("Choose how often you want emails.")
        chosen_frequency = Frequency.IMMEDIATE
    if problem := _check_locale(locale):
        errors["locale"] = problem

    if errors:
        raise InvalidInput(errors)
    return normalized, Choices(
        wanted_topics,
        wanted_languages,
        chosen_frequency,
        wanted_keywords,
        within_topics,
        locale,
        # The browser says it, the reader never sees it: one this machine does not know is
        # left out, not an error.
        timezone if timezone in timezones() else None,
        topic_ids=topic_ids,
    )


@dataclass(frozen=True)
class Preferences:
    """Everything a reader sets in the preference centre."""

    topics: dict[str, Frequency]  # slug -> its frequency
    languages: tuple[str, ...]
    timezone: str
    send_hour: int
    send_weekday: int
    keywords: tuple[str, ...] = ()
    keyword_frequency: Frequency = Frequency.IMMEDIATE
    within_topics: bool = False
    locale: str = i18n.DEFAULT
    daily_cap: int | None = None  # at most this many instant alerts a day; None: no limit
    quiet: tuple[int, int] | None = None  # quiet hours, minutes after local midnight
    urgent_in_quiet: bool = True
    corrections: bool = True  # a short email when an article they got as an alert is corrected


# The choices the preference centre offers (any other value is refused).
DAILY_CAPS = (1, 2, 3, 5, 10, 20)
QUIET_STEP = 30  # quiet hours start and end on the hour or the half hour


def instant_fields(posted: Mapping[str, str], subscriber: Any) -> dict[str, Any]:
    """The preference centre's cap, quiet hours and corrections as posted; a form without
    them (a page from before they existed) keeps what the reader has. The hidden marker
    `instant_fields` is "1" on pages with the cap and quiet hours, "2" with corrections too."""
    marker = posted.get("instant_fields")
    if marker not in ("1", "2"):

        def text(value: int | None) -> str:
            return "" if value is None else str(value)

        return {
            "daily_cap": text(subscriber.daily_cap),
            "quiet_from": text(subscriber.quiet_from),
            "quiet_until": text(subscriber.quiet_until),
            "urgent_in_quiet": subscriber.urgent_in_quiet,
            "corrections": subscriber.corrections,
        }
    return {
        "daily_cap": posted.get("daily_cap", ""),
        "quiet_from": posted.get("quiet_from", ""),
        "quiet_until": posted.get("quiet_until", ""),
        "urgent_in_quiet": posted.get("urgent_in_quiet") == "yes",
        "corrections": (
            posted.get("corrections") == "yes" if marker == "2" else subscriber.corrections
        ),
    }


def _check_quiet(start: str, end: str) -> tuple[tuple[int, int] | None, Text | None]:
    if not start.strip() and not end.strip():
        return None, None
    first, last = form_int(start), form_int(end)
    valid = all(0 <= m < 24 * 60 and m % QUIET_STEP == 0 for m in (first, last))
    if not valid:
        return None, Text("Choose when quiet hours start and end from the lists.")
    if first == last:
        return None, Text("Quiet hours must end at another time than they start.")
    return (first, last), None


def validate_preferences(
    session: Session,
    topic_frequencies: dict[str, str],
    languages: Sequence[str],
    timezone: str,
    send_hour: str,
    send_weekday: str,
    keywords: str = "",
    keyword_frequency: str = "immediate",
    within_topics: bool = False,
    locale: str = i18n.DEFAULT,
    daily_cap: str = "",
    quiet_from: str = "",
    quiet_until: str = "",
    urgent_in_quiet: bool = True,
    corrections: bool = True,
) -> Preferences:
    """Check the preference form; every bad field is reported at once.

    Raises:
        InvalidInput: every bad field ("keywords", "topics", "languages", "timezone",
            "send_hour", "send_weekday", "locale", "daily_cap", "quiet") with its message.
    """
    errors: dict[str, str] = {}
    vocabulary = Vocabulary.load(session)
    phrases: tuple[str, ...] = ()
    try:
        phrases = parse_keywords(keywords)
    except InvalidInput as error:
        errors.update(error.errors)
    try:
        chosen_keyword_frequency = Frequency(keyword_frequency)
    except ValueError:
        errors["keywords"] = Text("Choose how often for your keywords.")
        chosen_keyword_frequency = Frequency.IMMEDIATE
    topics: dict[str, Frequency] = {}
    for slug, value in topic_frequencies.items():
        try:
            topics[slug] = Frequency(value)
        except ValueError:
            errors["topics"] = Text("Choose how often for each topic.")
    if not topics and not phrases and "topics" not in errors and "keywords" not in errors:
        errors["topics"] = Text("Keep at least one topic or keyword, or unsubscribe instead.")
    elif topics and (problem := vocabulary.check_topics(topics)[1]):
        errors["topics"] = problem
    codes = tuple(dict.fromkeys(code for code in languages if code))
    if problem := vocabulary.check_languages(codes):
        errors["languages"] = problem
    if timezone not in timezones():
        errors["timezone"] = Text("Choose a time zone from the list.")
    hour = form_int(send_hour)
    if not 0 <= hour <= 23:
        errors["send_hour"] = Text("Choose an hour from the list.")
    weekday = form_int(send_weekday)
    if not 0 <= weekday <= 6:
        errors["send_weekday"] = Text("Choose a day from the list.")
    if problem := _check_locale(locale):
        errors["locale"] = problem
    cap = form_int(daily_cap) if daily_cap.strip() else None
    if cap is not None and cap not in DAILY_CAPS:
        errors["daily_cap"] = Text("Choose a daily limit from the list.")
    quiet, problem = _check_quiet(quiet_from, quiet_until)
    if problem is not None:
        errors["quiet"] = problem
    if errors:
        raise InvalidInput(errors)
    return Preferences(
        topics,
        codes,
        timezone,
        hour,
        weekday,
        phrases,
        chosen_keyword_frequency,
        within_topics,
        locale,
        cap,
        quiet,
        urgent_in_quiet,
        corrections,
    )
