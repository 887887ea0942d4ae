"""The site's five languages: catalogs, the current locale, formatting, and safe templates.

One set of Babel catalogs (alerts/translations/<locale>/LC_MESSAGES/messages.po, compiled to
.mo by `make`) serves the pages (the web picks the locale per request) and the emails (the
worker renders with the reader's own locale, passed explicitly through `using`). No Flask
here: the domain raises messages as `Text`, translated only when shown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime, get_datetime_format
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from jinja2 import nodes
from jinja2.ext import InternationalizationExtension
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

CATALOGS = os.path.join(os.path.dirname(__file__), "translations")
DEFAULT = "en"
# The site's languages, in the order of its "Other Languages" menu.
LOCALES: tuple[str, ...] = ("en", "fr", "es", "zh", "ar")
RIGHT_TO_LEFT = frozenset({"ar"})

_current: ContextVar[str] = ContextVar("alerts_locale", default=DEFAULT)


def known(code: str | None) -> str:
    """`code` if it is one of the site's locales ("fr", "FR", "fr-CA" -> "fr"), else the
    default."""
    base = (code or "").replace("-", "_").split("_")[0].lower()
    return base if base in LOCALES else DEFAULT


def current() -> str:
    return _current.get()


def activate(code: str) -> None:
    """Set the locale of what follows in this context (a request, a task)."""
    _current.set(known(code))


@contextmanager
def using(code: str) -> Iterator[str]:
    """Render in `code` for the block, then go back to the locale before it."""
    marker = _current.set(known(code))
    try:
        yield _current.get()
    finally:
        _current.reset(marker)


@lru_cache(maxsize=len(LOCALES))
def translations(code: str) -> NullTranslations:
    """The compiled catalog of `code`; English needs none (the source strings are English)."""
    if code == DEFAULT:
        return NullTranslations()
    loaded = Translations.load(CATALOGS, [code])
    if not isinstance(loaded, Translations):
        raise RuntimeError(f"no compiled catalog for {code!r} in {CATALOGS}: run `make catalogs`")
    return loaded


def gettext(message: str, **values: Any) -> str:
    text = translations(current()).ugettext(message)
    return text % values if values else text


def ngettext(__singular: str, __plural: str, __n: int, **values: Any) -> str:
    """The CLDR plural form for `__n` in the current locale (Arabic has six); `%(num)s` is
    the number written the locale's way."""
    text = translations(current()).ungettext(__singular, __plural, __n)
    return text % {"num": format_number(__n), **values}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; translated where it is shown."""
    return message


class Text(str):
    """A message translated when it is shown, in whatever locale is current then.

    It is a str (English) so that logs, the API and tests read it as it is written. `english`
    is a fuller English text where the translations say less (a library's explanation that
    only exists in English).
    """

    values: Mapping[str, Any]
    message: str
    english: str | None

    def __new__(cls, message: str, *, english: str | None = None, **values: Any) -> Text:
        text = super().__new__(cls, english or (message % values if values else message))
        text.message, text.english, text.values = message, english, values
        return text

    def __str__(self) -> str:
        if self.english is not None and current() == DEFAULT:
            return self.english
        return gettext(self.message, **self.values)

    def __html__(self) -> Markup:
        return escape(str(self))


def direction(code: str | None = None) -> str:
    return "rtl" if known(code or current()) in RIGHT_TO_LEFT else "ltr"


# How each locale writes dates and numbers: English as the site writes it, day first.
_FORMATS = {"en": "en_GB"}


def _formats() -> str:
    return _FORMATS.get(current(), current())


# Babel formats in tens of microseconds; a batch of emails asks the same few values again
# and again (an article's date, a digest's count), so each answer is kept per locale.


def format_number(number: float) -> str:
    return _number(number, _formats())


def long_date(value: date | datetime) -> str:
    """ "28 November 2026", "28 novembre 2026", "2026年11月28日", "28 نوفمبر 2026"."""
    return _date(value, _formats())


def long_datetime(value: datetime) -> str:
    """A date and time in the reader's own zone (aware `value`), with the zone's name."""
    return _datetime(value, value.tzinfo, _formats())


@lru_cache(maxsize=1024)
def _number(number: float, locale: str) -> str:
    return format_decimal(number, locale=locale)


@lru_cache(maxsize=1024)
def _date(value: date | datetime, locale: str) -> str:
    return format_date(value, format="long", locale=locale)


@lru_cache(maxsize=1024)
def _datetime(value: datetime, zone: Any, locale: str) -> str:
    """`zone` is part of the key: two zones with the same offset have different names."""
    day = format_date(value, format="long", locale=locale)
    time = format_datetime(value, format="HH:mm", tzinfo=value.tzinfo, locale=locale)
    # The locale's own way of joining a date and a time ("{1}, {0}", "{1}، {0}", "{1} {0}").
    joined = str(get_datetime_format("medium", locale=locale))
    return f"{joined.replace('{1}', day).replace('{0}', time)} {value.tzname() or ''}".strip()


def weekdays() -> list[str]:
    """Monday to Sunday in the current locale."""
    names = Locale.parse(_formats()).days["format"]["wide"]
    return [names[index] for index in range(7)]


@lru_cache(maxsize=len(LOCALES))
def language_name(code: str) -> str:
    """A locale's own name for itself ("Français", "العربية"), for the language switcher."""
    name: str = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def choices() -> list[tuple[str, str]]:
    """(code, own name) of every locale: the "language of our emails" select."""
    return [(code, language_name(code)) for code in LOCALES]


class InlineTranslations(InternationalizationExtension):
    """`{% trans %}` for environments of one locale (`environment.alerts_locale`, the email
    renderer's): a block with no values is translated once, as the template compiles, into a
    constant (escaped then in an HTML template), so an email pays nothing for it. Blocks with
    values, and every block in an environment of no fixed locale (the pages'), are
    translated as they render."""

    def _make_node(  # type: ignore[no-untyped-def]
        self,
        singular: str,
        plural: str | None,
        context: str | None,
        variables: dict[str, nodes.Expr],
        plural_expr: nodes.Expr | None,
        vars_referenced: bool,
        num_called_num: bool,
    ):
        code = getattr(self.environment, "alerts_locale", None)
        if code is None or variables or plural_expr is not None or context is not None:
            return super()._make_node(
                singular, plural, context, variables, plural_expr, vars_referenced, num_called_num
            )
        # As gettext would at render time: the catalog's text, "%%" read as "%".
        return nodes.Output([nodes.Const(translations(code).ugettext(singular) % {})])


def install(environment: jinja2.Environment, catalog: Callable[[], NullTranslations]) -> None:
    """`{% trans %}`, `_()` and `ngettext()` in `environment`, translated through `catalog`.

    Jinja's own callables mark a translation as safe markup before the values go in, so a
    hostile msgstr ("<script>…") would reach the page. Here, where autoescaping is on, the
    translation and every value are escaped, unless a value is markup the template itself
    built (`_("You follow %(topic)s", topic=strong)`); plain-text templates get plain text.
    """

    @jinja2.pass_eval_context
    def _gettext(eval_ctx: EvalContext, __message: str, **values: Any) -> str:
        text = catalog().ugettext(__message)
        return (escape(text) if eval_ctx.autoescape else text) % values

    @jinja2.pass_eval_context
    def _ngettext(
        eval_ctx: EvalContext, __singular: str, __plural: str, __count: int, **values: Any
    ) -> str:
        values.setdefault("num", format_number(__count))
        text = catalog().ungettext(__singular, __plural, __count)
        return (escape(text) if eval_ctx.autoescape else text) % values

    environment.add_extension(InlineTranslations)
    environment.globals.update(gettext=_gettext, _=_gettext, ngettext=_ngettext)
    environment.newstyle_gettext = True  # type: ignore[attr-defined]
    environment.globals.update(
        locale=current,
        direction=direction,
        long_date=long_date,
        # Markup the template builds around a value, for a translation's placeholder; the
        # value is escaped. dir="auto": a Latin name in an Arabic line keeps its own order.
        strong=lambda value: Markup('<strong dir="auto">%s</strong>') % value,
        bidi=lambda value: Markup('<span dir="auto">%s</span>') % value,
        # An address or a link: left to right, and broken anywhere rather than overflowing.
        ltr=lambda value: Markup('<span dir="ltr" style="word-break:break-all">%s</span>') % value,
        link=lambda url, text: Markup('<a href="%s">%s</a>') % (url, text),
    )


class Localized(str):
    """A name with its translations (a topic's): a str of the English name, shown in the
    current locale's name where it has one."""

    names: Mapping[str, str]

    def __new__(cls, name: str, names: Mapping[str, str] | None = None) -> Localized:
        localized = super().__new__(cls, name)
        localized.names = dict(names or {})
        return localized

    def __str__(self) -> str:
        return self.names.get(current()) or str.__str__(self)

    def __html__(self) -> Markup:
        return escape(str(self))
