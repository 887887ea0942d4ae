"""/admin/subscribers: suppressed addresses (and bringing one back), CSV import and export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from alerts import db, subscriber_csv, subscriptions
from alerts.models import Subscriber, SubscriberStatus
from alerts.web.admin import admin_required, bp
from worker.tasks import queue_confirmations


@bp.get("/subscribers")
@admin_required
def subscribers() -> ResponseReturnValue:
    """Suppressed addresses with the reason, and CSV import and export."""
    db_session = db.session()
    suppressed = db_session.scalars(
        select(Subscriber)
        .where(Subscriber.status == SubscriberStatus.BOUNCED)
        .order_by(Subscriber.suppressed_at.desc(), Subscriber.id.desc())
        .limit(500)
    ).all()
    return render_template("admin/subscribers.html", suppressed=suppressed, report=None)


@bp.post("/subscribers/<int:subscriber_id>/reactivate")
@admin_required
def reactivate(subscriber_id: int) -> ResponseReturnValue:
    db_session = db.session()
    interval = timedelta(seconds=int(current_app.config["CONFIRM_RESEND_INTERVAL"]))
    confirmation = subscriptions.reactivate(db_session, subscriber_id, interval)
    if confirmation is not None:
        queue_confirmations(db_session)
    db_session.commit()
    if confirmation is None:
        flash(
            "No confirmation email went: the address is not suppressed, or one went less than "
            "an hour ago (it is pending again and can confirm with that one)."
        )
    else:
        flash("Reactivated: a confirmation email is on its way; alerts start once it is confirmed.")
    return redirect(url_for("admin.subscribers"))


@bp.get("/subscribers.csv")
@admin_required
def export_csv() -> ResponseReturnValue:
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def stream() -> Iterator[str]:
        # The response outlives the request context: give the generator its own.
        with app.app_context():
            yield from subscriber_csv.export_rows(db.session())

    return Response(
        stream(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


@bp.post("/subscribers/import")
@admin_required
def import_csv() -> ResponseReturnValue:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file to import.")
        return redirect(url_for("admin.subscribers"))
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        flash("That file is not UTF-8 text: save it as CSV (UTF-8) and try again.")
        return redirect(url_for("admin.subscribers"))
    report = subscriber_csv.import_rows(db.session(), text, f"admin ({request.remote_addr})")
    return render_template("admin/subscribers.html", suppressed=None, report=report)
