"""/admin/readers and /admin/articles: find a reader (address, status, frequency), see them
whole (choices, deliveries, consent history) and act (unsubscribe, erase, resend the
confirmation); list articles with their fan-out and deliveries."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from alerts import db, readers, subscriptions
from alerts.models import Frequency, SubscriberStatus
from alerts.web.admin import admin_required, bp
from worker.tasks import queue_confirmations


def _choice(name: str, kind: type[SubscriberStatus] | type[Frequency]) -> str:
    """A filter's value from the query string: empty, or one of `kind`'s (else a 400)."""
    value = request.args.get(name, "")
    if value and value not in {member.value for member in kind}:
        abort(400, description=f"There is no {name} {value!r}.")
    return value


@bp.get("/readers")
@admin_required
def readers_list() -> ResponseReturnValue:
    address = request.args.get("q", "")[:320]
    status = _choice("status", SubscriberStatus)
    frequency = _choice("frequency", Frequency)
    before = subscriptions.form_int(request.args.get("before", ""), default=0) or None
    page = readers.find(
        db.session(),
        address,
        SubscriberStatus(status) if status else None,
        Frequency(frequency) if frequency else None,
        before,
    )
    return render_template(
        "admin/readers.html",
        page=page,
        filters={"q": address, "status": status, "frequency": frequency},
        statuses=[member.value for member in SubscriberStatus],
        frequencies=[member.value for member in Frequency],
    )


@bp.get("/readers/<int:subscriber_id>")
@admin_required
def reader_page(subscriber_id: int) -> ResponseReturnValue:
    found = readers.profile(db.session(), subscriber_id)
    if found is None:
        abort(404, description="There is no reader with this number (erased, perhaps).")
    return render_template("admin/reader.html", profile=found)


def _confirmed() -> bool:
    """Destructive actions need their box ticked: a stray click changes nothing."""
    if request.form.get("confirm") == "yes":
        return True
    flash("Nothing was done: tick the box to confirm, then press the button.")
    return False


@bp.post("/readers/<int:subscriber_id>/unsubscribe")
@admin_required
def reader_unsubscribe(subscriber_id: int) -> ResponseReturnValue:
    if _confirmed():
        session = db.session()
        if subscriptions.unsubscribe(session, subscriber_id, how="admin") is None:
            abort(404)
        session.commit()
        flash("Unsubscribed: no more email goes to this reader.")
    return redirect(url_for("admin.reader_page", subscriber_id=subscriber_id))


@bp.post("/readers/<int:subscriber_id>/erase")
@admin_required
def reader_erase(subscriber_id: int) -> ResponseReturnValue:
    if not _confirmed():
        return redirect(url_for("admin.reader_page", subscriber_id=subscriber_id))
    session = db.session()
    if not subscriptions.erase(session, subscriber_id):
        abort(404)
    session.commit()
    flash(f"Reader #{subscriber_id} erased: only anonymous counts are left.")
    return redirect(url_for("admin.readers_list"))


@bp.post("/readers/<int:subscriber_id>/resend")
@admin_required
def reader_resend(subscriber_id: int) -> ResponseReturnValue:
    session = db.session()
    interval = timedelta(seconds=int(current_app.config["CONFIRM_RESEND_INTERVAL"]))
    request_ = subscriptions.resend_confirmation(session, subscriber_id, interval)
    if request_ is not None:
        queue_confirmations(session)
    session.commit()
    flash(
        "The confirmation email is on its way again."
        if request_ is not None
        else "No email went: the reader is not waiting for confirmation, or one went less "
        "than an hour ago."
    )
    return redirect(url_for("admin.reader_page", subscriber_id=subscriber_id))


@bp.get("/articles")
@admin_required
def articles_list() -> ResponseReturnValue:
    before = subscriptions.form_int(request.args.get("before", ""), default=0) or None
    page = readers.articles(db.session(), before)
    return render_template(
        "admin/articles.html", page=page, delivery_statuses=readers.DELIVERY_STATUSES
    )
