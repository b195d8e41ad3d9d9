"""A headless Chromium shared by the browser tests of one module.

The browser runs on the module's event loop, the same loop the tests (and the
gateways they start) run on: every web test module sets
``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SKIP_VARIABLE = "SKIP_BROWSER_TESTS"


def missing_browser(chromium: Path = CHROMIUM) -> str | None:
    """Why the browser tests cannot run (naming the one command to fix it), or None."""
    if chromium.exists():
        return None
    return (
        f"the browser tests need Debian's Chromium at {chromium}: run"
        f" `sudo apt-get install chromium` (make test does it when run as root),"
        f" or set {SKIP_VARIABLE}=1 to skip them"
    )


def require_browser() -> None:
    """Fail the collecting module loudly without Chromium; skip only on explicit opt-out."""
    problem = missing_browser()
    if problem is None:
        return
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: {problem}", allow_module_level=True)
    pytest.fail(problem, pytrace=False)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
