"""The JSON API under /api/v1: topics (public) and publishing articles (Bearer token)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from alerts import articles, db, taxonomy

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error(status: int, code: str, message: str, **extra: Any) -> ResponseReturnValue:
    return jsonify(error=code, message=message, **extra), status


def token_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
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
    payload = request.get_json(silent=True)
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
    session.commit()
    if result.created:
        from worker.tasks import fanout_article

        fanout_article.delay(result.article_id)
        return jsonify(id=result.article_id, guid=article.guid, created=True), 201
    return jsonify(
        id=result.article_id, guid=article.guid, created=False, changed=list(result.changed)
    ), 200
