"""The JSON API under /api/v1."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from alerts import db, taxonomy

bp = Blueprint("api", __name__, url_prefix="/api/v1")


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
