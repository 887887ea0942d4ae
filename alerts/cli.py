"""The `alerts` command: dev stack, migrations, taxonomy, mail sink (and Flask's own commands)."""

from __future__ import annotations

import os
import signal
import threading
import typing

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from alerts import create_app
from alerts.digests import DIGEST_FREQUENCIES
from alerts.errors import InvalidInput, UnknownTopic
from alerts.web.metrics_server import metrics_group
from worker.tasks import fanout_article, send_corrections


@click.group(cls=FlaskGroup, create_app=create_app, load_dotenv=False, set_debug_flag=False)
def main() -> None:
    """News alerts: the free email alerts of a news site."""


main.add_command(metrics_group)


@main.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--smtp-port", default=8025, show_default=True)
def dev_command(host: str, port: int, smtp_port: int) -> None:
    """Run the whole service locally: SQLite, embedded Redis, mail sink, worker, beat, web."""
    from alerts import devstack

    try:
        devstack.run(host, port, smtp_port)
    except devstack.PortTaken as taken:
        raise click.ClickException(str(taken)) from taken


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


@main.group("articles")
def articles_group() -> None:
    """Articles."""


@articles_group.command("publish")
@click.argument("source", type=click.File("rb"))
@with_appcontext
def articles_publish(source: typing.BinaryIO) -> None:
    """Publish the article(s) in SOURCE (a JSON object or a list of them; - reads stdin).

    New articles alert their readers; a known guid updates the article and alerts nobody
    again (readers who got it see the change in their next digest; "correction": true, or a
    note, also emails the readers who got it as an alert).
    """
    import json

    from alerts import articles, db

    try:
        data = json.loads(source.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{source.name} is not JSON: {error}") from error
    items = data if isinstance(data, list) else [data]
    session = db.session()
    created = updated = 0
    rejected: list[tuple[int, dict[str, str]]] = []
    with click.progressbar(items, label="Publishing", show_pos=True) as progress:
        for number, item in enumerate(progress, start=1):
            try:
                result = articles.publish(session, articles.parse(session, item))
            except articles.InvalidArticle as invalid:
                session.rollback()
                rejected.append((number, invalid.errors))
                continue
            if result.created:
                db.queue_after_commit(session, fanout_article, result.article_id)
            if result.correction:
                db.queue_after_commit(session, send_corrections)
            session.commit()
            if result.created:
                created += 1
            else:
                updated += 1
    for number, errors in rejected:
        details = "; ".join(f"{field}: {message}" for field, message in errors.items())
        click.echo(f"article {number} rejected: {details}", err=True)
    click.echo(f"{created} created, {updated} updated, {len(rejected)} rejected")
    if rejected:
        raise SystemExit(1)


@main.group("digests")
def digests_group() -> None:
    """Digest runs."""


@digests_group.command("send")
@click.option(
    "--frequency", required=True, type=click.Choice([f.value for f in DIGEST_FREQUENCIES])
)
@click.option("--topic", default="", help="Only this topic (a slug) and its branch.")
@click.option("--dry-run", is_flag=True, help="Count the readers and show a sample; send nothing.")
@with_appcontext
def digests_send(frequency: str, topic: str, dry_run: bool) -> None:
    """Send this period's digests now (or join the period's run), with a progress bar."""

    from dataclasses import replace

    from alerts import db, digests
    from alerts.mail import emails
    from alerts.models import Frequency
    from alerts.sending import batches
    from alerts.sending.policy import RetryPolicy

    session = db.session()
    chosen = Frequency(frequency)
    try:
        if dry_run:
            result = digests.dry_run(session, chosen, topic)
            click.echo(
                f"{result.emails} of {result.readers} {frequency} readers would get an email"
            )
            if result.sample is not None:
                settings = emails.MailSettings.from_config(current_app.config)
                rendered = emails.DigestRenderer(settings).render(result.sample, None)
                click.echo(f"sample, for {result.sample.subscriber.email}: {rendered.subject}\n")
                click.echo(rendered.text)
            return
        earlier = digests.existing_run(session, chosen, topic)
        before = digests.progress(session, earlier).counts if earlier is not None else {}
        run, created = digests.trigger(session, chosen, topic, "cli")
    except UnknownTopic as error:
        raise click.ClickException(error.message) from error
    session.commit()
    added = digests.progress(session, run).total - sum(before.values())
    click.echo(
        f"run #{run.id} ({frequency} {run.period}, "
        f"{'new' if created else 'joined'}): {added:,} readers added"
    )
    config = current_app.config
    settings = emails.MailSettings.from_config(config)
    policy = RetryPolicy.from_config(config)
    progress = digests.progress(session, run)
    with click.progressbar(length=progress.total, label="Sending", show_pos=True) as bar:
        bar.update(progress.total - progress.remaining)
        # This process sends every digest it can now; what waits for a retry or a relay that
        # is down is left queued for the workers (the reconciler hands it to them).
        drain = batches.drain_digests(
            session,
            settings,
            replace(policy, task_slice=float("inf")),
            run.id,
            on_batch=bar.update,
        )
    final = digests.progress(session, run)
    session.commit()

    def now_minus_before(status: str) -> int:
        return final.counts.get(status, 0) - before.get(status, 0)

    # What this call did, not the run's totals (a joined run may have sent hours ago).
    click.echo(
        f"this call: {now_minus_before('sent'):,} sent, "
        f"{now_minus_before('skipped'):,} skipped (nothing new), "
        f"{now_minus_before('failed'):,} failed, {final.remaining:,} left"
    )
    if drain.outcome.relay_down_until is not None:
        click.echo(
            f"the mail relay is down (next try {drain.outcome.relay_down_until:%H:%M:%S} UTC): "
            "the workers send the rest when it is back"
        )
    elif final.remaining:
        click.echo(f"{final.remaining} wait for a retry: the workers send them when it is due")


@main.group("feeds")
def feeds_group() -> None:
    """RSS and Atom feeds."""


@feeds_group.command("add")
@click.argument("url")
@click.option(
    "--language", default=None, help="Language of entries whose categories name none [en]."
)
@click.option("--interval", default=15, show_default=True, help="Minutes between polls.")
@with_appcontext
def feeds_add(url: str, language: str | None, interval: int) -> None:
    """Add a feed; beat polls it from now on (its existing entries do not alert)."""
    from alerts import db, feeds

    session = db.session()
    try:
        feed, created = feeds.add(
            session, url, language, interval, current_app.config["FEED_ALLOW"]
        )
    except InvalidInput as error:
        raise click.ClickException(error.message) from error
    session.commit()
    click.echo(f"feed #{feed.id} {'added' if created else 'already there'}: {feed.shown_url}")


@feeds_group.command("list")
@with_appcontext
def feeds_list() -> None:
    """Every feed with its state."""
    from sqlalchemy import select

    from alerts import db
    from alerts.models import Feed

    for feed in db.session().scalars(select(Feed).order_by(Feed.id)):
        state = "active" if feed.active else "paused"
        polled = feed.last_polled_at.strftime("%Y-%m-%d %H:%M") if feed.last_polled_at else "never"
        error = f"  last error: {feed.last_error}" if feed.last_error else ""
        click.echo(
            f"#{feed.id} [{state}] {feed.shown_url}  every {feed.interval_minutes} min, "
            f"polled {polled}, {feed.articles_created} articles{error}"
        )


@feeds_group.command("poll")
@click.option("--feed", "feed_id", type=int, default=None, help="Only this feed (any state).")
@with_appcontext
def feeds_poll(feed_id: int | None) -> None:
    """Poll the active feeds now (or one), with a progress bar; new articles alert."""
    from sqlalchemy import select

    from alerts import db, feeds
    from alerts.models import Feed

    session = db.session()
    query = (
        select(Feed).where(Feed.id == feed_id)
        if feed_id
        else select(Feed).where(Feed.active.is_(True))
    )
    chosen = list(session.scalars(query.order_by(Feed.id)))
    if feed_id and not chosen:
        raise click.ClickException(f"no feed #{feed_id}")
    reports = []
    with click.progressbar(chosen, label="Polling", show_pos=True) as bar:
        for feed in bar:
            report = feeds.poll(
                session,
                feed,
                timeout=float(current_app.config["FEED_TIMEOUT"]),
                allow=current_app.config["FEED_ALLOW"],
            )
            for article_id in report.to_alert:
                db.queue_after_commit(session, fanout_article, article_id)
            session.commit()
            reports.append((feed, report))
    for feed, report in reports:
        click.echo(
            f"#{feed.id} {feed.shown_url}: {report.status}; {report.created} new "
            f"({len(report.to_alert)} alerting), {report.updated} updated"
            + (
                f", unmapped categories: {', '.join(sorted(set(report.unmapped)))}"
                if report.unmapped
                else ""
            )
        )


@main.group("subscribers")
def subscribers_group() -> None:
    """Subscribers as CSV."""


@subscribers_group.command("export")
@click.argument("target", type=click.File("w", encoding="utf-8"), default="-")
@with_appcontext
def subscribers_export(target: typing.TextIO) -> None:
    """Write every subscriber (status, topics with frequency, languages) as CSV to TARGET."""
    from alerts import db, subscriber_csv

    count = -1
    for chunk in subscriber_csv.export_rows(db.session()):
        target.write(chunk)
        count += chunk.count("\r\n")
    click.echo(f"{max(count, 0)} subscribers exported", err=True)


@subscribers_group.command("import")
@click.argument("source", type=click.File("rb"))
@click.option("--by", "imported_by", default="cli", show_default=True, help="Who imports.")
@with_appcontext
def subscribers_import(source: typing.BinaryIO, imported_by: str) -> None:
    """Import subscribers from CSV as already consented; invalid rows are reported by line."""
    from alerts import db, subscriber_csv

    try:
        text = source.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise click.ClickException(
            f"{source.name} is not UTF-8 text: save it as CSV (UTF-8) and try again."
        ) from error
    total = subscriber_csv.count_rows(text)
    with click.progressbar(length=total, label="Importing", show_pos=True) as bar:

        def ticks() -> typing.Iterator[None]:
            while True:
                bar.update(1)
                yield None

        report = subscriber_csv.import_rows(db.session(), text, imported_by, ticks())
    for line, reason in report.invalid:
        click.echo(f"line {line}: {reason}", err=True)
    for line, reason in report.skipped:
        click.echo(f"line {line}: skipped, {reason}", err=True)
    click.echo(report.summary)
    if report.invalid:
        raise SystemExit(1)


@main.command("mail-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True)
@click.option("--dir", "directory", default=None, help="Where to keep messages [var/mail].")
@click.option(
    "--fail",
    "failures",
    multiple=True,
    metavar="ADDRESS=CODE[xN]",
    help="Refuse ADDRESS (or a glob such as '*-soft@example.org') with CODE (always, or the "
    "first N times per address), to try bounces and retries.",
)
@click.option(
    "--drop",
    "drops",
    multiple=True,
    metavar="GLOB[xN]",
    help="Keep a message for a matching address, then cut the connection before the 250 reply "
    "(always, or the first N times per address), to try a lost acknowledgement.",
)
@click.option(
    "--discard",
    is_flag=True,
    help="Keep only the first message (sample.eml) and a line per recipient (recipients.log).",
)
@click.option(
    "--hold", multiple=True, metavar="ADDRESS", help="Leave the first RCPT TO for ADDRESS hanging."
)
def mail_sink(
    host: str,
    port: int,
    directory: str | None,
    failures: tuple[str, ...],
    drops: tuple[str, ...],
    discard: bool,
    hold: tuple[str, ...],
) -> None:
    """A local SMTP server that keeps every message (read them on /dev/mail)."""
    from alerts import config
    from alerts.mail.sink import DropRule, FailureRule, serve_forever

    try:
        rules = [FailureRule.parse(text) for text in failures]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fail") from error
    try:
        drop_rules = [DropRule.parse(text) for text in drops]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--drop") from error
    directory = directory or os.path.join(config.var_dir(), "mail")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"mail sink on {host}:{port}, keeping messages in {directory}")
    serve_forever(directory, host, port, stop, rules, discard, hold, drop_rules)


if __name__ == "__main__":
    main()
