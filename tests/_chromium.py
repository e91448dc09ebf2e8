"""Headless Debian Chromium for the browser tests (test_browser.py, test_slides.py).

Playwright drives the system's /usr/bin/chromium (apt-get install chromium; .ci/run installs it)
instead of a browser that `playwright install` would download.
"""

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (containers run as root), no GPU, and no traffic of the browser's own.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_or_skip():
    """The Chromium executable, or skip the test saying how to get one."""
    path = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if not path:
        pytest.skip(
            "browser test: chromium not installed: apt-get install chromium "
            "(the CI script .ci/run installs it)"
        )
    pytest.importorskip("playwright.sync_api", reason="browser test: needs the playwright package")
    return str(path)


def launch(playwright, executable):
    """A headless Chromium browser."""
    return playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
