"""docker-compose.yml names only commands and settings that exist in the project."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.celery import celery as celery_cli

from alerts import config
from alerts.cli import main as alerts_cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def app_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, service in SERVICES.items():
        command = service.get("command")
        if command is None or ("image" in service and "build" not in service):
            continue
        words = shlex.split(command) if isinstance(command, str) else list(command)
        if words[:2] == ["sh", "-c"]:
            for part in words[2].split("&&"):
                commands.append((name, shlex.split(part)))
        else:
            commands.append((name, words))
    return commands


def test_the_stack_has_every_service() -> None:
    assert {"web", "worker", "beat", "redis", "postgres", "mailpit"} <= set(SERVICES)


@pytest.mark.parametrize(("service", "words"), app_commands())
def test_every_command_exists(
    service: str, words: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALERTS_DATABASE_URL", f"sqlite:///{tmp_path}/compose.db")
    program, *args = words
    if program == "alerts":
        group: click.Command = alerts_cli
        context = click.Context(alerts_cli)
        for word in args:
            if word.startswith("-"):
                break
            assert isinstance(group, click.Group), f"{service}: {word} is not a subcommand"
            found = group.get_command(context, word)
            assert found is not None, f"{service}: `alerts ... {word}` does not exist"
            group = found
    elif program == "celery":
        # --quiet: no banner, so every line the process writes is a log record.
        args = [arg for arg in args if arg != "--quiet"]
        assert args[:2] == ["-A", "worker"]
        assert args[2] in celery_cli.commands
        assert isinstance(find_app("worker"), Celery)
    elif program == "gunicorn":
        module, _, factory = args[-1].partition(":")
        assert callable(getattr(importlib.import_module(module), factory.removesuffix("()")))
    else:
        pytest.fail(f"{service}: unknown program {program}")


def test_settings_are_ones_the_app_reads() -> None:
    environment = dict(COMPOSE["x-alerts-env"])
    # prometheus-client's own variable (multiprocess mode), read by the library itself.
    assert environment.pop("PROMETHEUS_MULTIPROC_DIR") == "/metrics-data"
    known = set(config.defaults()) | {"PROXY_HOPS"}
    for key in environment:
        assert key.startswith("ALERTS_")
        assert key.removeprefix("ALERTS_") in known, f"{key} is not a setting"


def test_production_settings_pass_the_start_up_check() -> None:
    settings = config.defaults()
    for key, value in COMPOSE["x-alerts-env"].items():
        settings[key.removeprefix("ALERTS_")] = value
    settings.update(
        SECRET_KEY="s3cret", API_TOKEN="t0ken", ADMIN_PASSWORD="pw", BASE_URL="https://x.org"
    )
    config.check_production(settings)


def test_the_compose_redis_keeps_its_queue() -> None:
    """Queued tasks survive a Redis restart (the reconciler would catch up, later)."""
    command = SERVICES["redis"]["command"]
    assert "--appendonly yes" in command
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])
