"""The `alerts` command: dev stack, migrations, taxonomy, mail sink (and Flask's own commands)."""

from __future__ import annotations

import os
import signal
import threading

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from alerts import create_app


@click.group(cls=FlaskGroup, create_app=create_app, load_dotenv=False, set_debug_flag=False)
def main() -> None:
    """News alerts: the free email alerts of a news site."""


@main.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--smtp-port", default=8025, show_default=True)
def dev_command(host: str, port: int, smtp_port: int) -> None:
    """Run the whole service locally: SQLite, embedded Redis, mail sink, worker, beat, web."""
    from alerts import devstack

    devstack.run(host, port, smtp_port)


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION."""
    from alerts import migrations

    migrations.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@main.group("topics")
def topics_group() -> None:
    """The topic tree."""


@topics_group.command("seed")
@with_appcontext
def topics_seed() -> None:
    """Load the reference site's sections, venues, themes and languages (safe to repeat)."""
    from alerts import db, taxonomy

    session = db.session()
    report = taxonomy.seed(session)
    session.commit()
    click.echo(f"topics and languages: {report.created} created, {report.updated} updated")


@main.command("mail-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True)
@click.option("--dir", "directory", default=None, help="Where to keep messages [var/mail].")
def mail_sink(host: str, port: int, directory: str | None) -> None:
    """A local SMTP server that keeps every message (read them on /dev/mail)."""
    from alerts import config
    from alerts.mail.sink import serve_forever

    directory = directory or os.path.join(config.var_dir(), "mail")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"mail sink on {host}:{port}, keeping messages in {directory}")
    serve_forever(directory, host, port, stop)


if __name__ == "__main__":
    main()
