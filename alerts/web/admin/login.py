"""/admin/login and /admin/logout, with the throttle that slows and then locks out guessing."""

from __future__ import annotations

import hmac
import time

import redis
from flask import current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from alerts.web import limiter
from alerts.web.admin import bp


class LoginThrottle:
    """Counts wrong passwords per client for 15 minutes, in Redis (shared by every web worker),
    falling back to this process's memory when Redis cannot be reached."""

    WINDOW = 900
    LOCK_AFTER = 10

    def __init__(self) -> None:
        self.memory: dict[str, tuple[int, float]] = {}

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=0.5)

    def failures(self, who: str) -> int:
        try:
            value = self._client().get(f"alerts:login-failures:{who}")
            return int(value or 0)
        except (redis.RedisError, OSError):
            count, since = self.memory.get(who, (0, 0.0))
            return count if time.monotonic() - since < self.WINDOW else 0

    def failed(self, who: str) -> int:
        try:
            client = self._client()
            key = f"alerts:login-failures:{who}"
            count = int(client.incr(key))
            client.expire(key, self.WINDOW)
            return count
        except (redis.RedisError, OSError):
            count = self.failures(who) + 1
            self.memory[who] = (count, time.monotonic())
            return count

    def delay(self, failures: int) -> float:
        """Each wrong password makes the next answer slower: 0.25 s doubling, at most 4 s."""
        return 0.0 if failures == 0 else min(0.25 * 2 ** (failures - 1), 4.0)


throttle = LoginThrottle()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"])
def login() -> ResponseReturnValue:
    error = None
    who = request.remote_addr or "unknown"
    if request.method == "POST":
        failures = throttle.failures(who)
        if failures >= throttle.LOCK_AFTER:
            error = "Too many wrong passwords. Try again in 15 minutes."
            return render_template("admin/login.html", error=error), 429
        given = request.form.get("password", "").encode()
        expected = current_app.config["ADMIN_PASSWORD"].encode()
        if hmac.compare_digest(given, expected):
            session.clear()
            session["admin"] = True
            session.permanent = True
            target = request.args.get("next", "")
            # Only our own admin pages: never an open redirect, never a control character
            # (a CR/LF in Location would break the response).
            if (
                not target.startswith("/admin")
                or "//" in target
                or "\\" in target
                or not target.isprintable()
                or not target.isascii()
            ):
                target = url_for("admin.dashboard")
            return redirect(target)
        time.sleep(throttle.delay(throttle.failed(who)))
        error = "That password is not right."
        return render_template("admin/login.html", error=error), 401
    return render_template("admin/login.html", error=error)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("admin.login"))
