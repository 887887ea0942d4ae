"""create_app(): the web app with its database, its Celery app and its views (the one place
that puts the layers together)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask

from alerts import config as settings

TEMPLATES_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates"
)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("alerts", template_folder=TEMPLATES_DIR)
    app.config.from_mapping(settings.defaults())
    if test_config is None:
        app.config.from_prefixed_env("ALERTS")
    else:
        app.config.from_mapping(test_config)
    settings.normalize(app.config)
    settings.check_production(app.config)
    settings.check_sending(app.config)
    if test_config is None:
        from alerts import logs

        logs.configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    if app.config["ENV"] == "production":
        app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # Admin sessions end after a working day.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=8)

    from alerts import db

    db.init_app(app)

    from worker.celery_app import celery_init_app

    celery_init_app(app)

    from alerts.web import init_app as init_web

    init_web(app)

    return app
