"""/admin/feeds: every feed with its state; add, pause, poll, and map a feed's categories."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from alerts import db, feeds, stats, subscriptions, taxonomy
from alerts.errors import InvalidInput
from alerts.models import Feed, FeedCategory
from alerts.web.admin import admin_required, bp
from worker.tasks import poll_feed


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
                current_app.config["FEED_ALLOW"],
            )
        except InvalidInput as invalid:
            error = " ".join(invalid.errors.values())
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
