"""/admin/digests, /admin/runs and /admin/preview: a digest run's dry run, start and progress;
a reader's digest previewed and sent as a test; whether a reader would get an article."""

from __future__ import annotations

import smtplib
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from alerts import db, digests, stats
from alerts.clock import now
from alerts.errors import InvalidInput, UnknownTopic
from alerts.mail import emails, message, smtp
from alerts.models import Article, DigestRun, Frequency
from alerts.sending.explain import explain
from alerts.subscriptions import find_by_email, normalize_email
from alerts.web.admin import admin_required, bp
from worker.tasks import queue_digest_run

DIGEST_FREQUENCIES = [f.value for f in digests.DIGEST_FREQUENCIES]


@bp.context_processor
def _digest_frequencies() -> dict[str, list[str]]:
    return {"digest_frequencies": DIGEST_FREQUENCIES}


def _frequency(value: str | None) -> Frequency | None:
    return Frequency(value) if value in DIGEST_FREQUENCIES else None


@bp.route("/digests", methods=["GET", "POST"])
@admin_required
def digest_form() -> ResponseReturnValue:
    """GET: choose; POST: the dry run (how many readers, a sample) with a button to start."""
    db_session = db.session()
    topics = stats.topic_choices(db_session)
    if request.method == "GET":
        return render_template("admin/digests.html", topics=topics, dry=None, sample=None)
    frequency = _frequency(request.form.get("frequency"))
    scope = request.form.get("topic", "")
    if frequency is None or (scope and scope not in dict(topics)):
        flash("Choose a frequency and, if you like, one topic from the lists.")
        return render_template("admin/digests.html", topics=topics, dry=None, sample=None), 400
    dry = digests.dry_run(db_session, frequency, scope)
    sample = None
    if dry.sample is not None:
        settings = emails.MailSettings.from_config(current_app.config)
        sample = emails.DigestRenderer(settings).render(dry.sample, None)
    return render_template(
        "admin/digests.html", topics=topics, dry=dry, sample=sample, chosen_scope=scope
    )


@bp.post("/digests/start")
@admin_required
def digest_start() -> ResponseReturnValue:
    frequency = _frequency(request.form.get("frequency"))
    scope = request.form.get("topic", "")
    if frequency is None:
        flash("Choose a frequency.")
        return redirect(url_for("admin.digest_form"))
    db_session = db.session()
    try:
        run, created = digests.trigger(db_session, frequency, scope, "admin")
    except UnknownTopic:
        flash("That topic does not exist.")
        return redirect(url_for("admin.digest_form"))
    queue_digest_run(db_session, run.id)
    db_session.commit()
    if not created:
        flash("This period's run already existed: it goes on, and no reader gets it twice.")
    return redirect(url_for("admin.digest_run", run_id=run.id))


@bp.get("/digests/<int:run_id>")
@admin_required
def digest_run(run_id: int) -> ResponseReturnValue:
    db_session = db.session()
    run = db_session.get(DigestRun, run_id)
    if run is None:
        return render_template("web/error.html", title="No such run", message=""), 404
    progress = digests.progress(db_session, run)
    return render_template("admin/run.html", progress=progress)


@bp.route("/preview", methods=["GET", "POST"])
@admin_required
def preview() -> ResponseReturnValue:
    """A reader's digest as it would be now (nothing recorded); optionally sent as a test."""
    db_session = db.session()
    address = request.values.get("email", "").strip()
    frequency = _frequency(request.values.get("frequency")) or Frequency.DAILY
    context: dict[str, Any] = {"email": address, "frequency": frequency.value, "rendered": None}
    if not address:
        return render_template("admin/preview.html", **context)
    reader = find_by_email(db_session, address)
    if reader is None:
        context["error"] = "No subscriber has that address."
        return render_template("admin/preview.html", **context), 404
    content = digests.preview(db_session, reader, frequency)
    settings = emails.MailSettings.from_config(current_app.config)
    renderer = emails.DigestRenderer(settings)
    context.update(rendered=renderer.render(content, None), content=content)
    send_to = request.form.get("send_to", "").strip() if request.method == "POST" else ""
    if send_to:
        try:
            recipient = normalize_email(send_to)
        except InvalidInput as error:
            context["error"] = error.errors["email"]
            return render_template("admin/preview.html", **context), 400
        rendered = renderer.render(content, None, test=True)
        raw = message.build(rendered, sender=settings.mail_from, recipient=recipient)
        try:
            with smtp.connect(settings.smtp) as mailer:
                refusal = mailer.send(raw, message.envelope_sender(settings.mail_from), recipient)
        except (OSError, smtplib.SMTPException) as error:
            context["error"] = f"The mail server could not be reached: {error}"
            return render_template("admin/preview.html", **context), 502
        if refusal is not None:
            context["error"] = f"The mail server refused it: {refusal.code} {refusal.message}"
            return render_template("admin/preview.html", **context), 502
        context["sent_to"] = recipient
    return render_template("admin/preview.html", **context)


@bp.get("/preview/alert")
@admin_required
def preview_alert() -> ResponseReturnValue:
    """For a reader and an article: would they get it, how, when, and why (or why not)."""
    db_session = db.session()
    address = request.args.get("email", "").strip()
    wanted = request.args.get("article", "").strip()
    context: dict[str, Any] = {"email": address, "article_ref": wanted, "verdict": None}
    if not address or not wanted:
        return render_template("admin/preview_alert.html", **context)
    reader = find_by_email(db_session, address)
    article = db_session.scalar(
        select(Article).where(
            (Article.id == int(wanted))
            if wanted.isascii() and wanted.isdigit() and len(wanted) < 18
            else (Article.guid == wanted) | (Article.url == wanted)
        )
    )
    if reader is None or article is None:
        context["error"] = (
            "No subscriber has that address."
            if reader is None
            else ("No article has that id, guid or URL.")
        )
        return render_template("admin/preview_alert.html", **context), 404
    context.update(
        verdict=explain(db_session, reader, article, now()), reader=reader, article=article
    )
    return render_template("admin/preview_alert.html", **context)


@bp.get("/runs")
@admin_required
def runs() -> ResponseReturnValue:
    db_session = db.session()
    all_runs = db_session.scalars(select(DigestRun).order_by(DigestRun.id.desc()).limit(100))
    progress = [digests.progress(db_session, run) for run in all_runs]
    return render_template("admin/runs.html", runs=progress)
