"""A throwaway stack for benchmarks: database, embedded Redis, counting SMTP sink, workers, web."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from alerts import create_app, migrations, taxonomy
from alerts.db import make_engine
from alerts.devstack import (
    ChildProcess,
    EmbeddedRedis,
    celery_worker_argv,
    free_port,
    mail_sink_argv,
    port_open,
    wait_for,
)


@dataclass
class BenchStack:
    app: Flask
    base_url: str
    directory: str


@contextmanager
def running(
    database_url: str | None, concurrency: int, extra: dict[str, str] | None = None
) -> Iterator[BenchStack]:
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as directory:
        url = database_url or f"sqlite:///{directory}/bench.db"
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
            **(extra or {}),
        }
        env = {**os.environ, **settings}
        processes: list[ChildProcess] = [redis]
        server: Any = None
        app: Flask | None = None
        try:
            sink = ChildProcess(
                "sink",
                mail_sink_argv(
                    "127.0.0.1", smtp_port, os.path.join(directory, "mail"), discard=True
                ),
                env,
                os.path.join(directory, "sink.log"),
            ).start()
            processes.append(sink)
            worker_log = os.path.join(directory, "worker.log")
            argv = celery_worker_argv(concurrency=concurrency, loglevel="INFO")
            worker = ChildProcess("worker", argv, env, worker_log).start()
            processes.append(worker)
            app = create_app(
                {key.removeprefix("ALERTS_"): value for key, value in settings.items()}
            )
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = make_server("127.0.0.1", web_port, app, threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            wait_for(lambda: port_open("127.0.0.1", smtp_port), 20, "sink")
            wait_for(lambda: _ready(worker_log), 60, "worker")
            yield BenchStack(app, settings["ALERTS_BASE_URL"], directory)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            if app is not None:
                app.extensions["alerts.engine"].dispose()
            for process in reversed(processes):
                process.stop()


def _ready(log_path: str) -> bool:
    with open(log_path, "rb") as handle:
        return b"ready." in handle.read()
