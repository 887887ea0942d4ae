"""Public pages: the signup form, its answer, and the confirmation link."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from alerts import db, i18n, taxonomy, tokens
from alerts.errors import InvalidInput, LinkNotValid
from alerts.i18n import gettext as _
from alerts.subscriptions import (
    FREQUENCY_LABELS,
    Choices,
    ConfirmResult,
    Consent,
    confirm,
    subscribe,
    validate,
)
from alerts.web import limiter, locale
from worker.tasks import queue_confirmations, send_welcome

bp = Blueprint("public", __name__)


def _signup_page(
    values: dict[str, object] | None = None, errors: dict[str, str] | None = None
) -> str:
    session = db.session()
    return render_template(
        "web/signup.html",
        groups=taxonomy.groups(session),
        languages=taxonomy.languages(session),
        frequencies=FREQUENCY_LABELS,
        values=values
        or {
            "topics": [],
            # Articles in the page's language (Español: in Spanish), and in English, the
            # language most of the site's articles are in.
            "languages": list(dict.fromkeys((i18n.current(), i18n.DEFAULT))),
            "frequency": "immediate",
            "locale": i18n.current(),
        },
        locales=i18n.choices(),
        errors=errors or {},
        consent_version=current_app.config["CONSENT_VERSION"],
    )


def _consent(source: str = "signup form") -> Consent:
    return Consent(
        form_version=current_app.config["CONSENT_VERSION"],
        source=source,
        ip_address=request.remote_addr,
        user_agent=(request.user_agent.string or "")[:512] or None,
    )


@bp.get("/")
def signup_form() -> ResponseReturnValue:
    return _signup_page()


def _address_key() -> str:
    """Rate-limit key for the address being signed up, however it is spelt."""
    typed = request.form.get("email", "").strip().lower()[:320]
    # Hashed: the key is stored in Redis and may be logged when the limit is hit.
    return "address:" + hashlib.sha256(typed.encode()).hexdigest()[:32]


@bp.post("/subscribe")
@limiter.limit(lambda: current_app.config["RATELIMIT_SUBSCRIBE_IP"])
@limiter.limit(lambda: current_app.config["RATELIMIT_SUBSCRIBE_ADDRESS"], key_func=_address_key)
def signup() -> ResponseReturnValue:
    form = request.form
    if form.get("website"):
        # The hidden honeypot field: only robots fill it. Same answer as a signup; nothing kept.
        return redirect(url_for("public.check_email"), code=303)
    values: dict[str, object] = {
        "email": form.get("email", "")[:400],
        "topics": form.getlist("topics"),
        "languages": form.getlist("languages"),
        "frequency": form.get("frequency", ""),
        "keywords": form.get("keywords", "")[:5000],
        "within_topics": form.get("within_topics") == "yes",
        "locale": form.get("locale") or i18n.current(),
    }
    session = db.session()
    try:
        email, choices = validate(
            session,
            form.get("email", ""),
            form.getlist("topics"),
            form.getlist("languages"),
            form.get("frequency", ""),
            keywords=form.get("keywords", "")[:5000],
            within_topics=form.get("within_topics") == "yes",
            locale=form.get("locale") or i18n.current(),
            timezone=form.get("timezone", "")[:64],
        )
    except InvalidInput as error:
        return _signup_page(values, error.errors), 400

    interval = timedelta(seconds=int(current_app.config["CONFIRM_RESEND_INTERVAL"]))
    request_ = subscribe(session, email, choices, _consent(), resend_interval=interval)
    if request_ is not None:
        queue_confirmations(session)
    session.commit()
    # The same answer whether the address was new, pending, active or throttled.
    return redirect(url_for("public.check_email"), code=303)


@bp.get("/subscribe/check-your-email")
def check_email() -> ResponseReturnValue:
    return render_template("web/check_email.html")


@bp.get("/confirm/<token>")
def confirm_link(token: str) -> ResponseReturnValue:
    config = current_app.config
    try:
        payload = tokens.read(
            config["SECRET_KEY"], tokens.Purpose.CONFIRM, token, int(config["CONFIRM_MAX_AGE"])
        )
        subscriber_id, nonce = int(payload["s"]), str(payload["n"])
        changes = Choices.from_payload(payload["c"]) if "c" in payload else None
    except tokens.TokenExpired:
        return _link_error(
            _("This link has expired"),
            _("Confirmation links work for a limited time. Sign up again to get a new one."),
            410,
        )
    except (tokens.TokenInvalid, KeyError, TypeError, ValueError):
        return _link_error(
            _("This link is not valid"),
            _(
                "The link may have been copied incompletely. Try copying it again from the "
                "email, or sign up again."
            ),
            404,
        )

    session = db.session()
    try:
        result, subscriber = confirm(session, subscriber_id, nonce, changes, _consent("link"))
    except LinkNotValid:
        return _link_error(_("This link is not valid"), _("There is no subscription for it."), 404)
    if result is ConfirmResult.CONFIRMED:
        # What they follow and the link to change it, in their inbox for later.
        db.queue_after_commit(session, send_welcome, subscriber.id)
    session.commit()
    locale.for_reader(subscriber)
    if result is ConfirmResult.SPENT:
        return _link_error(
            _("This link has already been used"),
            _(
                "It was used already, or a newer confirmation email replaced it. "
                "Use the link in the most recent email, or sign up again."
            ),
            409,
        )
    return render_template(
        "web/confirmed.html",
        result=result.value,
        subscriber=subscriber,
        subscriptions=sorted(subscriber.subscriptions, key=lambda s: str(s.topic.label)),
        languages={language.code: language for language in taxonomy.languages(session)},
        frequencies=FREQUENCY_LABELS,
        manage_token=tokens.for_reader(
            config["SECRET_KEY"], tokens.Purpose.MANAGE, subscriber.id, subscriber.link_key
        ),
    )


def _link_error(title: str, message: str, status: int) -> ResponseReturnValue:
    return render_template("web/link_error.html", title=title, message=message), status
