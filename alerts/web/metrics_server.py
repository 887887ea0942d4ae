"""`alerts metrics serve --bind HOST:PORT`: /metrics on an address of its own, with no token;
`alerts metrics reset`: empty PROMETHEUS_MULTIPROC_DIR before the processes start.

For a Prometheus that reaches the service on a private network: bind it there, and leave
METRICS_TOKEN unset so the public web app serves no /metrics at all. On a host that runs
only workers (no gunicorn), this is how their counters are read: it adds up the files of
every process that shares its PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from alerts import db, metrics


@click.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics: serve them on a separate address, reset their files."""


@metrics_group.command("reset")
def reset() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR (prometheus-client wants it empty when the processes
    start; a deploy's migrate step does it, before web and workers start)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        click.echo("PROMETHEUS_MULTIPROC_DIR is not set: nothing to reset")
        return
    os.makedirs(directory, exist_ok=True)
    removed = 0
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))
            removed += 1
    click.echo(f"metrics: {removed} files removed from {directory}")


@metrics_group.command("serve")
@click.option("--bind", default="127.0.0.1:9100", show_default=True, help="HOST:PORT to serve on.")
@with_appcontext
def serve_metrics(bind: str) -> None:
    """Serve GET /metrics (Prometheus) on a separate address."""
    from werkzeug.serving import run_simple

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    host, _, port = bind.rpartition(":")

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]
        with app.app_context():  # its teardown closes the session
            body = metrics.exposition(db.session, metrics.relay_of(app.config))
        start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE)])
        return [body]

    click.echo(f"* metrics on http://{host or '0.0.0.0'}:{port}/metrics")  # noqa: S104
    run_simple(host or "0.0.0.0", int(port), wsgi, threaded=True)  # noqa: S104
