"""The production topology (docker-compose.yml) end to end on PostgreSQL: gunicorn with 2
workers, two sending nodes of 2 processes each, the feeds node, beat, Redis with its
append-only file, the mail sink. A reader signs up and confirms, an article is published
and its alert arrives, a digest run to thousands of readers completes across both nodes
while one node is killed mid-run, a reader unsubscribes in one click; /metrics and the JSON
logs are read afterwards. `make topology` runs it and prints its figures.

It needs a PostgreSQL server (ALERTS_TOPOLOGY_POSTGRES_URL, by default the one on
127.0.0.1:5432): without one it is skipped, saying so, except under ALERTS_REQUIRE_POSTGRES=1
(.ci/run), where a missing server fails it.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import shlex
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import topology as description
from flask import Flask
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import func, select
from topology import Topology, running

from alerts import create_app, db
from alerts.devstack import wait_for
from alerts.mail.sink import MailStore
from alerts.models import DigestRecipient, Frequency, RecipientStatus, Subscriber
from alerts.models import SubscriberStatus as Status
from bench.common import add_readers
from bench.stack import fresh_database

from support import confirm_link_in, csrf_from

SERVER = os.environ.get("ALERTS_TOPOLOGY_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
READERS = int(os.environ.get("ALERTS_TOPOLOGY_READERS", "3000"))
PUBLIC = "https://alerts.example.org"
API_TOKEN = secrets.token_hex(16)
METRICS_TOKEN = secrets.token_hex(16)
# What an operator gives compose (its .env file).
VARIABLES = {
    "ALERTS_BASE_URL": PUBLIC,
    "ALERTS_SECRET_KEY": secrets.token_hex(32),
    "ALERTS_API_TOKEN": API_TOKEN,
    "ALERTS_ADMIN_PASSWORD": secrets.token_hex(16),
    "ALERTS_METRICS_TOKEN": METRICS_TOKEN,
    "ALERTS_PROXY_HOPS": "1",  # the test plays the TLS proxy in front of gunicorn
}
# Shorter than the shipped timings, so a dead node's batch is taken over within the test.
TIMINGS = {
    "ALERTS_SEND_STALE_AFTER": "10",
    "ALERTS_RECONCILE_INTERVAL": "5",
    "ALERTS_RATELIMIT_API": "100000 per minute",
}


def _server_answers() -> str | None:
    try:
        psycopg.connect(SERVER, connect_timeout=3).close()
        return None
    except psycopg.OperationalError as error:
        return str(error).strip()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    problem = _server_answers()
    if problem is not None:
        if os.environ.get("ALERTS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {SERVER} does not answer: {problem}")
        pytest.skip(
            f"the production topology needs a PostgreSQL server; {SERVER} does not answer "
            f"({problem}); set ALERTS_TOPOLOGY_POSTGRES_URL to one"
        )
    with fresh_database(SERVER, "") as url:
        yield url


class Proxy:
    """The TLS proxy in front of gunicorn, and a reader's browser behind it: public https
    addresses go to gunicorn with X-Forwarded-*, cookies are kept, redirects are not followed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        path = url.removeprefix(PUBLIC)
        connection = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        sent = {
            "Host": "alerts.example.org",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "alerts.example.org",
            "X-Forwarded-For": "203.0.113.7",
            "Referer": PUBLIC + "/",
            **(headers or {}),
        }
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value
        text = response.read().decode()
        connection.close()
        return response.status, text

    def form(self, url: str, fields: dict[str, Any]) -> tuple[int, str]:
        body = urllib.parse.urlencode(fields, doseq=True).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", url, body, headers)

    def api(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        status, text = self.request(
            method,
            path,
            json.dumps(payload).encode() if payload is not None else None,
            {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        )
        assert status in (200, 201, 202), (status, text)
        result: dict[str, Any] = json.loads(text)
        return result


def kill_node(topology: Topology, name: str) -> int:
    """SIGKILL a Celery node and its pool processes: a machine dying. Returns how many."""
    process = topology.processes[name].process
    assert process is not None
    root = psutil.Process(process.pid)
    victims = [root, *root.children(recursive=True)]
    for victim in victims:
        victim.kill()
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def held(app: Flask, run_id: int) -> dict[str, tuple[int, Any]]:
    """Readers of the run claimed and not yet sent, by lease: (how many, lease renewed at)."""
    with app.app_context():
        session = db.session()
        rows = session.execute(
            select(DigestRecipient.claim_token, func.count(), func.max(DigestRecipient.claimed_at))
            .where(
                DigestRecipient.run_id == run_id,
                DigestRecipient.status == RecipientStatus.QUEUED,
                DigestRecipient.claim_token.is_not(None),
            )
            .group_by(DigestRecipient.claim_token)
        ).all()
        return {token: (count, at) for token, count, at in rows}


def node_pids(topology: Topology) -> dict[str, set[int]]:
    """The processes of each sending node (its main process and its pool)."""
    pids = {}
    for name, child in topology.processes.items():
        if name.startswith("worker") and child.process is not None:
            root = psutil.Process(child.process.pid)
            pids[name] = {root.pid, *(c.pid for c in root.children(recursive=True))}
    return pids


def sent_by_node(topology: Topology, pids: dict[str, set[int]]) -> dict[str, int]:
    """Digests each node sent, from its processes' own metric files (multiprocess mode)."""
    sent = dict.fromkeys(pids, 0)
    for path in Path(topology.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        node = next((name for name, members in pids.items() if pid in members), None)
        if node is None:
            continue
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, labels, _help = json.loads(key)
            if sample == "alerts_emails_total" and labels == {"kind": "digest", "outcome": "sent"}:
                sent[node] += int(value)
    return sent


@pytest.mark.topology
@pytest.mark.timeout(900)
def test_the_production_topology_end_to_end(database: str, tmp_path: Path) -> None:
    report: list[str] = []
    started = time.monotonic()
    with running(database, VARIABLES, TIMINGS, tmp_path) as topology:
        app = create_app({"DATABASE_URL": database, "REDIS_URL": topology.env["ALERTS_REDIS_URL"]})
        mail = MailStore(str(tmp_path / "mail"))
        proxy = Proxy(topology.base_url)

        def ready() -> bool:
            return proxy.request("GET", "/readyz")[0] == 200

        try:
            wait_for(ready, 90, "/readyz")
        except TimeoutError:
            raise AssertionError(proxy.request("GET", "/readyz")[1] + topology.logs()) from None
        pids = node_pids(topology)
        report.append(
            f"ready (database, broker, a worker, beat) {time.monotonic() - started:.1f} s after start"
        )

        # A reader signs up through the form and confirms from the email.
        reader = "topology-reader@example.org"
        status, page = proxy.request("GET", "/")
        assert status == 200
        status, _ = proxy.form(
            "/subscribe",
            {
                "csrf_token": csrf_from(page),
                "email": reader,
                "topics": ["wipo"],
                "languages": ["en"],
                "frequency": "immediate",
            },
        )
        assert status == 303, topology.logs()
        wait_for(lambda: len(mail.to(reader)) == 1, 30, "the confirmation")
        link = confirm_link_in(mail.to(reader)[0].body("plain"))
        assert link.startswith(PUBLIC + "/confirm/")
        assert proxy.request("GET", link)[0] == 200
        wait_for(lambda: len(mail.to(reader)) == 2, 30, "the welcome email")

        # Thousands of daily readers of WIPO, then three WIPO stories published.
        with app.app_context():
            daily = add_readers(READERS, Frequency.DAILY, others=0)
        for number in range(3):
            proxy.api(
                "POST",
                "/api/v1/articles",
                {
                    "url": f"https://news.example.org/topology-{number}",
                    "title": f"WIPO committee story {number + 1}",
                    "summary": "<p>Member states met in Geneva on the broadcasting treaty.</p>",
                    "language": "en",
                    "topics": ["WIPO"],
                },
            )
        wait_for(lambda: len(mail.to(reader)) == 5, 60, "the three alerts")
        subjects = " | ".join(m.subject for m in mail.to(reader)[2:])
        assert all(f"WIPO committee story {n}" in subjects for n in (1, 2, 3)), subjects
        report.append(
            f"signup -> confirmation -> welcome -> 3 alerts to the reader: {time.monotonic() - started:.1f} s"
        )

        # A digest run to every daily reader, across both sending nodes; node a dies mid-run.
        run_started = time.monotonic()
        run_id = proxy.api("POST", "/api/v1/digests", {"frequency": "daily"})["id"]
        progress: dict[str, Any] = {}

        def sent_at_least(count: int) -> bool:
            progress.update(proxy.api("GET", f"/api/v1/digests/{run_id}"))
            return int(progress["sent"]) >= count or bool(progress["done"])

        wait_for(lambda: sent_at_least(READERS // 4), 120, "a quarter of the digests")
        before_kill = held(app, run_id)
        killed = kill_node(topology, "worker-a")
        killed_at = time.monotonic()
        sent_at_kill = int(progress["sent"])
        time.sleep(3)  # longer than a lease renewal (SEND_STALE_AFTER / 6): live leases move on
        after = held(app, run_id)
        orphaned = {t: c for t, (c, at) in before_kill.items() if after.get(t, (0, None))[1] == at}
        left = sum(orphaned.values())
        taken_over_at = None
        while not sent_at_least(READERS):
            if taken_over_at is None and not set(orphaned) & set(held(app, run_id)):
                taken_over_at = time.monotonic()
            time.sleep(0.5)
            assert time.monotonic() - run_started < 300, topology.logs()
        taken_over_at = taken_over_at or time.monotonic()
        run_seconds = time.monotonic() - run_started

        counts = collections.Counter(
            r for m in mail.all() for r in m.recipients if r.startswith("reader")
        )
        lost = [address for address in daily if counts[address] == 0]
        doubled = sum(count - 1 for address, count in counts.items() if count > 1)
        by_node = sent_by_node(topology, pids)
        assert progress["done"] and lost == [], f"{len(lost)} readers got no digest"
        # The documented window: one message in flight per killed pool process (the relay's
        # 250 came, its outcome was not yet committed); the node's parent sends nothing.
        assert doubled <= killed - 1, (
            f"{doubled} digests went twice (more than one in flight per process)"
        )
        assert by_node["worker-b"] > 0 and by_node["worker-a"] > 0, by_node
        report += [
            f"digest run to {READERS:,} readers: {run_seconds:.1f} s, {int(progress['sent']):,} sent, "
            f"{len(lost)} lost, {doubled} sent twice",
            f"  node worker-a SIGKILLed ({killed} processes) after {sent_at_kill:,} digests; "
            f"it held {left} readers under {len(orphaned)} lease(s)",
            f"  taken over {taken_over_at - killed_at:.1f} s after the kill (lease stale after "
            f"{TIMINGS['ALERTS_SEND_STALE_AFTER']} s, reconciler every {TIMINGS['ALERTS_RECONCILE_INTERVAL']} s)",
            "  sent per node (from their processes' metric files): "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(by_node.items())),
        ]

        # One reader leaves in one click, from their digest's List-Unsubscribe header.
        digest = next(m for m in mail.all() if m.recipients == [daily[0]])
        unsubscribe = digest.parsed()["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith(PUBLIC + "/unsubscribe/")
        status, _ = proxy.form(unsubscribe, {"List-Unsubscribe": "One-Click"})
        assert status == 200
        with app.app_context():
            gone = db.session().scalar(select(Subscriber).where(Subscriber.email == daily[0]))
            assert gone is not None and gone.status is Status.UNSUBSCRIBED

        # What the operator sees: /metrics (every process added up) and a JSON log line.
        assert proxy.request("GET", "/metrics")[0] == 401
        status, exposition = proxy.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert status == 200
        digests_sent = _sample(exposition, 'alerts_emails_total{kind="digest",outcome="sent"}')
        # The counters count outcomes committed: the sink's count but for a digest the relay
        # took from the killed node before its outcome was recorded; and a killed process may
        # die between recording an outcome and counting it (at most one each).
        committed = sum(counts[a] for a in daily) - doubled
        assert committed - killed <= digests_sent <= committed
        assert _sample(exposition, 'alerts_unsubscribes_total{way="one-click"}') == 1
        assert _sample(exposition, 'alerts_emails_total{kind="alert",outcome="sent"}') == 3
        assert _sample(exposition, 'alerts_deliveries_waiting{kind="digest"}') == 0
        json_line = next(
            line
            for line in topology.log("worker-b").read_text().splitlines()
            if line.startswith("{") and '"run_id"' in line and "sent" in line
        )
        entry = json.loads(json_line)
        assert entry["run_id"] == run_id and entry["task_id"] and "@" not in json_line
        # gunicorn's, Celery's and beat's own lines come through the same formatter: no
        # banners, no plain prints.
        for name in ("web", "worker-b", "feeds", "beat"):
            lines = topology.log(name).read_text().splitlines()
            plain = [line for line in lines if line.strip() and not line.startswith("{")]
            assert lines and plain == [], f"{name}: {plain[:5]}"
            assert all(json.loads(line)["level"] for line in lines if line.strip())
        app.extensions["alerts.engine"].dispose()

    report.append(f"whole run: {time.monotonic() - started:.1f} s")
    sample = [
        line
        for line in exposition.splitlines()
        if line.startswith(
            (
                "alerts_emails_total",
                "alerts_deliveries_waiting",
                "alerts_relay_up",
                "alerts_signups_total",
                "alerts_unsubscribes_total",
                "alerts_smtp_send_seconds_count",
                "alerts_digest_run",
            )
        )
    ]
    print("\n== production topology\n" + "\n".join(report))
    print("== /metrics (a sample)\n" + "\n".join(sample))
    print("== a JSON log line (worker-b)\n" + json_line)


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# The description cannot drift: what `make topology` runs is docker-compose.yml's.


def test_every_compose_service_runs_or_has_a_stand_in() -> None:
    services = description.compose()["services"]
    apps = description.app_services()
    assert set(apps) == {"migrate", "web", "worker", "feeds", "beat"}
    assert set(services) - set(apps) == set(description.STAND_INS)


def test_the_processes_are_composes_commands_with_only_addresses_changed(tmp_path: Path) -> None:
    planned = description.plan(VARIABLES, 8123, str(tmp_path))
    compose = description.compose()["services"]
    for process in planned:
        command = description.interpolate(compose[process.service]["command"], VARIABLES)
        words = shlex.split(command)
        if process.one_shot:
            parts = [shlex.split(part) for part in words[2].split("&&")]
            assert process.argv[3:] in [part[1:] for part in parts]
            continue
        assert len(process.argv) == len(words) + 2  # "alerts" is `python -m alerts.cli`, ...
        for given, ours in zip(words[1:], process.argv[3:], strict=True):
            if given != ours:
                option = words[words.index(given) - 1]
                assert option in description.REWRITES, (process.name, given, ours)
    names = [p.name for p in planned if not p.one_shot]
    assert names == ["web", "worker-a", "worker-b", "feeds", "beat"]
    nodes = {p.argv[p.argv.index("--hostname") + 1] for p in planned if p.service == "worker"}
    assert nodes == {"send-a@%h", "send-b@%h"}
    web = next(p for p in planned if p.name == "web")
    assert web.argv[web.argv.index("--workers") + 1] == "2"
    assert web.argv[web.argv.index("--bind") + 1] == "127.0.0.1:8123"


def test_only_settings_that_name_a_compose_host_or_volume_are_replaced() -> None:
    environment = description.compose()["x-alerts-env"]
    hosts = ("@postgres:", "//redis:", "//mailpit:")
    naming = {
        key
        for key, value in environment.items()
        if any(host in str(value) for host in hosts) or str(value).startswith("/")
    }
    assert naming == set(description.ADDRESSES)


def test_the_redis_stand_in_keeps_composes_persistence(tmp_path: Path) -> None:
    server = description.PersistentRedis(str(tmp_path))
    assert server.argv[-4:] == ["--appendonly", "yes", "--appendfsync", "everysec"]
    assert description.redis_arguments() == server.argv[-4:]


def test_compose_interpolation() -> None:
    assert description.interpolate("${A:-2} ${B:-x}", {"A": "4"}) == "4 x"
    with pytest.raises(KeyError, match="set it"):
        description.interpolate("${C:?set it}", {})
