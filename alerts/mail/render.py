"""Renders templates/email/<name>/{subject.txt, body.txt, body.html}, compiled once per process."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import css_inline
import jinja2

from alerts import i18n
from alerts.articles import summary_as_text

TEMPLATES_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "templates"
)
STYLESHEET = "email/_base/style.css"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class _InliningLoader(jinja2.FileSystemLoader):
    """Inlines the email stylesheet into each HTML template's source as it is loaded.

    Jinja caches the compiled template, so CSS is inlined once per template, never per message.
    """

    def __init__(self, searchpath: str) -> None:
        super().__init__(searchpath)
        with open(os.path.join(searchpath, STYLESHEET), encoding="utf-8") as css_file:
            self._css = css_file.read()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        # The layout (doctype, head) is written with its own inline styles; content is inlined.
        if (
            template.endswith(".html")
            and template.startswith("email/")
            and "/_base/" not in template
        ):
            source = css_inline.inline_fragment(source, self._css)
        return source, filename, uptodate


class EmailRenderer:
    """One Jinja environment per language: each compiles its templates once, with the
    language's fixed text translated in at compile time (i18n.InlineTranslations)."""

    def __init__(self, templates_dir: str = TEMPLATES_DIR) -> None:
        self.templates_dir = templates_dir
        self._environments: dict[str, jinja2.Environment] = {}

    @property
    def env(self) -> jinja2.Environment:
        """The environment of the current locale (i18n.using)."""
        code = i18n.current()
        environment = self._environments.get(code)
        if environment is None:
            environment = self._environments[code] = self._environment(code)
        return environment

    def _environment(self, code: str) -> jinja2.Environment:
        environment = jinja2.Environment(
            loader=_InliningLoader(self.templates_dir),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Templates do not change under a running worker: no stat() per message.
            auto_reload=False,
        )
        # A summary's links survive in the plain-text part: "text (address)".
        environment.filters["text_with_links"] = partial(summary_as_text, links=True)
        environment.alerts_locale = code  # type: ignore[attr-defined]
        i18n.install(environment, lambda: i18n.translations(code))
        return environment

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Renders in the current locale (the caller sets the reader's: i18n.using)."""
        env, folder = self.env, f"email/{name}"
        # The language and direction as values: cheaper than a call at each use.
        context = {**context, "lang": i18n.current(), "dir": i18n.direction()}
        # A subject is one line whatever the template or its data hold.
        subject = " ".join(env.get_template(f"{folder}/subject.txt").render(context).split())
        context["subject"] = subject
        return RenderedEmail(
            subject=subject,
            text=env.get_template(f"{folder}/body.txt").render(context),
            html=env.get_template(f"{folder}/body.html").render(context),
        )

    def warm_up(self) -> None:
        """Compile every email template in every language, and load what formatting dates
        and numbers needs: a worker does it once, before its first task, so the first alert
        after a start does not wait for it (about a quarter of a second per language)."""
        names = [
            os.path.relpath(os.path.join(folder, file), self.templates_dir)
            for folder, _dirs, files in os.walk(os.path.join(self.templates_dir, "email"))
            for file in files
        ]
        for code in i18n.LOCALES:
            with i18n.using(code):
                for name in names:
                    self.env.get_template(name.replace(os.sep, "/"))
                i18n.long_datetime(datetime.now(UTC))
                i18n.format_number(1)


_renderer: EmailRenderer | None = None


def renderer() -> EmailRenderer:
    """The process's renderer: templates compile on first use and stay compiled."""
    global _renderer
    if _renderer is None:
        _renderer = EmailRenderer()
    return _renderer
