"""Builds the MIME bytes of every outgoing email: multipart text + HTML, CRLF, safe headers.

The bytes are assembled directly rather than through email.message: the parts are encoded
with binascii's quoted-printable (C), which makes building a message several times faster
than the email package's generator, which was the largest cost of sending.
"""

from __future__ import annotations

import quopri
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache

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


def build(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One message ready for SMTP, every header checked for CR/LF."""
    from_header, domain = _from_header(sender)
    # "=_" never occurs in quoted-printable text, so the boundary cannot clash with a part.
    boundary = f"=_{secrets.token_hex(12)}"
    lines = [
        f"From: {from_header}",
        f"To: {ascii_address(_clean('To', recipient))}",
        f"Subject: {_encoded(_clean('Subject', rendered.subject))}",
        # "+0000": the time is UTC ("-0000" would say its zone is unknown, RFC 5322 3.3).
        f"Date: {format_datetime(datetime.now(UTC))}",
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
            _quoted_printable(rendered.text),
            b"\r\n",
            (part_head % "html").encode("ascii"),
            _quoted_printable(rendered.html),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


def envelope_sender(sender: str) -> str:
    """The bare address of a From value, for MAIL FROM."""
    return parseaddr(sender)[1]
