"""The JSON API under /api/v1: topics (public) and publishing articles (Bearer token)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, make_response, request, session
from flask.typing import ResponseReturnValue

from alerts import articles, db, digests, taxonomy
from alerts.errors import UnknownTopic
from alerts.models import DigestRun, Frequency
from worker.tasks import fanout_article, queue_digest_run, send_corrections

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error(status: int, code: str, message: str, **extra: Any) -> ResponseReturnValue:
    return jsonify(error=code, message=message, **extra), status


def token_required(
    view: Callable[..., ResponseReturnValue], admin_session: bool = False
) -> Callable[..., ResponseReturnValue]:
    """The API token as a Bearer header; for admin calls, a logged-in admin's session too."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if admin_session and session.get("admin"):
            return view(*args, **kwargs)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        expected = current_app.config["API_TOKEN"]
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            response = jsonify(error="unauthorized", message="A valid Bearer token is required.")
            response.headers["WWW-Authenticate"] = 'Bearer realm="news alerts"'
            return response, 401
        return view(*args, **kwargs)

    return wrapper


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _json_body() -> Any:
    """The request's JSON, or None when it is not JSON (or nested too deep to parse). A key
    given twice is refused with 400: which of the two was meant cannot be known."""
    if not request.is_json:
        return None
    try:
        return json.loads(request.get_data(), object_pairs_hook=_object)
    except _DuplicateKey as duplicate:
        message = f"The key {str(duplicate)[:100]!r} is given twice."
        abort(make_response(error(400, "duplicate_key", message)))
    except (ValueError, RecursionError):
        return None


@bp.get("/topics")
def topics() -> ResponseReturnValue:
    session = db.session()
    return jsonify(
        topics=[node.as_dict() for node in taxonomy.tree(session)],
        languages=[
            {"code": language.code, "name": language.name, "native_name": language.native_name}
            for language in taxonomy.languages(session)
        ],
    )


@bp.post("/articles")
@token_required
def publish_article() -> ResponseReturnValue:
    payload = _json_body()
    if payload is None:
        return error(
            400, "invalid_json", "The body must be a JSON object (Content-Type: application/json)."
        )
    session = db.session()
    try:
        article = articles.parse(session, payload)
        result = articles.publish(session, article)
    except articles.InvalidArticle as invalid:
        session.rollback()
        return error(422, "invalid_article", "The article was not stored.", fields=invalid.errors)
    if result.created:
        db.queue_after_commit(session, fanout_article, result.article_id)
    if result.correction:
        db.queue_after_commit(session, send_corrections)
    session.commit()
    if result.created:
        new: dict[str, Any] = {"id": result.article_id, "guid": article.guid, "created": True}
        if article.correction is not None:
            new["warnings"] = {"correction": "a new article: there is nothing to correct"}
        return jsonify(new), 201
    # A changed title or summary is a revision: readers who got the article are told once
    # (in their next digest; instant readers by email when it is a correction).
    body: dict[str, Any] = {
        "id": result.article_id,
        "guid": article.guid,
        "created": False,
        "changed": list(result.changed),
        "revision": (
            {"id": result.revision_id, "correction": result.correction}
            if result.revision_id is not None
            else None
        ),
    }
    if article.correction is not None and result.revision_id is None:
        body["warnings"] = {
            "correction": "nobody is told: neither the title nor the summary changed"
        }
    return jsonify(body), 200


def admin_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    return token_required(view, admin_session=True)


@bp.post("/digests")
@admin_required
def start_digest() -> ResponseReturnValue:
    """{"frequency": "daily", "dry_run": true, "topic": "wipo"} -> 200 (dry run) or 202."""
    payload = _json_body()
    if not isinstance(payload, dict):
        return error(400, "invalid_json", "The body must be a JSON object.")
    problems: dict[str, str] = {}
    frequency = str(payload.get("frequency"))
    if frequency not in [f.value for f in digests.DIGEST_FREQUENCIES]:
        problems["frequency"] = "must be daily, weekly or monthly"
    dry = payload.get("dry_run", False)
    if not isinstance(dry, bool):
        problems["dry_run"] = "must be true or false"
    scope = payload.get("topic") or ""
    if not isinstance(scope, str):
        problems["topic"] = "must be a topic slug"
    for name in set(payload) - {"frequency", "dry_run", "topic"}:
        problems[str(name)[:50]] = "is not a field"
    if problems:
        return error(422, "invalid_request", "No digest was started.", fields=problems)
    db_session = db.session()
    try:
        if dry:
            result = digests.dry_run(db_session, Frequency(frequency), scope)
            return jsonify(
                dry_run=True,
                frequency=frequency,
                topic=scope or None,
                readers=result.readers,
                emails=result.emails,
                sample_subscriber=result.sample.subscriber.email if result.sample else None,
            )
        run, created = digests.trigger(db_session, Frequency(frequency), scope, "api")
    except UnknownTopic:
        db_session.rollback()
        return error(
            422, "invalid_request", "No digest was started.", fields={"topic": "unknown topic"}
        )
    queue_digest_run(db_session, run.id)
    db_session.commit()
    body = digests.progress(db_session, run).as_dict()
    return jsonify(existing=not created, **body), 202


@bp.get("/digests/<int:run_id>")
@admin_required
def digest_status(run_id: int) -> ResponseReturnValue:
    db_session = db.session()
    run = db_session.get(DigestRun, run_id)
    if run is None:
        return error(404, "not_found", "No digest run has that id.")
    body = digests.progress(db_session, run).as_dict()
    return jsonify(body)
