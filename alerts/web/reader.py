"""Pages a reader reaches from the links in every email: unsubscribe (one-click) and manage."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from alerts import db, taxonomy, tokens
from alerts.models import Article, Delivery, DigestRun, Subscriber, SubscriberStatus
from alerts.subscriptions import unsubscribe
from alerts.web import csrf
from alerts.web.public import FREQUENCY_LABELS

bp = Blueprint("reader", __name__)


def _read(token: str, purpose: tokens.Purpose) -> int | ResponseReturnValue:
    config = current_app.config
    try:
        payload: dict[str, Any] = tokens.read(
            config["SECRET_KEY"], purpose, token, int(config["UNSUBSCRIBE_MAX_AGE"])
        )
        return int(payload["s"])
    except tokens.TokenExpired:
        return _link_error("This link has expired", "Use the link in a more recent email.", 410)
    except (tokens.TokenInvalid, KeyError, TypeError, ValueError):
        return _link_error(
            "This link is not valid",
            "The link may have been copied incompletely. Try copying it again from the email.",
            404,
        )


def _link_error(title: str, message: str, status: int) -> ResponseReturnValue:
    return render_template("web/link_error.html", title=title, message=message), status


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> ResponseReturnValue:
    subscriber_id = _read(token, tokens.Purpose.UNSUBSCRIBE)
    if not isinstance(subscriber_id, int):
        return subscriber_id
    subscriber = db.session().get(Subscriber, subscriber_id)
    if subscriber is None:
        return _link_error("This link is not valid", "There is no subscription for it.", 404)
    return render_template("web/unsubscribe.html", subscriber=subscriber, done=False)


@bp.post("/unsubscribe/<token>")
@csrf.exempt
def unsubscribe_now(token: str) -> ResponseReturnValue:
    """RFC 8058 one-click: no CSRF token, no login, no redirect; the answer is the result."""
    subscriber_id = _read(token, tokens.Purpose.UNSUBSCRIBE)
    if not isinstance(subscriber_id, int):
        return subscriber_id
    session = db.session()
    subscriber = unsubscribe(session, subscriber_id, how="unsubscribe link")
    session.commit()
    if subscriber is None:
        return _link_error("This link is not valid", "There is no subscription for it.", 404)
    return render_template("web/unsubscribe.html", subscriber=subscriber, done=True)


@bp.get("/manage/<token>")
def manage(token: str) -> ResponseReturnValue:
    subscriber_id = _read(token, tokens.Purpose.MANAGE)
    if not isinstance(subscriber_id, int):
        return subscriber_id
    session = db.session()
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return _link_error("This link is not valid", "There is no subscription for it.", 404)
    unsubscribe_token = tokens.make(
        current_app.config["SECRET_KEY"], tokens.Purpose.UNSUBSCRIBE, {"s": subscriber.id}
    )
    return render_template(
        "web/manage.html",
        subscriber=subscriber,
        active=subscriber.status is SubscriberStatus.ACTIVE,
        subscriptions=sorted(subscriber.subscriptions, key=lambda s: s.topic.name),
        languages={language.code: language for language in taxonomy.languages(session)},
        frequencies=FREQUENCY_LABELS,
        unsubscribe_token=unsubscribe_token,
    )


@bp.get("/digest/<token>")
def digest_articles(token: str) -> ResponseReturnValue:
    """The whole of one digest, past the 50 articles the email shows ("and N more")."""
    config = current_app.config
    try:
        payload = tokens.read(
            config["SECRET_KEY"], tokens.Purpose.DIGEST, token, int(config["UNSUBSCRIBE_MAX_AGE"])
        )
        subscriber_id, run_id = int(payload["s"]), int(payload["r"])
    except tokens.TokenExpired:
        return _link_error("This link has expired", "Use the link in a more recent email.", 410)
    except (tokens.TokenInvalid, KeyError, TypeError, ValueError):
        return _link_error("This link is not valid", "Try copying it again from the email.", 404)
    session = db.session()
    articles = session.scalars(
        select(Article)
        .join(Delivery, Delivery.article_id == Article.id)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.digest_run_id == run_id)
        .order_by(Article.published_at.desc(), Article.id.desc())
    ).all()
    run = session.get(DigestRun, run_id)
    return render_template("web/digest.html", articles=articles, run=run)
