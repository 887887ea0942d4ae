"""The one place that talks SMTP: ALERTS_SMTP_URL, verified TLS, one reused connection per task."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from alerts.mail.message import ascii_address

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "none", "starttls" or "ssl"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            expected = ", ".join(f"{scheme}://" for scheme in SCHEMES)
            raise ValueError(f"ALERTS_SMTP_URL must start with {expected} (got {parts.scheme!r})")
        security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "ssl"}[parts.scheme]
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or SCHEMES[parts.scheme],
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
        )


@dataclass(frozen=True)
class Rejection:
    """The server refused one recipient: `permanent` for a 5xx reply."""

    code: int
    message: str
    recipient: bool = True  # False: the server refused the message, not the address

    def __str__(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def permanent(self) -> bool:
        """Only a 5xx for the address itself suppresses it."""
        return self.recipient and self.code >= 500


class Mailer:
    """One open SMTP connection, used for every message of a task."""

    def __init__(self, connection: smtplib.SMTP) -> None:
        self.connection = connection

    def send(self, message: bytes, sender: str, recipient: str) -> Rejection | None:
        """Send one message to one recipient; a refusal of that recipient is returned, not raised.

        Connection failures raise (smtplib.SMTPException or OSError): the caller retries.
        """
        recipient = ascii_address(recipient)
        try:
            refused = self.connection.sendmail(sender, [recipient], message)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = error.recipients.get(recipient, (550, b"refused"))
            return Rejection(code, _text(text), recipient=_about_address(code, _text(text)))
        except smtplib.SMTPDataError as error:
            # The message was refused, not the address: never a bounce of the reader.
            self.connection.rset()
            return Rejection(error.smtp_code, _text(error.smtp_error), recipient=False)
        if refused:
            code, text = refused[recipient]
            return Rejection(code, _text(text), recipient=_about_address(code, _text(text)))
        return None
        # SMTPSenderRefused (our From address refused) propagates: the whole batch waits and
        # retries, and nobody is suppressed for it.


def _about_address(code: int, text: str) -> bool:
    """Is a RCPT refusal about the address itself? "530 authentication required" and
    enhanced codes 5.7.x / 4.7.x (relaying denied, policy, our reputation) are about us."""
    enhanced = text.strip().split(" ", 1)[0]
    return code != 530 and not enhanced.startswith(("5.7.", "4.7."))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@contextmanager
def connect(settings: SmtpSettings) -> Iterator[Mailer]:
    """Open, log in, yield a Mailer, and always say QUIT."""
    context = ssl.create_default_context()
    connection: smtplib.SMTP
    if settings.security == "ssl":
        connection = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=context
        )
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        if settings.security == "starttls":
            connection.starttls(context=context)
            connection.ehlo()
        if settings.username:
            connection.login(settings.username, settings.password or "")
        yield Mailer(connection)
    finally:
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()
