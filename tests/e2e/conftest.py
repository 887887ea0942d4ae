"""Real processes: embedded Redis, SMTP sink, Celery worker and web app, on free ports."""

from __future__ import annotations

import json
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
    free_port,
    mail_sink_argv,
    port_open,
    wait_for,
)
from alerts.mail.sink import MailStore

from processes import Browser, Stack


def typed(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


# Retries in fractions of a second, so a 4xx-then-250 test takes no minutes (`make faults`
# keeps the shipped timings instead).
SHORT_RETRIES = (
    {}
    if os.environ.get("ALERTS_FAULT_DEFAULT_TIMINGS") == "1"
    else {
        "ALERTS_SEND_RETRY_BACKOFF": "0.3",
        "ALERTS_RELAY_BACKOFF": "0.5",
        "ALERTS_RELAY_BACKOFF_MAX": "2",
    }
)


@pytest.fixture
def stack(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Markers shape it: sink_failures("addr=451x1"), sink_drops("glob[xN]"), sink_hold("addr"),
    settings(NAME="v")."""
    marker = request.node.get_closest_marker("sink_failures")
    failures = list(marker.args) if marker else []
    drops_marker = request.node.get_closest_marker("sink_drops")
    drops = list(drops_marker.args) if drops_marker else []
    hold_marker = request.node.get_closest_marker("sink_hold")
    hold = list(hold_marker.args) if hold_marker else []
    settings_marker = request.node.get_closest_marker("settings")
    extra = dict(settings_marker.kwargs) if settings_marker else {}
    redis = EmbeddedRedis(str(tmp_path / "redis"), persist=True).start()
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
        **SHORT_RETRIES,
        **extra,
    }
    env = {**os.environ, **settings}
    processes: list[ChildProcess] = [redis]
    server = None
    app = None
    try:
        sink = ChildProcess(
            "mail-sink",
            mail_sink_argv("127.0.0.1", smtp_port, mail_dir, failures, hold=hold, drops=drops),
            env,
            str(tmp_path / "sink.log"),
        ).start()
        processes.append(sink)
        # The same settings the worker reads from its environment, typed as Flask types them.
        app = create_app(
            {key.removeprefix("ALERTS_"): typed(value) for key, value in settings.items()}
        )
        server = make_server("127.0.0.1", web_port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wait_for(lambda: port_open("127.0.0.1", smtp_port), 20, "mail sink")
        stack = Stack(
            base_url, app, MailStore(mail_dir), redis.url, processes, env, tmp_path, redis, sink
        )
        stack.start_worker()
        yield stack
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
