"""A local SMTP server that keeps every message it receives, for `alerts dev` and the tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
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

    def save(self, mail_from: str, recipients: list[str], raw: bytes) -> str:
        os.makedirs(self.directory, exist_ok=True)
        message_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        meta = {
            "mail_from": mail_from,
            "recipients": recipients,
            "received_at": datetime.now(UTC).isoformat(),
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
        )

    def all(self) -> list[StoredMessage]:
        return [m for m in (self.get(message_id) for message_id in self.ids()) if m is not None]

    def to(self, address: str) -> list[StoredMessage]:
        return [m for m in self.all() if address.lower() in (r.lower() for r in m.recipients)]


@dataclass
class FailureRule:
    """Answer `code` to RCPT TO for `address`: the first `times` times, or always (None)."""

    address: str
    code: int
    times: int | None = None

    @classmethod
    def parse(cls, text: str) -> FailureRule:
        """`bad@example.org=550` (always) or `slow@example.org=451x2` (the first two times)."""
        address, _, answer = text.rpartition("=")
        code, _, times = answer.partition("x")
        if not address or not code.isdigit() or (times and not times.isdigit()):
            raise ValueError(f"not a failure rule: {text!r} (want ADDRESS=CODE or ADDRESS=CODExN)")
        return cls(address.lower(), int(code), int(times) if times else None)


class SinkHandler:
    """aiosmtpd handler: store every message; refuse recipients as the failure rules say."""

    def __init__(
        self,
        store: MailStore,
        rules: list[FailureRule] | None = None,
        discard: bool = False,
        hold: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        # Addresses whose first RCPT TO is left hanging (to test a sender dying mid-send).
        self.hold = {address.lower() for address in hold}
        self.rules = {rule.address: rule for rule in rules or []}
        self.refused: dict[str, int] = {}
        # Benchmarks measure the sender, not this sink's disk: accept and count only.
        self.discard = discard
        self.received = 0

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.hold:
            self.hold.discard(address.lower())
            marker = os.path.join(self.store.directory, f"holding-{address.lower()}")
            os.makedirs(self.store.directory, exist_ok=True)
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(address)
            await asyncio.sleep(120)
            return "451 held too long by the test sink"
        rule = self.rules.get(address.lower())
        if rule is not None:
            count = self.refused.get(rule.address, 0)
            if rule.times is None or count < rule.times:
                self.refused[rule.address] = count + 1
                kind = "temporarily" if rule.code < 500 else "permanently"
                return f"{rule.code} {address} refused {kind} by the test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.received += 1
        if not self.discard:
            raw = envelope.original_content or b""
            self.store.save(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], raw)
        return "250 Message accepted for delivery"


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
    ) -> None:
        self.store = MailStore(directory)
        self.handler = SinkHandler(self.store, rules, discard, hold)
        self.controller = Controller(
            self.handler, hostname=host, port=port, data_size_limit=64 * 1024 * 1024
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

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
) -> None:
    with MailSink(directory, host, port, rules, discard, hold):
        stop.wait()
