"""Headless Chromium for browser tests: Debian's `chromium` package driven by Playwright.

No browser is downloaded: Playwright launches the `chromium` on PATH (or ALERTS_CHROMIUM).
Where there is none, a test says so and is skipped, unless ALERTS_REQUIRE_BROWSER=1 (CI
sets it, after installing the package), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Screenshots the browser tests take, kept after the run (see the README).
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def executable() -> str | None:
    return os.environ.get("ALERTS_CHROMIUM") or shutil.which("chromium")


def screenshot(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name


@contextmanager
def chromium() -> Iterator[Any]:
    path = executable()
    if path is None:
        message = (
            "no Chromium: install Debian's `chromium` package (apt-get install chromium) "
            "or point ALERTS_CHROMIUM at one"
        )
        if os.environ.get("ALERTS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()
