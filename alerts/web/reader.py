"""Pages a reader reaches from the links in every email: unsubscribe (one-click and its
alternatives), the preference centre, their data (download, erase), a digest's full list."""

from __future__ import annotations

import hmac
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from alerts import clock, db, i18n, revisions, subscriptions, taxonomy, tokens
from alerts.errors import InvalidInput
from alerts.i18n import Text
from alerts.i18n import gettext as _
from alerts.matching import feed as private_feed
from alerts.models import Article, Delivery, DigestRun, Subscriber, SubscriberStatus
from alerts.subscriptions import FREQUENCY_LABELS, Consent, unsubscribe
from alerts.web import csrf, locale

bp = Blueprint("reader", __name__)

# What the preference centre says of a reader who gets nothing.
STATUSES = {
    SubscriberStatus.PENDING: Text("not confirmed yet"),
    SubscriberStatus.UNSUBSCRIBED: Text("unsubscribed"),
    SubscriberStatus.BOUNCED: Text("stopped, because emails to this address bounced"),
}


def _read(token: str, purpose: tokens.Purpose) -> dict[str, Any] | ResponseReturnValue:
    config = current_app.config
    try:
        return tokens.read(config["SECRET_KEY"], purpose, token, int(config["UNSUBSCRIBE_MAX_AGE"]))
    except tokens.TokenExpired:
        return _link_error(
            _("This link has expired"), _("Use the link in a more recent email."), 410
        )
    except tokens.TokenInvalid:
        return _invalid()


@dataclass(frozen=True)
class _Link:
    subscriber: Subscriber
    payload: dict[str, Any]


def _subscriber(token: str, purpose: tokens.Purpose) -> _Link | ResponseReturnValue:
    payload = _read(token, purpose)
    if not isinstance(payload, dict):
        return payload
    try:
        subscriber_id = int(payload["s"])
    except (KeyError, TypeError, ValueError):
        return _invalid()
    subscriber = db.session().get(Subscriber, subscriber_id)
    if subscriber is None or not _link_matches(subscriber, payload):
        return _link_error(
            _("There is no subscription for this link"),
            _("It may have been erased. You can sign up again at any time."),
            404,
        )
    return _Link(subscriber, payload)


ReaderView = Callable[[Subscriber, str], ResponseReturnValue]


def reader_link(
    purpose: tokens.Purpose, acts: bool = False
) -> Callable[[ReaderView], Callable[[str], ResponseReturnValue]]:
    """For a view reached by a reader's `purpose` link: the view gets the reader and the
    token, or the reader gets the link's error page (expired, not valid, nobody for it).

    A view that `acts` (unsubscribes, changes) does nothing for a link made before the
    reader last confirmed: an old email's one-click must not end the subscription they
    started again since.
    """

    def decorate(view: ReaderView) -> Callable[[str], ResponseReturnValue]:
        @wraps(view)
        def wrapper(token: str) -> ResponseReturnValue:
            found = _subscriber(token, purpose)
            if not isinstance(found, _Link):
                return found
            locale.for_reader(found.subscriber)
            if acts and _older_than_subscription(found.subscriber, found.payload):
                return _unsubscribe_page(found.subscriber, token, done="stale")
            return view(found.subscriber, token)

        return wrapper

    return decorate


def _older_than_subscription(subscriber: Subscriber, payload: dict[str, Any]) -> bool:
    issued = payload.get("_issued_at")
    confirmed = subscriber.confirmed_at
    # Link times have whole seconds: a link made in the second of confirming still acts.
    if issued is None or confirmed is None:
        return False
    return bool(issued < confirmed.replace(microsecond=0))


def _same_key(subscriber: Subscriber, link_key: str) -> bool:
    return subscriber.link_key is not None and hmac.compare_digest(subscriber.link_key, link_key)


def _link_matches(subscriber: Subscriber, payload: dict[str, Any]) -> bool:
    """The link was made for this reader: it carries their key, or (made before links carried
    keys) it is younger than the reader, so it cannot be an erased reader's old link."""
    if "k" in payload:
        return _same_key(subscriber, str(payload["k"]))
    issued = payload.get("_issued_at")
    # Link times have whole seconds; a reader created in the same second still matches.
    return issued is not None and issued >= subscriber.created_at.replace(microsecond=0)


def _invalid() -> ResponseReturnValue:
    return _link_error(
        _("This link is not valid"),
        _("The link may have been copied incompletely. Try copying it again from the email."),
        404,
    )


def _link_error(title: str, message: str, status: int) -> ResponseReturnValue:
    return render_template("web/link_error.html", title=title, message=message), status


def _consent(source: str) -> Consent:
    return Consent(
        form_version=current_app.config["CONSENT_VERSION"],
        source=source,
        ip_address=request.remote_addr,
        user_agent=(request.user_agent.string or "")[:512] or None,
    )


def _links(subscriber: Subscriber) -> dict[str, str]:
    secret = current_app.config["SECRET_KEY"]
    return {
        "manage_token": tokens.for_reader(
            secret, tokens.Purpose.MANAGE, subscriber.id, subscriber.link_key
        ),
        "unsubscribe_token": tokens.for_reader(
            secret, tokens.Purpose.UNSUBSCRIBE, subscriber.id, subscriber.link_key
        ),
    }


# --- unsubscribe -----------------------------------------------------------------------------


@bp.get("/unsubscribe/<token>")
@reader_link(tokens.Purpose.UNSUBSCRIBE)
def unsubscribe_page(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    return _unsubscribe_page(subscriber, token)


def _unsubscribe_page(subscriber: Subscriber, token: str, done: str = "") -> str:
    links = _links(subscriber)
    return render_template(
        "web/unsubscribe.html",
        subscriber=subscriber,
        # The page's buttons act on the subscription shown, even when reached by an old link.
        token=links.pop("unsubscribe_token"),
        done=done,
        subscriptions=sorted(subscriber.subscriptions, key=lambda s: str(s.topic.label)),
        **links,
    )


@bp.post("/unsubscribe/<token>")
@csrf.exempt
@reader_link(tokens.Purpose.UNSUBSCRIBE, acts=True)
def unsubscribe_now(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    """RFC 8058 one-click (and the page's own button): no CSRF token, no login, no redirect."""
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    how = "one-click (mail client)" if one_click else "unsubscribe page"
    session = db.session()
    unsubscribe(session, subscriber.id, how=how)
    session.commit()
    return _unsubscribe_page(subscriber, token, done="all")


@bp.post("/unsubscribe/<token>/topic")
@reader_link(tokens.Purpose.UNSUBSCRIBE, acts=True)
def unsubscribe_one_topic(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    session = db.session()
    slug = request.form.get("topic", "")
    if not subscriptions.unsubscribe_topic(session, subscriber, slug, _consent("unsubscribe page")):
        return _link_error(_("You do not follow that topic"), _("Nothing was changed."), 400)
    session.commit()
    session.refresh(subscriber)
    return _unsubscribe_page(subscriber, token, done=f"topic:{slug}")


@bp.post("/unsubscribe/<token>/keyword")
@reader_link(tokens.Purpose.UNSUBSCRIBE, acts=True)
def unsubscribe_one_keyword(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    session = db.session()
    keyword_id = subscriptions.form_int(request.form.get("keyword", ""))
    if not subscriptions.unsubscribe_keyword(
        session, subscriber, keyword_id, _consent("unsubscribe page")
    ):
        return _link_error(_("You do not follow that keyword"), _("Nothing was changed."), 400)
    session.commit()
    session.refresh(subscriber)
    return _unsubscribe_page(subscriber, token, done="keyword")


@bp.post("/unsubscribe/<token>/undo")
@reader_link(tokens.Purpose.UNSUBSCRIBE, acts=True)
def undo_unsubscribe(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    """Unsubscribed by mistake: the same link takes it back, with the same choices."""
    session = db.session()
    if not subscriptions.undo_unsubscribe(session, subscriber, _consent("unsubscribe page")):
        return _link_error(
            _("This can no longer be undone"),
            _("Sign up again to get news alerts; we will ask you to confirm your address."),
            400,
        )
    session.commit()
    session.refresh(subscriber)
    return _unsubscribe_page(subscriber, token, done="undone")


@bp.post("/unsubscribe/<token>/weekly")
@reader_link(tokens.Purpose.UNSUBSCRIBE, acts=True)
def switch_to_weekly(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    session = db.session()
    subscriptions.switch_to_weekly(session, subscriber, _consent("unsubscribe page"))
    session.commit()
    session.refresh(subscriber)
    return _unsubscribe_page(subscriber, token, done="weekly")


# --- the preference centre ----------------------------------------------------------------


def _zone_groups(current: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The zones to pick from, grouped by area, each (name, "Place, with spaces"); a reader's
    own older zone name ("US/Eastern") stays on the list so that saving keeps it."""
    groups: dict[str, list[tuple[str, str]]] = {}
    names = clock.offered_timezones()
    for name in (*names, *((current,) if current not in names else ())):
        area, _slash, place = name.partition("/")
        groups.setdefault(area if place else "", []).append(
            (name, (place or area).replace("_", " ").replace("/", " / "))
        )
    return list(groups.items())


@bp.route("/manage/<token>", methods=["GET", "POST"])
@reader_link(tokens.Purpose.MANAGE)
def manage(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    session = db.session()
    errors: dict[str, str] = {}
    # What the last POST did, shown once after its redirect.
    saved = request.args.get("saved", "") if request.method == "GET" else ""
    if saved not in ("saved", "paused", "resumed", "feed"):
        saved = ""
    if request.method == "POST" and subscriber.status is SubscriberStatus.ACTIVE:
        form = request.form
        action = form.get("action", "save")
        try:
            if action == "pause":
                weeks = form.get("weeks", "")
                subscriptions.pause(
                    session, subscriber, subscriptions.form_int(weeks), _consent("manage")
                )
                saved = "paused" if subscriber.paused_until else "resumed"
            else:
                chosen = {
                    slug: form.get(f"frequency-{slug}", "") for slug in form.getlist("topics")
                }
                preferences = subscriptions.validate_preferences(
                    session,
                    chosen,
                    form.getlist("languages"),
                    form.get("timezone", ""),
                    form.get("send_hour", ""),
                    form.get("send_weekday", ""),
                    keywords=form.get("keywords", "")[:5000],
                    keyword_frequency=form.get("keyword_frequency", "immediate"),
                    within_topics=form.get("within_topics") == "yes",
                    locale=form.get("locale", subscriber.locale),
                    **subscriptions.instant_fields(form, subscriber),
                )
                subscriptions.update_preferences(
                    session, subscriber, preferences, _consent("manage")
                )
                saved = "saved"
            session.commit()
            # Post, redirect, get: a refresh shows the page again rather than sending the
            # form twice. The page comes in the language just chosen (unless switched).
            return redirect(url_for("reader.manage", token=token, saved=saved), code=303)
        except InvalidInput as invalid:
            session.rollback()
            errors = invalid.errors
    following = {s.topic.slug: s.frequency.value for s in subscriber.subscriptions}
    feed_url = None
    if subscriber.status is SubscriberStatus.ACTIVE:
        # The private feed's key is made the first time the reader sees its address.
        feed_url = f"{current_app.config['BASE_URL']}/feed/{private_feed.key(session, subscriber)}"
        session.commit()
    # A topic ticked now starts at the frequency the reader uses most.
    usual = Counter(following.values()).most_common(1)
    usual_frequency = usual[0][0] if usual else "daily"
    if errors:
        following = {
            slug: request.form.get(f"frequency-{slug}", "")
            for slug in request.form.getlist("topics")
        }
    return (
        render_template(
            "web/manage.html",
            subscriber=subscriber,
            token=token,
            active=subscriber.status is SubscriberStatus.ACTIVE,
            groups=taxonomy.groups(session),
            following=following,
            languages=taxonomy.languages(session),
            chosen_languages=request.form.getlist("languages")
            if errors
            else subscriber.language_codes,
            keywords_text=request.form.get("keywords", "")
            if errors
            else "\n".join(keyword.phrase for keyword in subscriber.keywords),
            keyword_frequency=(
                subscriber.keywords[0].frequency.value if subscriber.keywords else "immediate"
            ),
            frequencies=FREQUENCY_LABELS,
            timezones=_zone_groups(subscriber.timezone),
            weekdays=i18n.weekdays(),
            locales=i18n.choices(),
            pause_weeks=subscriptions.PAUSE_WEEKS,
            statuses=STATUSES,
            usual_frequency=usual_frequency,
            errors=errors,
            saved=saved,
            feed_url=feed_url,
            daily_caps=subscriptions.DAILY_CAPS,
            quiet_times=[(m, f"{m // 60:02d}:{m % 60:02d}") for m in range(0, 1440, 30)],
            **_links(subscriber),
        ),
        400 if errors else 200,
    )


@bp.get("/manage/<token>/data.json")
@reader_link(tokens.Purpose.MANAGE)
def download_data(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    data = subscriptions.export_data(db.session(), subscriber)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-news-alerts-data.json"'},
    )


@bp.post("/manage/<token>/erase")
@reader_link(tokens.Purpose.MANAGE)
def erase(subscriber: Subscriber, token: str) -> ResponseReturnValue:
    if request.form.get("confirm") != "yes":
        return _link_error(
            _("Nothing was erased"),
            _("Tick the box to confirm that you want everything erased, then press the button."),
            400,
        )
    session = db.session()
    subscriptions.erase(session, subscriber.id)
    session.commit()
    return render_template("web/erased.html")


# --- a digest's full list -----------------------------------------------------------------


@bp.get("/digest/<token>")
def digest_articles(token: str) -> ResponseReturnValue:
    """The whole of one digest, past the 50 articles the email shows ("and N more")."""
    payload = _read(token, tokens.Purpose.DIGEST)
    if not isinstance(payload, dict):
        return payload
    try:
        subscriber_id, run_id, link_key = int(payload["s"]), int(payload["r"]), str(payload["k"])
    except (KeyError, TypeError, ValueError):
        return _invalid()
    session = db.session()
    reader = session.get(Subscriber, subscriber_id)
    if reader is None or not _same_key(reader, link_key):
        return _invalid()
    locale.for_reader(reader)
    articles = session.scalars(
        select(Article)
        .join(Delivery, Delivery.article_id == Article.id)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.digest_run_id == run_id)
        .order_by(Article.published_at.desc(), Article.id.desc())
    ).all()
    run = session.get(DigestRun, run_id)
    updated = revisions.told_in_digest(session, subscriber_id, run_id)
    return render_template("web/digest.html", articles=articles, run=run, updated=updated)
