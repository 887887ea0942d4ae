"""Builds the MIME bytes of every outgoing email: multipart text + HTML, CRLF, safe headers.

The bytes are assembled directly rather than through email.message: the parts are encoded
with binascii's quoted-printable (C), which makes building a message several times faster
than the email package's generator, which was the largest cost of sending.

A message is built in two steps. A `Skeleton` holds everything but the reader's own links,
encoded once: an email rendered with markers in place of the links (`markers()`) becomes
encoded static segments with the links' names between them. `fill()` then joins one
reader's message from it: their headers, and their links encoded where the markers were.
The same alert or digest to thousands of readers is rendered and encoded once per batch.
"""

from __future__ import annotations

import quopri
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache

from markupsafe import escape

from alerts.mail.render import RenderedEmail


class HeaderInjection(ValueError):
    """A header value held a line break: refused rather than sent."""


def _clean(name: str, value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise HeaderInjection(f"{name} holds a line break")
    return value


def _encoded(value: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded words folded at 76 characters."""
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _list_id(value: str) -> str:
    """RFC 2919: only the phrase may be encoded; the list id in angle brackets stays as it is,
    so filters can match it ("Veille PI — Genève news alerts <news-alerts.example.org>")."""
    phrase, bracket, list_id = value.rpartition(" <")
    if not bracket or not list_id.endswith(">") or not list_id.isascii():
        return _encoded(value)
    return f"{_encoded(phrase)} <{list_id}"


def ascii_address(address: str) -> str:
    """An address with an internationalized domain written in IDNA, for headers and RCPT."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


@lru_cache(maxsize=16)
def _from_header(sender: str) -> tuple[str, str]:
    name, address = parseaddr(_clean("From", sender))
    return formataddr((name, address), charset="utf-8"), address.rpartition("@")[2] or "localhost"


def _quoted_printable(text: str) -> bytes:
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    return quopri.encodestring(unified.encode("utf-8")).replace(b"\n", b"\r\n")


# A marker stands for a reader's link in a rendered email: private-use characters, which no
# template or article holds and which HTML escaping leaves as they are.
_MARKER = re.compile("\ue000([a-z_]+)\ue001")


def markers(links: Mapping[str, str]) -> dict[str, str]:
    """The reader's links of a context, as markers."""
    return {name: f"\ue000{name}\ue001" for name in links}


def _segment(text: str, followed: bool = True) -> bytes:
    """Quoted-printable that another segment may follow: one that does not end a line ends
    with a soft line break, so no encoded line grows past 76 characters."""
    encoded = _quoted_printable(text)
    if followed and encoded and not text.endswith("\n"):
        encoded += b"=\r\n"
    return encoded


def _segments(text: str) -> tuple[bytes | str, ...]:
    """Encoded static text and, between, the names of the links that go there."""
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces = _MARKER.split(unified)
    last = len(pieces) - 1
    return tuple(
        piece if index % 2 else _segment(piece, followed=index < last)
        for index, piece in enumerate(pieces)
        if index % 2 or piece
    )


@dataclass(frozen=True)
class Skeleton:
    """One email's subject and encoded parts, the readers' links left open."""

    subject: str
    subject_header: str  # encoded words when it is not ASCII
    text: tuple[bytes | str, ...]
    html: tuple[bytes | str, ...]
    boundary: str

    @classmethod
    def of(cls, rendered: RenderedEmail) -> Skeleton:
        if _MARKER.search(rendered.subject):
            raise ValueError("a subject cannot hold a reader's link")
        # "=_" never occurs in quoted-printable text, so the boundary cannot clash with a part.
        subject = _clean("Subject", rendered.subject)
        return cls(
            subject,
            _encoded(subject),
            _segments(rendered.text),
            _segments(rendered.html),
            f"=_{secrets.token_hex(12)}",
        )


def _fill(segments: tuple[bytes | str, ...], links: Mapping[str, str], html: bool) -> bytes:
    return b"".join(
        segment
        if isinstance(segment, bytes)
        else _segment(str(escape(links[segment])) if html else links[segment])
        for segment in segments
    )


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        # "+0000": the time is UTC ("-0000" would say its zone is unknown, RFC 5322 3.3).
        _date_cache = (second, format_datetime(datetime.fromtimestamp(second, UTC)))
    return _date_cache[1]


def fill(
    skeleton: Skeleton,
    *,
    sender: str,
    recipient: str,
    links: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One reader's message ready for SMTP, every header checked for CR/LF."""
    from_header, domain = _from_header(sender)
    links = links or {}
    boundary = skeleton.boundary
    lines = [
        f"From: {from_header}",
        f"To: {ascii_address(_clean('To', recipient))}",
        f"Subject: {skeleton.subject_header}",
        f"Date: {_date_now()}",
        f"Message-ID: {make_msgid(domain=domain)}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    for name, value in (headers or {}).items():
        if not name.isascii() or not name.replace("-", "").isalnum():
            raise HeaderInjection(f"bad header name {name!r}")
        value = _clean(name, value)
        lines.append(f"{name}: {_list_id(value) if name == 'List-Id' else _encoded(value)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    part_head = (
        f'--{boundary}\r\nContent-Type: text/%s; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        (
            head,
            (part_head % "plain").encode("ascii"),
            _fill(skeleton.text, links, html=False),
            b"\r\n",
            (part_head % "html").encode("ascii"),
            _fill(skeleton.html, links, html=True),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


def build(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One message ready for SMTP from a fully rendered email (no markers in it)."""
    return fill(Skeleton.of(rendered), sender=sender, recipient=recipient, headers=headers)


def envelope_sender(sender: str) -> str:
    """The bare address of a From value, for MAIL FROM."""
    return parseaddr(sender)[1]
