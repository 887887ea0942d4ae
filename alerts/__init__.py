"""News alerts: a news site's free email alerts.

The layers, outside in: `alerts.web` (pages, admin, API) and `alerts.cli`, then `worker`
(Celery tasks), then the domain (`subscriptions`, `articles`, `feeds`, `matching`, `digests`,
`sending`, `mail`, ...), then `models`. The domain takes a session and plain values and
imports neither Flask nor Celery; `create_app` (in `alerts.app`) puts the layers together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts.app import create_app as create_app


def __getattr__(name: str) -> Any:
    # `from alerts import create_app` without importing Flask for every domain module.
    if name == "create_app":
        from alerts.app import create_app

        return create_app
    raise AttributeError(f"module 'alerts' has no attribute {name!r}")
