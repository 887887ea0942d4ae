"""Small helpers the tests share: reading forms and emails as a reader would."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from alerts import clock, i18n

CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_PATTERN.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


CONFIRM_LINK = re.compile(r"https?://[^\s\"<>]+/confirm/[A-Za-z0-9_.\-]+")


def confirm_link_in(text_body: str) -> str:
    match = CONFIRM_LINK.search(text_body)
    assert match, f"no confirmation link in {text_body!r}"
    return match.group(0)


class ServiceClock:
    """The service's clock as a test moves it: freeze(at), advance(delta), or call it."""

    def freeze(self, at: datetime) -> datetime:
        clock.freeze(at)
        return clock.now()

    __call__ = freeze

    def advance(self, delta: timedelta) -> datetime:
        return self.freeze(clock.now() + delta)

    def now(self) -> datetime:
        return clock.now()


# The one clock the tests move; the autouse `service_clock` fixture lets it run again after.
CLOCK = ServiceClock()


def catalog(code: str) -> Catalog:
    """A language's catalog as its .po file says (the test's own reading, not the service's)."""
    path = Path(i18n.CATALOGS) / code / "LC_MESSAGES" / "messages.po"
    with open(path, "rb") as po_file:
        return read_po(po_file, locale=code)


def translated(code: str, message_id: str) -> str:
    """What the `code` catalog says for `message_id` (its first form, for a plural)."""
    message = catalog(code)[message_id]
    assert message is not None, message_id
    text = message.string[0] if isinstance(message.string, tuple) else message.string
    assert text, f"{message_id!r} is not translated into {code}"
    return str(text)
