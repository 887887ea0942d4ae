"""Fetching a feed from a server we do not trust.

- Only http and https, for the address and for every redirect (no ftp://, file:// ...).
- Only public addresses: the host is resolved at each connection (every redirect too) and a
  loopback, private, link-local or otherwise internal address is refused, whatever way it was
  written (`127.0.0.1`, `0x7f000001`, a name that resolves there). The connection goes to
  the very address that was checked, so a second lookup cannot point it elsewhere.
  `ALERTS_FEED_ALLOW` names the internal hosts (`host` or `host:port`) a newsroom lets through.
- One deadline for the whole fetch, connection and every read included: a server that
  drips a byte at a time cannot hold a worker past it.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from alerts.errors import AlertsError

MAX_FEED_BYTES = 10 * 1024 * 1024
SCHEMES = ("http", "https")


class FeedError(AlertsError):
    """The feed could not be read; the message says why, for the admin."""


@dataclass(frozen=True)
class Fetched:
    status: int  # 200, or 304 when nothing changed
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


def allowed(host: str, port: int | None, allow: Collection[str]) -> bool:
    """Whether `ALERTS_FEED_ALLOW` lets this host (or this host and port) through."""
    host = host.lower().strip("[]")
    return host in allow or (port is not None and f"{host}:{port}" in allow)


def internal(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified: not the internet."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def public_addresses(host: str, port: int, allow: Collection[str]) -> list[Any]:
    """getaddrinfo's answers for the host, all of them public (or the host allowed).

    Raises:
        FeedError: the host does not resolve, or resolves to an internal address.
    """
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise FeedError(f"cannot resolve {host}: {error}") from error
    if not allowed(host, port, allow):
        inside = [str(answer[4][0]) for answer in answers if internal(str(answer[4][0]))]
        if inside:
            raise FeedError(
                f"refused: {host} is on an internal network ({inside[0]}); "
                "ALERTS_FEED_ALLOW can let a newsroom's own host through"
            )
    return answers


class _Budget:
    """The fetch's deadline, and the socket reading against it."""

    def __init__(self, timeout: float, allow: Collection[str]) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.allow = frozenset(allow)
        self.sock: socket.socket | None = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FeedError(f"no answer within {self.timeout:.0f} s")
        return left

    def connect(self, host: str, port: int) -> socket.socket:
        error: OSError | None = None
        for family, kind, proto, _, address in public_addresses(host, port, self.allow):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.remaining())
                sock.connect(address)
            except OSError as failed:
                sock.close()
                error = failed
                continue
            self.sock = sock
            return sock
        raise error or OSError(f"cannot connect to {host}")


def _handlers(budget: _Budget) -> list[Any]:
    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = budget.connect(self.host, self.port)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = budget.connect(self.host, self.port)
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                sock, server_hostname=self.host
            )
            budget.sock = self.sock

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(SecureConnection, req, context=ssl.create_default_context())

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = 5

        def http_error_302(
            self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
        ) -> Any:
            target = urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
            if urlsplit(target).scheme.lower() not in SCHEMES:
                fp.close()
                raise FeedError(f"refused: a redirect to {target[:200]!r} (http and https only)")
            return super().http_error_302(req, fp, code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return [
        Handler(),
        SecureHandler(),
        Redirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ]


def fetch(
    url: str,
    etag: str | None,
    last_modified: str | None,
    timeout: float,
    allow: Collection[str] = (),
) -> Fetched:
    """GET the feed, conditionally, within `timeout` seconds in all.

    Raises:
        FeedError: refused, unreachable, too slow, too large, or an HTTP error.
    """
    if urlsplit(url).scheme.lower() not in SCHEMES:
        raise FeedError("refused: a feed address must be http:// or https://")
    headers = {
        "User-Agent": "news-alerts feed reader",
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    budget = _Budget(timeout, allow)
    # No proxies from the environment, no ftp or file handlers: only what is built here.
    opener = urllib.request.OpenerDirector()
    for handler in _handlers(budget):
        opener.add_handler(handler)
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - schemes checked
    try:
        with opener.open(request, timeout=timeout) as response:
            chunks: list[bytes] = []
            size = 0
            while True:
                if budget.sock is not None:
                    budget.sock.settimeout(budget.remaining())
                chunk = response.read1(64 * 1024)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise FeedError(f"the feed is larger than {MAX_FEED_BYTES // 2**20} MB")
            return Fetched(
                response.status,
                b"".join(chunks),
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
                {name.lower(): value for name, value in response.headers.items()},
            )
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection open
        if error.code == 304:
            return Fetched(304, etag=etag, last_modified=last_modified)
        raise FeedError(f"HTTP {error.code} {error.reason}") from error
    except TimeoutError as error:
        raise FeedError(f"no answer within {timeout:.0f} s") from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, FeedError):
            raise error.reason from error
        raise FeedError(f"cannot reach the feed: {error.reason}") from error
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise FeedError(f"cannot read the feed: {type(error).__name__}: {error}") from error
