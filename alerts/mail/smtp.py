"""The one place that talks SMTP: ALERTS_SMTP_URL, verified TLS, one reused connection per batch."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
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
    """One open SMTP connection, used for every message of a batch."""

    def __init__(self, connection: smtplib.SMTP) -> None:
        self.connection = connection
        # True from the moment a message's data is on its way until the relay's reply: a
        # connection lost in between may have delivered it (the acknowledgement was lost).
        self.in_data = False
        # DATA already answered 354 (sent with the envelope, RFC 2920 pipelining).
        self._data_open = False

    def send(
        self,
        message: bytes,
        sender: str,
        recipient: str,
        meanwhile: Callable[[], object] | None = None,
    ) -> Rejection | None:
        """Send one message to one recipient; a refusal of that recipient (or of this message)
        is returned, not raised.

        Connection trouble and a refused sender raise (smtplib.SMTPException or OSError): that
        is the relay's problem, not the reader's. The steps are smtplib's sendmail() spelled
        out, so that the caller knows whether the data had been sent when a connection broke,
        and written for messages this service built: CRLF already, addresses already checked
        (so no per-message parsing or line-ending rewriting, which cost more than the rest).
        """
        return self.envelope(sender, recipient, len(message)) or self.data(message, meanwhile)

    def envelope(self, sender: str, recipient: str, size: int) -> Rejection | None:
        """MAIL FROM and RCPT TO: nothing is delivered yet, and reset() takes it back."""
        recipient = ascii_address(recipient)
        if _UNSAFE.search(sender):
            # Our own configuration: the relay's kind of trouble, no reader is charged.
            raise smtplib.SMTPSenderRefused(553, b"sender address not allowed", sender)
        if _UNSAFE.search(recipient):
            # Refused here as a relay would (RFC 5321's 553): that address bounces.
            return Rejection(553, "5.1.3 mailbox name not allowed")
        connection = self.connection
        connection.ehlo_or_helo_if_needed()
        announced = f" SIZE={size}" if self.announces_size else ""
        commands = [f"MAIL FROM:<{sender}>{announced}", f"RCPT TO:<{recipient}>"]
        if self.pipelining:
            # RFC 2920: the envelope and DATA in one write, their replies read in order; one
            # round trip where there were three (a remote relay is milliseconds away).
            commands.append("DATA")
            connection.send("".join(f"{command}\r\n" for command in commands))
            replies = [connection.getreply() for _ in commands]
        else:
            replies = []
            for command in commands:
                connection.putcmd(command)
                replies.append(connection.getreply())
                if replies[-1][0] not in (250, 251):
                    break
        for code, reply in replies:
            _closing(code, reply)
        code, reply = replies[0]
        if code != 250:
            self.reset()
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = replies[1]
        if code not in (250, 251):
            # A pipelined DATA was refused too ("no valid recipients"): nothing was sent.
            self.reset()
            return Rejection(code, _text(reply), recipient=_about_address(code, _text(reply)))
        if len(replies) == 3:
            code, reply = replies[2]
            if code != 354:
                self.reset()
                return Rejection(code, _text(reply), recipient=False)
            self._data_open = True
        return None

    def data(
        self, message: bytes, meanwhile: Callable[[], object] | None = None
    ) -> Rejection | None:
        """DATA, the message and the relay's answer: from the 354 on, a broken connection may
        have delivered it (`in_data`). `meanwhile` is called once the message is written and
        before its answer is read: work done while the relay reads it (it must not raise)."""
        if self._data_open:
            self._data_open, code, reply = False, 354, b""
        else:
            code, reply = self._command("DATA")
        if code == 354:
            self.in_data = True
            # Dot-stuffing (RFC 5321, 4.5.2); the message ends with CRLF, as build() makes it.
            body = message.replace(b"\r\n.", b"\r\n..")
            if body.startswith(b"."):
                body = b"." + body
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            self.connection.send(body + b".\r\n")
            if meanwhile is not None:
                meanwhile()
            code, reply = self.connection.getreply()
            self.in_data = False  # a reply came: whatever it says, it is not a lost one
            _closing(code, reply)
        if code != 250:
            # The message was refused, not the address: never a bounce of the reader.
            self.reset()
            return Rejection(code, _text(reply), recipient=False)
        return None

    @property
    def pipelining(self) -> bool:
        connection = self.connection
        return bool(connection.does_esmtp and connection.has_extn("pipelining"))

    @property
    def announces_size(self) -> bool:
        connection = self.connection
        return bool(connection.does_esmtp and connection.has_extn("size"))

    def _command(self, line: str) -> tuple[int, bytes]:
        self.connection.putcmd(line)
        code, reply = self.connection.getreply()
        _closing(code, reply)
        return code, reply

    def reset(self) -> None:
        """RSET: the transaction under way is dropped (a closed connection is reported by
        the next send)."""
        self._data_open = False
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            self.connection.rset()


# Anything that would end or split an SMTP command line.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>]")


def _closing(code: int, reply: bytes | str) -> None:
    """421: the relay is shutting the channel, whatever the command was: its trouble, not
    the reader's (RFC 5321, 3.8)."""
    if code == 421:
        raise smtplib.SMTPResponseException(code, reply)


def _about_address(code: int, text: str) -> bool:
    """Is a RCPT refusal about the address itself? "530 authentication required" and
    enhanced codes 5.7.x / 4.7.x (relaying denied, policy, our reputation) are about us."""
    enhanced = text.strip().split(" ", 1)[0]
    return code != 530 and not enhanced.startswith(("5.7.", "4.7."))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Verified TLS, the system's CAs loaded once per process (loading them cost as much as
    sending a message)."""
    return ssl.create_default_context()


@contextmanager
def connect(settings: SmtpSettings) -> Iterator[Mailer]:
    """Open, log in, yield a Mailer, and always say QUIT."""
    connection: smtplib.SMTP
    if settings.security == "ssl":
        connection = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=_tls_context()
        )
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        if settings.security == "starttls":
            connection.starttls(context=_tls_context())
            connection.ehlo()
        if settings.username:
            connection.login(settings.username, settings.password or "")
        yield Mailer(connection)
    finally:
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()
