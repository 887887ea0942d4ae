"""/admin/: the dashboard (readers, articles and deliveries per day, recent runs, relays)."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from alerts import clock, db, stats
from alerts.sending import reconcile, relay
from alerts.web.admin import admin_required, bp
from alerts.web.charts import bars


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
