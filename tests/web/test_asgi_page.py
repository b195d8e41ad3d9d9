"""The chat page and runwire.js through the ASGI front door, mounted in FastAPI.

The gateway is mounted under ``/runwire`` in a FastAPI app served by a real
uvicorn; the page must load its assets, call the API and open its socket under
that prefix, and show a whole run.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Request, expect

from runwire import Gateway
from runwire.asgi import uvicorn_settings
from tests.asgi_server import uvicorn_serving
from tests.front_doors import PREFIX, fastapi_app
from tests.helpers import make_settings, scripted_agent
from tests.web.conftest import require_browser

require_browser()

pytestmark = pytest.mark.asyncio(loop_scope="module")

expect.set_options(timeout=5_000)


async def test_the_page_runs_a_message_under_the_fastapi_mount(browser: Browser) -> None:
    gateway = Gateway(make_settings(), agent=scripted_agent)
    app = fastapi_app(gateway)
    async with uvicorn_serving(app, **uvicorn_settings(gateway.settings)) as base:
        context = await browser.new_context()
        errors: list[str] = []
        requested: list[str] = []
        context.on("weberror", lambda error: errors.append(str(error.error)))

        def record(request: Request) -> None:
            requested.append(request.url)

        context.on("request", record)
        try:
            page = await context.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))
            await page.goto(base + PREFIX)  # redirected to the prefix with its slash
            assert page.url == f"{base}{PREFIX}/"
            await page.get_by_label("User name").fill("alice")
            await page.get_by_label("User name").press("Enter")
            await expect(page.get_by_test_id("connection-badge")).to_have_attribute(
                "data-state", "connected"
            )
            box = page.get_by_label("Message")
            await box.fill("hello")
            await box.press("Enter")
            run = page.get_by_test_id("run")
            await expect(run).to_have_attribute("data-status", "completed")
            await expect(run.get_by_test_id("tool-result")).to_have_text("HELLO")
            await expect(run.get_by_test_id("answer")).to_have_text("echo: hello.")
            assert sockets == [f"{base.replace('http', 'ws', 1)}{PREFIX}/ws"]
        finally:
            await context.close()
    assert errors == []
    outside = [
        url
        for url in requested
        if url != f"{base}{PREFIX}" and not url.startswith(f"{base}{PREFIX}/")
    ]
    assert outside == [], "every request of the page stays under the mount"
    assert any(url.startswith(f"{base}{PREFIX}/assets/runwire.js") for url in requested)
