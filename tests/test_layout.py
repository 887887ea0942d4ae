"""The layers: web -> worker -> domain -> models. The domain takes a session and plain values
and imports neither Flask nor Celery, so it runs the same under a view, a task or a script."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import alerts

# The outer layers, and the migrations (Alembic's, run by the CLI).
OUTSIDE_THE_DOMAIN = ("alerts.web", "alerts.cli", "alerts.app", "alerts.migrations")


def _domain_modules() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.walk_packages(alerts.__path__, "alerts.")
        if not module.name.startswith(OUTSIDE_THE_DOMAIN)
    )


def test_the_domain_imports_neither_flask_nor_celery() -> None:
    modules = _domain_modules()
    assert "alerts.sending.batches" in modules and "alerts.digests.content" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = [m for m in ('flask', 'celery') if m in sys.modules]\n"
        "    if loaded:\n"
        "        sys.exit(f'{name} imports {loaded[0]}')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_modules_have_one_job_each() -> None:
    """Each module stays under about 400 lines (models aside): a longer one has two jobs."""
    import pathlib

    root = pathlib.Path(alerts.__file__).parent
    long = {
        str(path.relative_to(root)): length
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
        and path.name != "models.py"
        and (length := len(path.read_text().splitlines())) > 420
    }
    assert long == {}
