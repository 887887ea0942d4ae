"""The web front: public signup pages, the JSON API, dev-only pages, and error pages."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    if int(app.config.get("PROXY_HOPS", 0)):
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from alerts.web import admin, api, health, public, reader

    app.register_blueprint(public.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(reader.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    csrf.exempt(api.bp)
    if app.config["ENV"] == "development":
        from alerts.web import devmail

        app.register_blueprint(devmail.bp)

    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)

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
    message = "The form had expired. Please go back, reload the page and send it again."
    if _wants_json():
        return jsonify(error="csrf", message=message), 400
    return render_template("web/error.html", title="Please try again", message=message), 400


def _http_error(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    if _wants_json():
        return jsonify(error=error.name.lower().replace(" ", "_"), message=error.description), code
    return (
        render_template("web/error.html", title=error.name, message=error.description),
        code,
    )
