"""The browser the e2e suites drive: Debian's Chromium under Playwright, or a skip naming it (CI: fail).

Playwright never downloads a browser here; ``CHROMIUM_PATH`` points at another Chrome/Chromium.
"""

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, async_playwright

from tests.support import tools
from tests.support.tools import missing_tool

# Debian's chromium here; elsewhere (e.g. GitHub's runners, which ship Google Chrome) set CHROMIUM_PATH.
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STEP_TIMEOUT_MS = 10_000


@pytest.fixture
def chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing_tool(*tools.CHROMIUM)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="todo-api-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            context.set_default_timeout(STEP_TIMEOUT_MS)
            try:
                yield context
            finally:
                await context.close()
