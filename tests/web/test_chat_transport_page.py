"""A page using the ``ai`` package's ``DefaultChatTransport`` in Chromium, against the
gateway's ``POST /api/chat``: the message it sends comes back assembled.

The page (tests/frontends/browser_chat.mjs) is bundled from the npm packages pinned in
tests/frontends/package.json by esbuild, and served by the gateway itself (two routes
the test adds), so it calls the gateway from its own origin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from runwire import Gateway
from runwire.http.message import HttpRequest, HttpResponse
from tests.front_doors import front_door
from tests.frontends.live import ANSWER, StepAgent
from tests.frontends.node import bundle
from tests.web.conftest import require_browser

require_browser()

pytestmark = pytest.mark.asyncio(loop_scope="module")

expect.set_options(timeout=10_000)

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>chat</title></head><body>
<form><label>Message <input name="message"></label><button>Send</button></form>
<p id="status">idle</p><p id="reasoning"></p><p id="tool"></p><p id="answer"></p>
<script type="module" src="chat.js"></script>
</body></html>"""


async def test_the_chat_transport_in_a_browser_shows_the_assembled_answer(
    browser: Browser, tmp_path: Path
) -> None:
    script = bundle("browser_chat.mjs", tmp_path / "chat.js").read_bytes()

    def serve(gateway: Gateway) -> None:
        async def page(_: HttpRequest) -> HttpResponse:
            return HttpResponse(200, PAGE, "text/html; charset=utf-8")

        async def code(_: HttpRequest) -> HttpResponse:
            return HttpResponse(200, script, "text/javascript; charset=utf-8")

        gateway.router.get("/chat-test/", page)
        gateway.router.get("/chat-test/chat.js", code)

    agent = StepAgent()
    agent.release.set()
    async with front_door("standalone", agent, prepare=serve) as front:
        context = await browser.new_context()
        errors: list[str] = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        try:
            page = await context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{front.url}/chat-test/#token={front.token('alice')}&chat=c_page")
            await page.get_by_label("Message").fill("what is six times seven?")
            await page.get_by_role("button", name="Send").click()
            await expect(page.locator("#status")).to_have_text("done")
            await expect(page.locator("#answer")).to_have_text(ANSWER)
            await expect(page.locator("#reasoning")).to_have_text(
                "The user asks: what is six times seven?"
            )
            await expect(page.locator("#tool")).to_have_text("lookup: output-available")
        finally:
            await context.close()
    assert errors == []
