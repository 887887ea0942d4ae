"""Builds the MIME bytes of an email: multipart text + HTML, CRLF line endings, safe headers."""

from __future__ import annotations

import email.charset
from collections.abc import Mapping
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import formataddr, formatdate, make_msgid, parseaddr

from alerts.mail.render import RenderedEmail

# Fold headers only past RFC 5322's hard limit: a List-Unsubscribe URL stays on one line.
# Non-ASCII values are folded into 76-character encoded words by _encoded() already.
_WIRE = compat32.clone(linesep="\r\n", max_line_length=998)
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.header_encoding = email.charset.QP
_UTF8_QP.body_encoding = email.charset.QP


class HeaderInjection(ValueError):
    """A header value held a line break: refused rather than sent."""


def _clean(name: str, value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise HeaderInjection(f"{name} holds a line break")
    return value


def _encoded(value: str) -> str:
    """ASCII as it is; anything else as an RFC 2047 encoded word."""
    return value if value.isascii() else Header(value, _UTF8_QP).encode()


def _text_part(content: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(content, _UTF8_QP)
    return part


def build(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One message ready for SMTP, every header checked for CR/LF."""
    message = MIMEMultipart("alternative")
    sender_name, sender_address = parseaddr(_clean("From", sender))
    message["From"] = formataddr((sender_name, sender_address))
    message["To"] = _clean("To", recipient)
    message["Subject"] = _encoded(_clean("Subject", rendered.subject))
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2] or "localhost")
    for name, value in (headers or {}).items():
        message[_clean("header name", name)] = _encoded(_clean(name, value))
    message.attach(_text_part(rendered.text, "plain"))
    message.attach(_text_part(rendered.html, "html"))
    return message.as_bytes(policy=_WIRE)


def envelope_sender(sender: str) -> str:
    """The bare address of a From value, for MAIL FROM."""
    return parseaddr(sender)[1]
