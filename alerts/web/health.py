"""What operators and orchestrators ask the web app: is it alive (/healthz), can the service
do its work (/readyz), and its figures (/metrics, for Prometheus, behind METRICS_TOKEN)."""

from __future__ import annotations

import hmac
import time

import redis
from flask import Blueprint, Response, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from alerts import db, metrics
from worker.beat import last_tick

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: this process answers. Nothing else is asked, so a database or broker outage
    never makes an orchestrator restart healthy web processes."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database and the broker answer, a worker answers a ping, and beat has
    ticked recently. 503 with what is wrong otherwise."""
    checks = {"database": _database(), **_broker_worker_beat()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if ready else "unavailable", **checks), 200 if ready else 503


def _database() -> str:
    try:
        db.session().execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as error:
        db.session().rollback()
        return f"error: {type(error).__name__}"


def _broker_worker_beat() -> dict[str, str]:
    client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=2)
    try:
        client.ping()
        tick = last_tick(client)
    except (redis.RedisError, OSError) as error:
        down = f"error: {type(error).__name__}"
        return {"broker": down, "worker": "unknown: no broker", "beat": "unknown: no broker"}
    finally:
        client.close()
    silence = float(current_app.config["BEAT_MAX_SILENCE"])
    if tick is None:
        beat = "error: beat has never ticked"
    elif time.time() - tick > silence:
        beat = f"error: no tick for {time.time() - tick:.0f}s"
    else:
        beat = "ok"
    try:
        replies = current_app.extensions["celery"].control.ping(timeout=1.0)
        # A sending node, not only the feeds node (its own queue): someone sends the mail.
        sending = [name for reply in replies for name in reply if not name.startswith("feeds@")]
        worker = "ok" if sending else "error: no sending worker answered a ping within 1s"
    except Exception as error:  # the broker went away between the checks (kombu raises)
        worker = f"error: {type(error).__name__}"
    return {"broker": "ok", "worker": worker, "beat": beat}


@bp.get("/metrics")
def metrics_page() -> ResponseReturnValue:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), str(token).encode()):
        response = jsonify(error="unauthorized", message="A valid Bearer token is required.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response, 401
    return Response(
        metrics.exposition(db.session, metrics.relay_of(current_app.config)),
        content_type=metrics.CONTENT_TYPE,
    )
