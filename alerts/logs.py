"""Logs: one JSON object per line in production (LOG_FORMAT=json), readable lines in
development; the web app's, Celery's and gunicorn's alike, all through these formatters.

Each line carries the ids of what it is about (request, task, article, digest run, reader)
from a context set once per request or task, and never an address or a token: the ids are
fields, and a message that happens to hold an email address or a signed link has it masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

FIELDS = ("request_id", "task_id", "task", "article_id", "run_id", "reader_id", "feed_id")

_context: ContextVar[dict[str, Any]] = ContextVar("alerts_log_context", default={})  # noqa: B039 - never mutated

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_][\w-]*")
# A reader's link: whatever follows these in a path is their secret.
_LINK = re.compile(r"(/(?:feed|manage|unsubscribe|confirm|digest)/)[^/\s?#\"'<>]+")
# A UUID (Celery's task ids) is kept; any other long run of URL-safe characters holding a
# letter and a digit is a token (signed links, nonces, secrets) and is masked.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_TOKENISH = re.compile(rf"({_UUID})|(?=[\w.-]*\d)(?=[\w.-]*[A-Za-z])[\w.-]{{20,}}")


def mask(text: str) -> str:
    """The text with email addresses and token-like strings replaced."""
    text = _ADDRESS.sub("<address>", _LINK.sub(r"\1<token>", text))
    return _TOKENISH.sub(lambda match: match.group(1) or "<token>", text)


def set_fields(**fields: Any) -> Token[dict[str, Any]]:
    """Add ids to the context of what runs next in this thread (a request, a task); returns
    what `restore` takes to put the context back as it was."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def restore(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


def clear() -> None:
    _context.set({})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask(record.getMessage()),
            "process": record.process,
        }
        entry.update(_context.get())
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = mask(super().format(record))
        ids = {**_context.get(), **{n: getattr(record, n) for n in FIELDS if hasattr(record, n)}}
        if ids:
            line += " [" + " ".join(f"{key}={value}" for key, value in ids.items()) + "]"
        return line


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


class Handler(logging.StreamHandler):
    """The root handler this module installs (replaced, never added twice)."""


def configure(kind: str = "text", level: str | int = "INFO") -> None:
    """Send every log record (ours, Celery's, gunicorn's, Flask's) to stderr through one
    formatter. Called by the app factory, by Celery's setup_logging signal and by gunicorn's
    config; calling it again replaces what it installed."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, Handler)]:
        root.removeHandler(handler)
    handler = Handler(sys.stderr)
    handler.setFormatter(formatter(kind))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.captureWarnings(True)  # a library's warning is a log record too
    for name in ("gunicorn.error", "gunicorn.access", "celery", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


def gunicorn_logconfig(kind: str, level: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own logs through the same formatter."""
    name = "Json" if kind == "json" else "Text"
    stderr = {"class": "alerts.logs.Handler", "formatter": "alerts", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"alerts": {"()": f"alerts.logs.{name}Formatter"}},
        "handlers": {"stderr": stderr},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": level.upper(), "handlers": [], "propagate": True},
        },
    }
