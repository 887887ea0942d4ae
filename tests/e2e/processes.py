"""The end-to-end stack and a reader's browser, shared by the e2e tests."""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from flask import Flask
from sqlalchemy import func, select

from alerts import db
from alerts.devstack import (
    ChildProcess,
    EmbeddedRedis,
    celery_beat_argv,
    celery_worker_argv,
    port_open,
    wait_for,
)
from alerts.mail.sink import MailStore, StoredMessage
from alerts.models import (
    Article,
    ArticleRevision,
    Delivery,
    DeliveryStatus,
    DigestRecipient,
    NoticeKind,
    RecipientStatus,
    RevisionNotice,
)


@dataclass
class Stack:
    base_url: str
    app: Flask
    mail: MailStore
    redis_url: str
    processes: list[ChildProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    redis: EmbeddedRedis | None = None
    sink: ChildProcess | None = None
    workers_started: int = 0

    def start_worker(self) -> ChildProcess:
        self.workers_started += 1
        log_path = str((self.directory or Path(".")) / f"worker-{self.workers_started}.log")
        worker = ChildProcess("worker", celery_worker_argv(concurrency=2), self.env, log_path)
        worker.start()
        self.processes.append(worker)
        wait_for(lambda: b"ready." in Path(log_path).read_bytes(), 60, "celery worker")
        return worker

    def start_beat(self) -> ChildProcess:
        """Celery beat: the reconciler and the other periodic jobs."""
        directory = self.directory or Path(".")
        log_path = str(directory / "beat.log")
        beat = ChildProcess(
            "beat", celery_beat_argv(str(directory / "celerybeat-schedule")), self.env, log_path
        )
        beat.start()
        self.processes.append(beat)
        wait_for(lambda: b"beat: Starting" in Path(log_path).read_bytes(), 60, "celery beat")
        return beat

    def kill_worker(self) -> int:
        """SIGKILL the worker and its pool processes: a machine dying mid-send. Returns how
        many processes were sending."""
        killed = 0
        for worker in [p for p in self.processes if p.name == "worker" and p.running()]:
            assert worker.process is not None
            tree = psutil.Process(worker.process.pid)
            victims = [tree, *tree.children(recursive=True)]
            for victim in victims:
                victim.kill()
            killed += len(victims) - 1
            psutil.wait_procs(victims, timeout=10)
            worker.stop()
        return killed

    def kill_redis(self, keep_data: bool = True) -> None:
        """SIGKILL redis-server; without `keep_data`, its append-only file goes too."""
        assert self.redis is not None
        self.redis.kill()
        if not keep_data:
            for name in os.listdir(self.redis.directory):
                if name.startswith("appendonly") or name.endswith(".rdb"):
                    path = os.path.join(self.redis.directory, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)

    def start_redis(self) -> None:
        """redis-server again on the same port and folder (what a restart does)."""
        assert self.redis is not None
        self.redis.start()

    def stop_relay(self) -> None:
        """The SMTP relay goes away: connections are refused until start_relay()."""
        assert self.sink is not None
        self.sink.stop()

    def start_relay(self) -> None:
        assert self.sink is not None and self.sink.process is not None
        self.sink.start()
        port = int(self.env["ALERTS_SMTP_URL"].rsplit(":", 1)[1])
        wait_for(lambda: port_open("127.0.0.1", port), 20, "mail sink")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)

    def wait_for_mail(
        self, predicate: Callable[[StoredMessage], bool], timeout: float = 30, count: int = 1
    ) -> list[StoredMessage]:
        """Wait until `count` received messages match; returns them."""
        found: list[StoredMessage] = []

        def arrived() -> bool:
            found[:] = [m for m in self.mail.all() if predicate(m)]
            return len(found) >= count

        try:
            wait_for(arrived, timeout, "the email")
        except TimeoutError:
            raise AssertionError(
                f"{len(found)} of {count} emails within {timeout}s\n{self.logs()}"
            ) from None
        return found

    def to(self, address: str) -> list[StoredMessage]:
        return self.mail.to(address)

    def settle(self, timeout: float = 30, count_unacked: bool = True) -> None:
        """Wait until the database says nothing is owed (no article awaiting fan-out, no
        pending delivery, no queued digest reader, no correction email to find or send) and
        the broker holds no task.

        A killed worker leaves its tasks unacknowledged (redelivered only after the visibility
        timeout): pass count_unacked=False after a kill."""
        client = redis.Redis.from_url(self.redis_url)
        quiet_since: float | None = None

        def idle() -> bool:
            nonlocal quiet_since
            with self.app.app_context():
                session = db.session()
                owed = sum(
                    int(session.scalar(query) or 0)
                    for query in (
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status == DeliveryStatus.PENDING),
                        select(func.count())
                        .select_from(DigestRecipient)
                        .where(DigestRecipient.status == RecipientStatus.QUEUED),
                        select(func.count())
                        .select_from(Article)
                        .where(Article.fanned_out_at.is_(None)),
                        select(func.count())
                        .select_from(RevisionNotice)
                        .where(
                            RevisionNotice.kind == NoticeKind.CORRECTION,
                            RevisionNotice.status == DeliveryStatus.PENDING,
                        ),
                        select(func.count())
                        .select_from(ArticleRevision)
                        .where(
                            ArticleRevision.correction,
                            ArticleRevision.notices_done_at.is_(None),
                        ),
                    )
                )
                session.rollback()
            try:
                queued = client.llen("celery") or (count_unacked and client.hlen("unacked"))
            except redis.RedisError:
                queued = 1
            if owed or queued:
                quiet_since = None
                return False
            quiet_since = quiet_since or time.monotonic()
            return time.monotonic() - quiet_since > 0.5

        try:
            wait_for(idle, timeout, "the workers to finish")
        except TimeoutError:
            raise AssertionError(f"still busy after {timeout}s\n{self.logs()}") from None
        finally:
            client.close()


class Browser:
    """A reader's browser (or a publisher's script): keeps cookies, speaks real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        url = path if path.startswith("http") else self.base_url + path
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers=headers or {})
        if json_body is not None:
            request.data = json.dumps(json_body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def publish(
        self, article: dict[str, Any], token: str = "dev-api-token"
    ) -> tuple[int, dict[str, Any]]:
        status, body = self.request(
            "/api/v1/articles", json_body=article, headers={"Authorization": f"Bearer {token}"}
        )
        return status, json.loads(body)
