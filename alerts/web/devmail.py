"""/dev/mail: read what the local SMTP sink received (development only)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, render_template
from flask.typing import ResponseReturnValue

from alerts.mail.sink import MailStore

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")


def _store() -> MailStore:
    return MailStore(current_app.config["DEV_MAIL_DIR"])


@bp.get("/")
def inbox() -> ResponseReturnValue:
    messages = list(reversed(_store().all()))
    return render_template("web/dev_mail.html", messages=messages)


@bp.get("/<message_id>")
def show(message_id: str) -> ResponseReturnValue:
    message = _store().get(message_id)
    if message is None:
        abort(404, "No such message.")
    return render_template(
        "web/dev_mail_message.html",
        message=message,
        headers=list(message.parsed().items()),
        text=message.body("plain"),
        html=message.body("html"),
    )


@bp.get("/<message_id>.eml")
def raw(message_id: str) -> ResponseReturnValue:
    message = _store().get(message_id)
    if message is None:
        abort(404, "No such message.")
    return Response(message.raw, mimetype="text/plain")
