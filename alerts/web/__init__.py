"""The web front: public signup pages, the JSON API, dev-only pages, and error pages."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from alerts import logs
from alerts.i18n import N_
from alerts.i18n import gettext as _

log = logging.getLogger(__name__)

csrf = CSRFProtect()
# Counters live in Redis (RATELIMIT_STORAGE_URI, by default the broker), shared by every web
# worker; the limits themselves are settings (see alerts.config).
limiter = Limiter(get_remote_address, strategy="fixed-window")


class RowId(IntegerConverter):
    """`<int:...>` in every route: a row id, so a number past what a database column holds
    (99999999999999999999) is simply no page (404), never a driver's OverflowError."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


request_log = logging.getLogger("alerts.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _request_started() -> None:
    """Every log line of a request carries its id: the proxy's X-Request-ID when it sent a
    sane one, else a new one (returned in the response's X-Request-ID)."""
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    logs.clear()
    logs.set_fields(request_id=g.request_id)


def _request_finished(response: Response) -> Response:
    """One line per request, naming the view (its URL may hold a reader's token), not the path."""
    started = g.get("request_started")
    if started is not None:
        request_log.info(
            "%s %s %s %.1fms",
            request.method,
            request.endpoint or "-",
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        response.headers["X-Request-ID"] = g.request_id
    return response


def _api_limit() -> str:
    return str(current_app.config["RATELIMIT_API"])


def _limit_api(blueprint: Any) -> None:
    """The API's one shared limit, read from the app serving the request. Registered once per
    process: the limiter and the blueprint are module-wide, and a limit registered per app
    would outlive it (a test's low limit applying to the next app's requests)."""
    if not getattr(blueprint, "_alerts_limited", False):
        limiter.shared_limit(_api_limit, scope="api")(blueprint)
        blueprint._alerts_limited = True


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = RowId
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"]
    # No X-RateLimit-* headers on every answer: reading the window back is one more Redis
    # round trip per request (a tenth of a signup's cost). A refusal says when to come back.
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # Redis away must not turn requests into 500s (a publish must still be stored): limits
    # fall back to per-process counters until it is back.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 2}
    )
    limiter.init_app(app)
    if int(app.config.get("PROXY_HOPS", 0)):
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from alerts.web import admin, api, feed, health, locale, public, reader

    locale.init_app(app)

    app.register_blueprint(public.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(reader.bp)
    app.register_blueprint(feed.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    csrf.exempt(api.bp)
    _limit_api(api.bp)
    if app.config["ENV"] == "development":
        from alerts.web import devmail

        app.register_blueprint(devmail.bp)

    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(TooManyRequests, _too_many)
    app.register_error_handler(HTTPException, _http_error)

    app.before_request(_request_started)
    app.after_request(_request_finished)
    app.teardown_request(lambda _error: logs.clear())

    @app.after_request
    def _security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: Flask-WTF checks the Referer of HTTPS form posts.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _csrf_error(error: CSRFError) -> ResponseReturnValue:
    message = _("The form had expired. Please go back, reload the page and send it again.")
    if _wants_json():
        return jsonify(error="csrf", message=message), 400
    return render_template("web/error.html", title=_("Please try again"), message=message), 400


def _too_many(error: TooManyRequests) -> ResponseReturnValue:
    message = _("Too many requests from here in a short time. Please wait a little and try again.")
    if _wants_json():
        response = jsonify(error="too_many_requests", message=message, limit=str(error.description))
    else:
        response = make_response(
            render_template("web/error.html", title=_("Please slow down"), message=message)
        )
    response.status_code = 429
    try:
        refused = limiter.current_limit
        if refused is not None:
            response.headers["Retry-After"] = str(max(int(refused.reset_at - time.time()), 1))
    except Exception as error:  # the limits' store is away: the refusal stands without it
        log.warning("no Retry-After for a 429: %s", error)
    return response


# Readers' words for the errors they can meet; other codes keep Werkzeug's (English) text.
HTTP_ERRORS = {
    400: (N_("Something was wrong with the request"), N_("Go back and try again.")),
    404: (
        N_("Page not found"),
        N_(
            "There is no page at this address. If you typed it, check it; if you followed a "
            "link, it may be out of date."
        ),
    ),
    405: (N_("This address does not take that request"), N_("Go back and try again.")),
    413: (N_("That was too much to send"), N_("Send less at once and try again.")),
    500: (
        N_("Sorry, something went wrong on our side"),
        N_("Nothing you did caused it. Please try again in a few minutes."),
    ),
}


def _http_error(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    if _wants_json():
        return jsonify(error=error.name.lower().replace(" ", "_"), message=error.description), code
    title, message = HTTP_ERRORS.get(code, (error.name, error.description or ""))
    if error.description and error.description != type(error).description:
        message = error.description  # a view's own words (`abort(400, description=...)`)
    return (
        render_template("web/error.html", title=_(title), message=_(message)),
        code,
    )
