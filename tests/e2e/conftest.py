"""Real processes: embedded Redis, SMTP sink, Celery worker and web app, on free ports."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from alerts import create_app
from alerts.devstack import (
    ChildProcess,
    EmbeddedRedis,
    celery_worker_argv,
    free_port,
    mail_sink_argv,
    port_open,
    wait_for,
)
from alerts.mail.sink import MailStore

from processes import Browser, Stack


@pytest.fixture
def stack(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Use @pytest.mark.sink_failures("addr=451x1", ...) to make the sink refuse addresses."""
    marker = request.node.get_closest_marker("sink_failures")
    failures = list(marker.args) if marker else []
    redis = EmbeddedRedis(str(tmp_path / "redis")).start()
    smtp_port = free_port()
    web_port = free_port()
    mail_dir = str(tmp_path / "mail")
    base_url = f"http://127.0.0.1:{web_port}"
    settings = {
        "ALERTS_DATABASE_URL": database_url,
        "ALERTS_REDIS_URL": redis.url,
        "ALERTS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "ALERTS_BASE_URL": base_url,
        "ALERTS_SECRET_KEY": "e2e-secret",
        "ALERTS_DEV_MAIL_DIR": mail_dir,
        # Retries in fractions of a second, so a 4xx-then-250 test takes no minutes.
        "ALERTS_SEND_RETRY_BACKOFF": "0.3",
    }
    env = {**os.environ, **settings}
    processes: list[ChildProcess] = [redis]
    server = None
    app = None
    try:
        sink = ChildProcess(
            "mail-sink",
            mail_sink_argv("127.0.0.1", smtp_port, mail_dir, failures),
            env,
            str(tmp_path / "sink.log"),
        ).start()
        processes.append(sink)
        worker = ChildProcess(
            "worker", celery_worker_argv(concurrency=2), env, str(tmp_path / "worker.log")
        ).start()
        processes.append(worker)
        app = create_app({key.removeprefix("ALERTS_"): value for key, value in settings.items()})
        app.config["SEND_RETRY_BACKOFF"] = 0.3
        server = make_server("127.0.0.1", web_port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wait_for(lambda: port_open("127.0.0.1", smtp_port), 20, "mail sink")
        wait_for(lambda: b"ready." in Path(worker.log_path or "").read_bytes(), 60, "celery worker")
        yield Stack(base_url, app, MailStore(mail_dir), redis.url, processes)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if app is not None:
            app.extensions["alerts.engine"].dispose()
        for process in reversed(processes):
            process.stop()


@pytest.fixture
def browser(stack: Stack) -> Browser:
    return Browser(stack.base_url)
