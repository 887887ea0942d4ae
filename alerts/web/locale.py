"""Which of the site's languages a page is in, and the switcher that changes it.

Per request, in order: `?lang=` (the switcher's links, remembered in a cookie), that cookie,
the reader's own language on the pages their emailed links open, the browser's
Accept-Language, the site's default. The admin, the API and the dev pages stay in English.
Flask-Babel asks the same choice (`get_locale`), so its helpers agree with the pages.
"""

from __future__ import annotations

from typing import Any

import flask_babel
from flask import Flask, Response, g, request, url_for

from alerts import i18n
from alerts.models import Subscriber

COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 86400
ENGLISH_ONLY = ("/admin", "/api/", "/dev/", "/healthz", "/readyz", "/metrics")


def _choose() -> str:
    if request.path.startswith(ENGLISH_ONLY):
        return i18n.DEFAULT
    for chosen in (request.args.get("lang"), request.cookies.get(COOKIE), g.get("reader_locale")):
        if chosen and i18n.known(chosen) == chosen:
            return chosen
    return request.accept_languages.best_match(i18n.LOCALES) or i18n.DEFAULT


def for_reader(subscriber: Subscriber) -> None:
    """On a page an emailed link opens: the reader's own language, unless they switched."""
    g.reader_locale = subscriber.locale
    i18n.activate(_choose())
    flask_babel.refresh()


def switcher() -> list[dict[str, Any]]:
    """One link per language to this same page in it; a form's answer links to the form."""
    if request.method == "GET" and request.endpoint:
        target = dict(request.view_args or {}, **request.args.to_dict())
        endpoint = request.endpoint
    else:
        target, endpoint = {}, "public.signup_form"
    return [
        {
            "code": code,
            "name": i18n.language_name(code),
            "url": url_for(endpoint, **dict(target, lang=code)),
            "current": code == i18n.current(),
        }
        for code in i18n.LOCALES
    ]


def init_app(app: Flask) -> None:
    flask_babel.Babel(
        app,
        locale_selector=i18n.current,
        default_translation_directories=i18n.CATALOGS,
        configure_jinja=False,
    )
    i18n.install(app.jinja_env, lambda: i18n.translations(i18n.current()))
    app.jinja_env.globals["language_switcher"] = switcher

    @app.before_request
    def _activate() -> None:
        i18n.activate(_choose())

    @app.teardown_request
    def _deactivate(_error: BaseException | None) -> None:
        # The thread serves other work next (a test, a CLI command): back to the default.
        i18n.activate(i18n.DEFAULT)

    @app.after_request
    def _remember(response: Response) -> Response:
        if not request.path.startswith(ENGLISH_ONLY):
            response.vary.update(("Accept-Language", "Cookie"))
        chosen = request.args.get("lang")
        if chosen and i18n.known(chosen) == chosen and chosen != request.cookies.get(COOKIE):
            response.set_cookie(
                COOKIE, chosen, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True
            )
        return response
