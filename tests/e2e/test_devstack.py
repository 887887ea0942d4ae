"""`alerts dev` (what `make run` runs): serves the signup page, stops everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from alerts.devstack import DEV_METRICS_TOKEN, free_port, wait_for


def start_dev(cwd: Path, port: int, smtp_port: int) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALERTS_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alerts.cli",
            "dev",
            "--port",
            str(port),
            "--smtp-port",
            str(smtp_port),
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def run_once(cwd: Path) -> str:
    port, smtp_port = free_port(), free_port()
    dev = start_dev(cwd, port, smtp_port)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/")[0] == 200, 60, "alerts dev")
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"status":"ok"}\n')
        # Ready once the worker answers a ping and beat has ticked.
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "/readyz")
        assert json.loads(get(f"http://127.0.0.1:{port}/readyz")[1]) == {
            "status": "ok",
            "database": "ok",
            "broker": "ok",
            "worker": "ok",
            "beat": "ok",
        }
        assert get(f"http://127.0.0.1:{port}/dev/mail/")[0] == 200
        metrics = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Authorization": f"Bearer {DEV_METRICS_TOKEN}"},
        )
        with urllib.request.urlopen(metrics, timeout=5) as response:
            assert b"alerts_deliveries_waiting" in response.read()
        children = psutil.Process(dev.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "redis-server" in names and "mail-sink" in names
        assert "worker" in names and "beat" in names
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=60)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"
    assert dev.returncode == 0
    return output.decode()


def test_dev_stack_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    first = run_once(tmp_path)
    assert re.search(r"topics: [1-9]\d* created, 0 updated", first)
    assert (tmp_path / "var" / "alerts.db").exists()
    second = run_once(tmp_path)
    assert "topics: 0 created, 0 updated" in second  # the data of the first run is reused
    assert "password: admin, development only" in first  # the newcomer's admin password


def test_a_taken_port_stops_the_dev_stack_with_a_clear_message(tmp_path: Path) -> None:
    """Nothing starts on top of another program: not the web app, and never our mail into a
    server that merely answers on the sink's port."""
    import socket

    for taken_is_web in (True, False):
        port, smtp_port = free_port(), free_port()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port if taken_is_web else smtp_port))
            squatter.listen()
            dev = start_dev(tmp_path, port, smtp_port)
            output, _ = dev.communicate(timeout=60)
        text = output.decode()
        wanted = f"port {port if taken_is_web else smtp_port}"
        assert dev.returncode != 0 and wanted in text, text
        assert ("PORT=" if taken_is_web else "SMTP_PORT=") in text
        assert "signup page" not in text  # no banner for a stack that is not there
        assert not (tmp_path / "var" / "alerts.db").exists()
