"""A throwaway stack for benchmarks: a database, embedded Redis, a discarding SMTP sink that
counts who got what, Celery workers and gunicorn, each a process of its own whose memory is
sampled while the benchmark runs."""

from __future__ import annotations

import collections
import logging
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from alerts import create_app, migrations, taxonomy
from alerts.db import make_engine, normalize_url
from alerts.devstack import (
    ChildProcess,
    EmbeddedRedis,
    celery_beat_argv,
    celery_worker_argv,
    free_port,
    mail_sink_argv,
    port_open,
    wait_for,
)
from alerts.mail.sink import discarded

UNLIMITED = "1000000 per second"


class Peaks:
    """Peak resident memory of each process of each role, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.roots: dict[str, ChildProcess] = {}
        self.peak: dict[str, int] = collections.defaultdict(int)  # role -> bytes, any process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def watch(self, role: str, process: ChildProcess) -> None:
        self.roots[role] = process

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for role, child in list(self.roots.items()):
                if child.process is None:
                    continue
                try:
                    root = psutil.Process(child.process.pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in tree:
                    try:
                        rss = process.memory_info().rss
                    except psutil.Error:
                        continue
                    self.peak[role] = max(self.peak[role], rss)

    def summary(self) -> str:
        return ", ".join(f"{role} {self.peak[role] / 2**20:,.0f} MB" for role in sorted(self.peak))


@dataclass
class BenchStack:
    app: Flask
    base_url: str
    directory: str
    sink: ChildProcess
    peaks: Peaks
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def mail_dir(self) -> str:
        return os.path.join(self.directory, "mail")

    def received(self) -> tuple[collections.Counter[str], bytes]:
        """Stops the sink (flushing its count) and returns messages per recipient and the
        first message it took."""
        self.sink.stop()
        return discarded(self.mail_dir)


def gunicorn_argv(port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "-c", "python:alerts.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "alerts:create_app()",
    ]  # fmt: skip


@contextmanager
def running(
    database_url: str | None,
    concurrency: int,
    extra: dict[str, str] | None = None,
    beat: bool = False,
) -> Iterator[BenchStack]:
    with (
        tempfile.TemporaryDirectory(prefix="alerts-bench-") as directory,
        fresh_database(database_url, directory) as url,
    ):
        migrations.upgrade(url)
        engine = make_engine(url)
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            taxonomy.seed(session)
            session.commit()
        engine.dispose()

        redis = EmbeddedRedis(os.path.join(directory, "redis")).start()
        smtp_port, web_port = free_port(), free_port()
        settings = {
            "ALERTS_DATABASE_URL": url,
            "ALERTS_REDIS_URL": redis.url,
            "ALERTS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "ALERTS_BASE_URL": f"http://127.0.0.1:{web_port}",
            "ALERTS_SECRET_KEY": "bench-secret",
            "ALERTS_API_TOKEN": "dev-api-token",
            # The benchmark is one client at thousands of requests: no abuse limits.
            "ALERTS_RATELIMIT_API": UNLIMITED,
            "ALERTS_RATELIMIT_SUBSCRIBE_IP": UNLIMITED,
            "ALERTS_RATELIMIT_SUBSCRIBE_ADDRESS": UNLIMITED,
            **(extra or {}),
        }
        env = {**os.environ, **settings}
        processes: list[ChildProcess] = [redis]
        peaks = Peaks()
        app: Flask | None = None
        try:
            mail_dir = os.path.join(directory, "mail")
            sink = ChildProcess(
                "sink",
                mail_sink_argv("127.0.0.1", smtp_port, mail_dir, discard=True),
                env,
                os.path.join(directory, "sink.log"),
            ).start()
            processes.append(sink)
            worker_log = os.path.join(directory, "worker.log")
            argv = celery_worker_argv(concurrency=concurrency, loglevel="INFO")
            worker = ChildProcess("worker", argv, env, worker_log).start()
            processes.append(worker)
            web = ChildProcess(
                "web", gunicorn_argv(web_port), env, os.path.join(directory, "web.log")
            ).start()
            processes.append(web)
            peaks.watch("worker", worker)
            peaks.watch("web", web)
            if beat:
                schedule = os.path.join(directory, "beat-schedule")
                beat_process = ChildProcess(
                    "beat", celery_beat_argv(schedule), env, os.path.join(directory, "beat.log")
                ).start()
                processes.append(beat_process)
                peaks.watch("beat", beat_process)
            app = create_app(
                {key.removeprefix("ALERTS_"): value for key, value in settings.items()}
            )
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            wait_for(lambda: port_open("127.0.0.1", smtp_port), 20, "sink")
            wait_for(lambda: port_open("127.0.0.1", web_port), 30, "gunicorn")
            wait_for(lambda: _ready(worker_log), 60, "worker")
            peaks.start()
            yield BenchStack(app, settings["ALERTS_BASE_URL"], directory, sink, peaks, settings)
        finally:
            peaks.stop()
            if app is not None:
                app.extensions["alerts.engine"].dispose()
            for process in reversed(processes):
                process.stop()


@contextmanager
def fresh_database(server_url: str | None, directory: str) -> Iterator[str]:
    """A new SQLite file, or a new database on the PostgreSQL server of `server_url`,
    dropped afterwards: a benchmark never touches data of its own or anyone else's."""
    if not server_url:
        yield f"sqlite:///{directory}/bench.db"
        return
    admin_url = normalize_url(server_url)
    name = f"alerts_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ready(log_path: str) -> bool:
    with open(log_path, "rb") as handle:
        return b"ready." in handle.read()
