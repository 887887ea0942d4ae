"""/admin: login, dashboard, digest runs (dry run, start, progress), preview and test send."""

from __future__ import annotations

import hmac
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import wraps
from typing import Any

import redis
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from alerts import clock, db, digests, feeds, stats, subscriber_csv, subscriptions, taxonomy
from alerts.mail import emails, message, smtp
from alerts.models import DigestRun, Feed, FeedCategory, Frequency, Subscriber, SubscriberStatus
from alerts.sending import reconcile, relay
from alerts.subscriptions import InvalidSignup, find_by_email, normalize_email
from alerts.web import limiter
from alerts.web.charts import bars
from worker.tasks import poll_feed, queue_digest_run, send_confirmation

bp = Blueprint("admin", __name__, url_prefix="/admin")

DIGEST_FREQUENCIES = [f.value for f in digests.DIGEST_FREQUENCIES]


class LoginThrottle:
    """Counts wrong passwords per client for 15 minutes, in Redis (shared by every web worker),
    falling back to this process's memory when Redis cannot be reached."""

    WINDOW = 900
    LOCK_AFTER = 10

    def __init__(self) -> None:
        self.memory: dict[str, tuple[int, float]] = {}

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=0.5)

    def failures(self, who: str) -> int:
        try:
            value = self._client().get(f"alerts:login-failures:{who}")
            return int(value or 0)
        except (redis.RedisError, OSError):
            count, since = self.memory.get(who, (0, 0.0))
            return count if time.monotonic() - since < self.WINDOW else 0

    def failed(self, who: str) -> int:
        try:
            client = self._client()
            key = f"alerts:login-failures:{who}"
            count = int(client.incr(key))
            client.expire(key, self.WINDOW)
            return count
        except (redis.RedisError, OSError):
            count = self.failures(who) + 1
            self.memory[who] = (count, time.monotonic())
            return count

    def delay(self, failures: int) -> float:
        """Each wrong password makes the next answer slower: 0.25 s doubling, at most 4 s."""
        return 0.0 if failures == 0 else min(0.25 * 2 ** (failures - 1), 4.0)


throttle = LoginThrottle()


def is_admin() -> bool:
    return bool(session.get("admin"))


def admin_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not is_admin():
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"])
def login() -> ResponseReturnValue:
    error = None
    who = request.remote_addr or "unknown"
    if request.method == "POST":
        failures = throttle.failures(who)
        if failures >= throttle.LOCK_AFTER:
            error = "Too many wrong passwords. Try again in 15 minutes."
            return render_template("admin/login.html", error=error), 429
        given = request.form.get("password", "").encode()
        expected = current_app.config["ADMIN_PASSWORD"].encode()
        if hmac.compare_digest(given, expected):
            session.clear()
            session["admin"] = True
            session.permanent = True
            target = request.args.get("next", "")
            # Only our own admin pages: never an open redirect.
            if not target.startswith("/admin") or "//" in target or "\\" in target:
                target = url_for("admin.dashboard")
            return redirect(target)
        time.sleep(throttle.delay(throttle.failed(who)))
        error = "That password is not right."
        return render_template("admin/login.html", error=error), 401
    return render_template("admin/login.html", error=error)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@admin_required
def dashboard() -> ResponseReturnValue:
    db_session = db.session()
    days = stats.last_30_days(db_session)
    articles_chart = bars(days.days, {"articles": days.series["articles"]}, "Articles per day")
    deliveries_chart = bars(
        days.days,
        {name: days.series[name] for name in ("sent", "failed", "bounced")},
        "Deliveries per day",
    )
    runs = stats.recent_runs(db_session)
    waiting = reconcile.waiting(db_session)
    relays = relay.status(db_session)
    db_session.commit()
    return render_template(
        "admin/dashboard.html",
        waiting=waiting,
        relays=relays,
        now=clock.now(),
        by_status=stats.subscribers_by_status(db_session),
        by_frequency=stats.active_readers_by_frequency(db_session),
        by_topic=stats.active_readers_by_top_topic(db_session),
        articles_chart=articles_chart,
        deliveries_chart=deliveries_chart,
        runs=runs,
    )


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
    except ValueError:
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
    db_session.commit()
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
        except InvalidSignup as error:
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


@bp.get("/runs")
@admin_required
def runs() -> ResponseReturnValue:
    db_session = db.session()
    all_runs = db_session.scalars(select(DigestRun).order_by(DigestRun.id.desc()).limit(100))
    progress = [digests.progress(db_session, run) for run in all_runs]
    db_session.commit()
    return render_template("admin/runs.html", runs=progress)


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
        db.queue_after_commit(
            db_session, send_confirmation, confirmation.subscriber_id, confirmation.nonce, None
        )
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


@bp.route("/feeds", methods=["GET", "POST"])
@admin_required
def feeds_page() -> ResponseReturnValue:
    """Every feed with its state; add one."""
    db_session = db.session()
    error = None
    if request.method == "POST":
        interval = request.form.get("interval", "15")
        try:
            feed, created = feeds.add(
                db_session,
                request.form.get("url", ""),
                request.form.get("language") or None,
                subscriptions.form_int(interval, 0),
            )
        except ValueError as invalid:
            error = str(invalid)
        else:
            if created:
                db.queue_after_commit(db_session, poll_feed, feed.id)
            db_session.commit()
            if created:
                flash("Feed added: it is being read now; its existing entries do not alert.")
            else:
                flash("That feed is already here.")
            return redirect(url_for("admin.feed_page", feed_id=feed.id))
    all_feeds = db_session.scalars(select(Feed).order_by(Feed.id)).all()
    unmapped = dict(
        db_session.execute(
            select(FeedCategory.feed_id, func.count()).group_by(FeedCategory.feed_id)
        ).all()
    )
    return render_template(
        "admin/feeds.html",
        feeds=all_feeds,
        unmapped=unmapped,
        languages=taxonomy.languages(db_session),
        error=error,
    ), (400 if error else 200)


@bp.get("/feeds/<int:feed_id>")
@admin_required
def feed_page(feed_id: int) -> ResponseReturnValue:
    db_session = db.session()
    feed = db_session.get(Feed, feed_id)
    if feed is None:
        return render_template("web/error.html", title="No such feed", message=""), 404
    categories = db_session.scalars(
        select(FeedCategory)
        .where(FeedCategory.feed_id == feed_id)
        .order_by(FeedCategory.seen.desc(), FeedCategory.name)
    ).all()
    return render_template(
        "admin/feed.html",
        feed=feed,
        categories=categories,
        topics=stats.topic_choices(db_session),
    )


@bp.post("/feeds/<int:feed_id>/toggle")
@admin_required
def feed_toggle(feed_id: int) -> ResponseReturnValue:
    db_session = db.session()
    feed = db_session.get(Feed, feed_id)
    if feed is not None:
        feed.active = not feed.active
        db_session.commit()
        flash("Feed resumed." if feed.active else "Feed paused: it is not polled until resumed.")
    return redirect(url_for("admin.feed_page", feed_id=feed_id))


@bp.post("/feeds/<int:feed_id>/poll")
@admin_required
def feed_poll(feed_id: int) -> ResponseReturnValue:
    db_session = db.session()
    db.queue_after_commit(db_session, poll_feed, feed_id)
    db_session.commit()
    flash("Polling now; reload in a moment to see the result.")
    return redirect(url_for("admin.feed_page", feed_id=feed_id))


@bp.post("/feeds/<int:feed_id>/map")
@admin_required
def feed_map(feed_id: int) -> ResponseReturnValue:
    db_session = db.session()
    key, topic = request.form.get("key", ""), request.form.get("topic", "")
    if feeds.map_category(db_session, feed_id, key, topic or None):
        db_session.commit()
        flash("Mapped: entries with that category get the topic from now on.")
    else:
        flash("Nothing was mapped: choose a category and a topic from the lists.")
    return redirect(url_for("admin.feed_page", feed_id=feed_id))
