"""/admin: the blueprint and its login gate; each page's views live in the module for its job."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

# Annotated: the view modules import it back, and mypy reads them in the same cycle.
bp: Blueprint = Blueprint("admin", __name__, url_prefix="/admin")


def is_admin() -> bool:
    return bool(session.get("admin"))


def admin_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not is_admin():
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


# The view modules register their routes on `bp` when imported, so they come after it.
from alerts.web.admin import dashboard, digests, feeds, login, readers, subscribers  # noqa: E402
from alerts.web.admin.login import throttle  # noqa: E402

__all__ = [
    "admin_required",
    "bp",
    "dashboard",
    "digests",
    "feeds",
    "is_admin",
    "login",
    "readers",
    "subscribers",
    "throttle",
]
