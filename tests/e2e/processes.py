"""The end-to-end stack and a reader's browser, shared by the e2e tests."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from alerts.devstack import (
    ChildProcess,
    wait_for,
)
from alerts.mail.sink import MailStore, StoredMessage


@dataclass
class Stack:
    base_url: str
    app: Flask
    mail: MailStore
    processes: list[ChildProcess] = field(default_factory=list)

    def wait_for_mail(
        self, predicate: Callable[[StoredMessage], bool], timeout: float = 30
    ) -> StoredMessage:
        found: list[StoredMessage] = []

        def arrived() -> bool:
            found[:] = [m for m in self.mail.all() if predicate(m)]
            return bool(found)

        try:
            wait_for(arrived, timeout, "the email")
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)
            raise AssertionError(f"no matching email within {timeout}s\n{logs}") from None
        return found[0]


class Browser:
    """A reader's browser: keeps cookies, follows redirects, speaks real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, path: str, data: dict[str, Any] | None = None) -> tuple[int, str]:
        url = path if path.startswith("http") else self.base_url + path
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        try:
            with self.opener.open(url, data=body, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
