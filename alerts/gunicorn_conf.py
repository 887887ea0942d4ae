"""gunicorn's settings for the web app (`gunicorn -c python:alerts.gunicorn_conf ...`): its
logs through the service's formatter, and no access log of its own (the app logs each
request by view, never by a path that may hold a reader's token)."""

import os

from alerts import logs

logconfig_dict = logs.gunicorn_logconfig(
    os.environ.get("ALERTS_LOG_FORMAT", "text"), os.environ.get("ALERTS_LOG_LEVEL", "INFO")
)
accesslog = None
