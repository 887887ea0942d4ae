"""A local SMTP server that keeps every message it receives, for `alerts dev` and the tests."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from fnmatch import fnmatchcase
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session


@dataclass(frozen=True)
class StoredMessage:
    id: str
    mail_from: str
    recipients: list[str]
    received_at: datetime
    raw: bytes
    # Kept, then the connection cut before the 250: the sender cannot know it was delivered.
    ack_lost: bool = False

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def subject(self) -> str:
        return str(self.parsed().get("Subject", ""))

    def body(self, subtype: str) -> str:
        """The decoded text of the text/<subtype> part ("plain" or "html")."""
        part = self.parsed().get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return ""
        content: str = part.get_content()
        return content


class MailStore:
    """Messages kept as files (raw .eml + envelope .json) in one folder, oldest first."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def save(
        self, mail_from: str, recipients: list[str], raw: bytes, ack_lost: bool = False
    ) -> str:
        os.makedirs(self.directory, exist_ok=True)
        message_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        meta = {
            "mail_from": mail_from,
            "recipients": recipients,
            "received_at": datetime.now(UTC).isoformat(),
            "ack_lost": ack_lost,
        }
        # Write the body first and the envelope last: a listed message is a complete one.
        for suffix, data in ((".eml", raw), (".json", json.dumps(meta).encode())):
            temporary = os.path.join(self.directory, f".{message_id}{suffix}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, os.path.join(self.directory, message_id + suffix))
        return message_id

    def ids(self) -> list[str]:
        if not os.path.isdir(self.directory):
            return []
        return sorted(name[:-5] for name in os.listdir(self.directory) if name.endswith(".json"))

    def get(self, message_id: str) -> StoredMessage | None:
        if not message_id.replace("-", "").isalnum():
            return None
        base = os.path.join(self.directory, message_id)
        try:
            with open(base + ".json", encoding="utf-8") as handle:
                meta = json.load(handle)
            with open(base + ".eml", "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        return StoredMessage(
            id=message_id,
            mail_from=meta["mail_from"],
            recipients=meta["recipients"],
            received_at=datetime.fromisoformat(meta["received_at"]),
            raw=raw,
            # Folders written before drops existed have no such key.
            ack_lost=bool(meta.get("ack_lost", False)),
        )

    def all(self) -> list[StoredMessage]:
        return [m for m in (self.get(message_id) for message_id in self.ids()) if m is not None]

    def to(self, address: str) -> list[StoredMessage]:
        return [m for m in self.all() if address.lower() in (r.lower() for r in m.recipients)]


def address_matches(pattern: str, address: str) -> bool:
    """`pattern` is an address or a glob (`*-soft@example.org`); case never matters."""
    pattern, address = pattern.lower(), address.lower()
    return address == pattern or fnmatchcase(address, pattern)


@dataclass
class FailureRule:
    """Answer `code` to RCPT TO for `address` (or a glob): the first `times` times, or always."""

    address: str
    code: int
    times: int | None = None

    @classmethod
    def parse(cls, text: str) -> FailureRule:
        """`bad@example.org=550` (always) or `*-slow@example.org=451x2` (the first two times)."""
        address, _, answer = text.rpartition("=")
        code, _, times = answer.partition("x")
        if not address or not code.isdigit() or (times and not times.isdigit()):
            raise ValueError(f"not a failure rule: {text!r} (want ADDRESS=CODE or ADDRESS=CODExN)")
        return cls(address.lower(), int(code), int(times) if times else None)


# The count must be digits after a final "x": "box@example.org" is an address, not "bo" x N.
DROP_RULE = re.compile(r"(?P<address>[^\s=]+?)(?:x(?P<times>\d+))?")


@dataclass
class DropRule:
    """Keep a message for `address` (or a glob), then cut the connection before the 250 reply.

    The first `times` messages per matching address, or always (None): the sender sees the
    connection drop after DATA although the message was delivered (an "ack lost").
    """

    address: str
    times: int | None = None

    @classmethod
    def parse(cls, text: str) -> DropRule:
        """`*-lost@example.org` (always) or `*-lost@example.orgx2` (the first two messages)."""
        match = DROP_RULE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a drop rule: {text!r} (want ADDRESS or ADDRESSxN)")
        times = match.group("times")
        return cls(match.group("address").lower(), int(times) if times else None)


class SinkHandler:
    """aiosmtpd handler: store every message; refuse recipients or drop replies as told."""

    def __init__(
        self,
        store: MailStore,
        rules: list[FailureRule] | None = None,
        discard: bool = False,
        hold: tuple[str, ...] = (),
        drops: list[DropRule] | None = None,
    ) -> None:
        self.store = store
        # Addresses whose first RCPT TO is left hanging (to test a sender dying mid-send).
        self.hold = {address.lower() for address in hold}
        self.rules = list(rules or [])
        self.drops = list(drops or [])
        # Per actual address, not per rule: a glob rule with x1 refuses each address once.
        self.refused: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        # Benchmarks measure the sender, not this sink's disk: each recipient is a line of
        # RECIPIENT_LOG (to check who got how many) and only the first message is kept whole
        # (SAMPLE_FILE, the bytes the wire limit is measured with).
        self.discard = discard
        self.received = 0
        self._recipient_log: Any = None

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd reads commands one after another, so it takes pipelined ones (RFC 2920)
        as any relay does; it only never says so."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]  # the last: "250 HELP"

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        key = address.lower()
        if key in self.hold:
            self.hold.discard(key)
            marker = os.path.join(self.store.directory, f"holding-{key}")
            os.makedirs(self.store.directory, exist_ok=True)
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(address)
            await asyncio.sleep(120)
            return "451 held too long by the test sink"
        # The last exact rule wins, as when rules were a dict by address; then the first glob.
        exact = [rule for rule in self.rules if rule.address == key]
        globs = [rule for rule in self.rules if address_matches(rule.address, key)]
        rule = exact[-1] if exact else next(iter(globs), None)
        if rule is not None:
            count = self.refused.get(key, 0)
            if rule.times is None or count < rule.times:
                self.refused[key] = count + 1
                kind = "temporarily" if rule.code < 500 else "permanently"
                return f"{rule.code} {address} refused {kind} by the test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _drop_reply(self, recipients: list[str]) -> bool:
        """Whether this message's 250 is to be lost, counting it against each matching address."""
        drop = False
        for recipient in recipients:
            key = recipient.lower()
            rule = next((r for r in self.drops if address_matches(r.address, key)), None)
            if rule is None:
                continue
            count = self.dropped.get(key, 0)
            if rule.times is None or count < rule.times:
                self.dropped[key] = count + 1
                drop = True
        return drop

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.received += 1
        recipients = [str(r) for r in envelope.rcpt_tos]
        ack_lost = self._drop_reply(recipients)
        raw = envelope.original_content or b""
        if not self.discard:
            self.store.save(str(envelope.mail_from), recipients, raw, ack_lost=ack_lost)
        else:
            self._count(recipients, raw)
        if ack_lost:
            # Stored first, then cut: exactly a relay that took the message and died before
            # answering. abort() discards anything unsent, so aiosmtpd's write of the reply
            # below goes nowhere, and connection_lost() then cancels this session's task.
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)  # set for as long as a session runs
            transport.abort()
            return "421 connection dropped by the test sink"
        return "250 Message accepted for delivery"

    def _count(self, recipients: list[str], raw: bytes) -> None:
        if self._recipient_log is None:
            os.makedirs(self.store.directory, exist_ok=True)
            with open(os.path.join(self.store.directory, SAMPLE_FILE), "wb") as sample:
                sample.write(raw)
            path = os.path.join(self.store.directory, RECIPIENT_LOG)
            self._recipient_log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._recipient_log.write("".join(f"{r}\n" for r in recipients))

    def close(self) -> None:
        if self._recipient_log is not None:
            self._recipient_log.close()
            self._recipient_log = None


RECIPIENT_LOG = "recipients.log"
SAMPLE_FILE = "sample.eml"


def discarded(directory: str) -> tuple[collections.Counter[str], bytes]:
    """What a discarding sink received: messages per recipient, and the first message."""
    counts: collections.Counter[str] = collections.Counter()
    log = os.path.join(directory, RECIPIENT_LOG)
    if os.path.exists(log):
        with open(log, encoding="utf-8") as lines:
            counts.update(line.rstrip("\n") for line in lines)
    sample = os.path.join(directory, SAMPLE_FILE)
    raw = b""
    if os.path.exists(sample):
        with open(sample, "rb") as handle:
            raw = handle.read()
    return counts, raw


class MailSink:
    """The sink on a socket: start() returns once it accepts connections."""

    def __init__(
        self,
        directory: str,
        host: str = "127.0.0.1",
        port: int = 8025,
        rules: list[FailureRule] | None = None,
        discard: bool = False,
        hold: tuple[str, ...] = (),
        drops: list[DropRule] | None = None,
    ) -> None:
        self.store = MailStore(directory)
        self.handler = SinkHandler(self.store, rules, discard, hold, drops)
        self.controller = Controller(
            self.handler, hostname=host, port=port, data_size_limit=64 * 1024 * 1024
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
        self.handler.close()

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(
    directory: str,
    host: str,
    port: int,
    stop: threading.Event,
    rules: list[FailureRule] | None = None,
    discard: bool = False,
    hold: tuple[str, ...] = (),
    drops: list[DropRule] | None = None,
) -> None:
    with MailSink(directory, host, port, rules, discard, hold, drops):
        stop.wait()
