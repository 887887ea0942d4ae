"""Signups through gunicorn (2 workers), the Celery worker sending the confirmations on the
same machine: POST /subscribe per second and its latency, with 8 client threads; then the
sink checks every new reader got their confirmation, once."""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie

from bench import report
from bench.alerts import SinkTail
from bench.common import bar, check_received
from bench.stack import running

CLIENTS = 8
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Client:
    """One browser: its session cookie and CSRF token, a new connection per request (the
    sync gunicorn workers close each one)."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        status, headers, body = self.request("GET", "/")
        assert status == 200, status
        cookie = SimpleCookie()
        for name, value in headers:
            if name.lower() == "set-cookie":
                cookie.load(value)
        self.cookie = "; ".join(f"{key}={morsel.value}" for key, morsel in cookie.items())
        match = CSRF.search(body.decode())
        assert match, "the signup page has no CSRF token"
        self.token = match.group(1)

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def sign_up(self, address: str) -> float:
        form = urllib.parse.urlencode(
            [
                ("csrf_token", self.token),
                ("email", address),
                ("topics", "wipo"),
                ("topics", "patents"),
                ("languages", "en"),
                ("frequency", "daily"),
                ("locale", "en"),
                ("timezone", "Europe/Zurich"),
            ]
        )
        started = time.perf_counter()
        status, _headers, _body = self.request(
            "POST",
            "/subscribe",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie},
        )
        elapsed = time.perf_counter() - started
        assert status == 303, f"POST /subscribe answered {status}"
        return elapsed


def run(args: argparse.Namespace) -> None:
    total = args.signups
    print(
        f"signup: {total:,} POST /subscribe from {CLIENTS} client threads, gunicorn with 2 "
        f"workers, {args.concurrency} worker processes sending the confirmations"
    )
    with running(args.database_url, args.concurrency) as stack:
        clients = [Client(stack.base_url) for _ in range(CLIENTS)]
        addresses = [f"signup{number}@example.org" for number in range(total)]
        latencies: list[float] = []
        lock = threading.Lock()

        def work(client: Client, share: list[str]) -> None:
            for address in share:
                elapsed = client.sign_up(address)
                with lock:
                    latencies.append(elapsed)

        threads = [
            threading.Thread(target=work, args=(client, addresses[index::CLIENTS]))
            for index, client in enumerate(clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            bar(len(latencies), total, started, "signed up")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        bar(total, total, started, "signed up")
        print(file=sys.stderr)
        assert len(latencies) == total, "a client thread failed"
        # Every confirmation out before the sink is read.
        deadline = time.monotonic() + 120
        tail = SinkTail(stack)
        while tail.poll() < total and time.monotonic() < deadline:
            time.sleep(0.2)
        counts, _sample = stack.received()
        print(f"  {check_received(counts, addresses, 1, 'confirmation')}")
    rate = total / elapsed
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    report.add(
        "signup, POST /subscribe",
        f"{rate:,.0f}/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms",
        ">= 300/s, p99 < 100 ms",
        rate >= 300 and p99 < 100,
    )
