"""Entry point of `celery -A worker worker|beat`: the Flask app from ALERTS_* and its Celery app."""

from __future__ import annotations

from celery import Celery

from alerts import create_app

flask_app = create_app()
celery_app: Celery = flask_app.extensions["celery"]
