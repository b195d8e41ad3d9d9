"""The chat page as a new user meets it: restarts, big numbers, a clean console, a
phone-sized screen, screen readers, a dark system theme and an empty message box.

Real gateways on 127.0.0.1, Debian's Chromium through Playwright; waits are DOM
conditions with deadlines. Screenshots go to ``artifacts/`` (desktop and 390x844).
"""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from runwire.agents.demo import DemoAgent
from tests.helpers import running_gateway, wait_until
from tests.web.conftest import require_browser
from tests.web.test_chat_page import send, sign_in

require_browser()

pytestmark = pytest.mark.asyncio(loop_scope="module")

expect.set_options(timeout=5_000)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
MOBILE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
}
BIG_PRODUCT = str(12345678901234567890 * 98765432109876543210)  # 40 digits, beyond 2^53


@asynccontextmanager
async def watched(
    browser: Browser, *, console_errors: bool = False, **options: Any
) -> AsyncIterator[tuple[BrowserContext, list[str]]]:
    """A fresh profile that fails on uncaught page errors and, unless
    ``console_errors``, on any console error (failed requests included)."""
    context = await browser.new_context(**options)
    errors: list[str] = []
    logged: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            logged.append(f"{message.text} ({message.location.get('url', '')})")

    context.on("weberror", lambda error: errors.append(str(error.error)))
    context.on("console", on_console)
    try:
        yield context, logged
    finally:
        await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
    if not console_errors:
        assert logged == [], f"console errors: {logged}"


def _shot(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    return target


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


# Each thread item's run count, and how many runs of that thread the view model holds.
COUNTS = """() => {
  const state = window.runwireApp.state;
  return [...document.querySelectorAll('[data-testid=thread-item]')].map((item) => ({
    shown: Number(/^(\\d+) runs?/.exec(item.querySelector('.thread-meta').textContent)[1]),
    held: [...state.runs.values()].filter((r) => r.thread_id === item.dataset.threadId).length,
  }));
}"""


async def _counts_match(page: Page) -> list[dict[str, int]]:
    counts: list[dict[str, int]] = await page.evaluate(COUNTS)
    assert all(c["shown"] == c["held"] for c in counts), counts
    return counts


async def test_normal_loads_log_no_console_error(browser: Browser) -> None:
    """Was: every sign-in page load logged GET /api/dev-token 400."""
    async with running_gateway() as gateway:
        async with watched(browser) as (context, _):
            page = await context.new_page()
            await sign_in(page, gateway.url, "alice")
            await send(page, "hello")
            await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
            await page.reload()
            await expect(page.get_by_test_id("answer")).to_have_text("echo: hello.")
            await page.get_by_test_id("sign-out").click()
            await expect(page.get_by_label("User name")).to_be_visible()
            await page.reload()  # the sign-in page again, from scratch
            await expect(page.get_by_label("User name")).to_be_visible()
        # The watch can fail: the old probe of /api/dev-token is caught.
        async with watched(browser, console_errors=True) as (context, logged):
            page = await context.new_page()
            await page.goto(gateway.url)
            await page.evaluate("fetch('/api/dev-token')")
            await wait_until(lambda: logged, what="the console error of a 400")
            assert "400" in logged[0]


async def test_a_production_sign_in_page_logs_no_console_error(browser: Browser) -> None:
    async with running_gateway(mode="production") as gateway, watched(browser) as (context, _):
        page = await context.new_page()
        await page.goto(gateway.url)
        await expect(page.get_by_label("Access token")).to_be_visible()


async def test_a_40_digit_tool_result_is_shown_exactly(browser: Browser) -> None:
    """Was: 1.219326311370218e+39 in the tool card (the answer text had it exact)."""
    agent = DemoAgent(word_delay_s=0)
    async with running_gateway(agent) as gateway, watched(browser) as (context, _):
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        await send(page, "what is 12345678901234567890 * 98765432109876543210?")
        run = page.get_by_test_id("run")
        await expect(run).to_have_attribute("data-status", "completed")
        result = run.get_by_test_id("tool-card").first.get_by_test_id("tool-result")
        await expect(result).to_have_text(BIG_PRODUCT)
        await expect(run.get_by_test_id("answer")).to_contain_text(BIG_PRODUCT)
        await page.reload()  # from the snapshot this time, not from live events
        await expect(result).to_have_text(BIG_PRODUCT)
        exact = await page.evaluate(
            """async () => {
              const { parseJson, stringifyJson } = await import('/assets/runwire.js');
              const text = '{"n":123456789012345678901234567890,"f":0.5,"s":9007199254740991}';
              const value = parseJson(text);
              return [typeof value.n, typeof value.s, stringifyJson(value) === text];
            }"""
        )
        assert exact == ["bigint", "number", True]


async def test_a_restart_that_lost_history_is_explained_and_the_list_cleared(
    browser: Browser,
) -> None:
    """Was: the runs vanished silently and the sidebar kept counting them."""
    # Reconnect attempts while no gateway listens log refused connections: allowed.
    async with watched(browser, console_errors=True) as (context, _):
        page = await context.new_page()
        async with running_gateway() as first:
            port = first.port
            await sign_in(page, first.url, "alice")
            await send(page, "one")
            await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
            await send(page, "two")
            await expect(page.get_by_test_id("run")).to_have_count(2)
            await expect(page.get_by_test_id("run").nth(1)).to_have_attribute(
                "data-status", "completed"
            )
            await page.get_by_test_id("new-thread").click()
            await send(page, "elsewhere")
            await expect(page.get_by_test_id("thread-item")).to_have_count(2)
            await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
            assert sorted(c["shown"] for c in await _counts_match(page)) == [1, 2]
        async with running_gateway(port=port):  # the memory engine's history is gone
            banner = page.get_by_test_id("banner")
            await expect(banner).to_be_visible(timeout=15_000)
            await expect(page.get_by_test_id("banner-text")).to_have_text(
                "The gateway restarted and lost its history: 3 earlier runs of this list are gone."
            )
            await expect(page.get_by_test_id("thread-item")).to_have_count(0)
            await expect(page.get_by_test_id("threads-empty")).to_be_visible()
            await expect(page.get_by_test_id("run")).to_have_count(0)
            await expect(page.get_by_test_id("thread-title")).to_have_text("New thread")
            assert await page.evaluate("window.runwireApp.state.runs.size") == 0

            await send(page, "after the restart")
            await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
            await expect(page.get_by_test_id("thread-item")).to_have_count(1)
            await expect(page.get_by_test_id("thread-item")).to_contain_text("1 run ·")
            assert await _counts_match(page) == [{"shown": 1, "held": 1}]
            await page.get_by_test_id("banner-action").click()  # Dismiss
            await expect(banner).to_be_hidden()


async def test_an_empty_message_disables_send(browser: Browser) -> None:
    async with running_gateway() as gateway, watched(browser) as (context, _):
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        button = page.get_by_test_id("send")
        box = page.get_by_label("Message")
        await expect(button).to_be_disabled()
        await box.fill("   \n ")
        await expect(button).to_be_disabled()
        await box.press("Enter")
        await expect(page.get_by_test_id("pending-run")).to_have_count(0)
        await box.fill("hi")
        await expect(button).to_be_enabled()
        await button.click()
        await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
        await expect(box).to_have_value("")
        await expect(button).to_be_disabled()


async def test_the_finished_answer_is_announced_politely(browser: Browser) -> None:
    """Was: the streamed answer was not announced to screen readers."""
    async with running_gateway() as gateway, watched(browser) as (context, _):
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        announcer = page.get_by_test_id("announcer")
        await expect(announcer).to_have_attribute("aria-live", "polite")
        await expect(announcer).to_have_text("")
        await send(page, "hello")
        await expect(announcer).to_have_text("The agent answered: echo: hello.")
        # The streaming answer itself is no live region (it would read every word).
        assert await page.get_by_test_id("answer").get_attribute("aria-live") is None
        await page.reload()  # a run rebuilt from its snapshot is not announced again
        await expect(page.get_by_test_id("answer")).to_have_text("echo: hello.")
        await expect(announcer).to_have_text("")


async def _two_thread_chat(page: Page, url: str) -> None:
    await sign_in(page, url, "alice")
    await send(page, "What is 17 * 23?")
    await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
    toggle = page.get_by_role("button", name="Threads")
    if await toggle.is_visible():  # a phone: "New thread" is in the drawer
        await toggle.click()
    await page.get_by_test_id("new-thread").click()
    await send(page, "what is 12345678901234567890 * 98765432109876543210?")
    run = page.get_by_test_id("run")
    await expect(run).to_have_attribute("data-status", "completed")
    await expect(run.get_by_test_id("tool-result").first).to_have_text(BIG_PRODUCT)


NO_SIDEWAYS_SCROLL = """() => [document.documentElement.scrollWidth,
  document.documentElement.clientWidth, document.body.scrollWidth]"""


async def test_a_phone_gets_a_drawer_a_one_line_header_and_no_sideways_scroll(
    browser: Browser,
) -> None:
    """Was (390x844): the sidebar took a quarter of the screen, 'Sign out' wrapped, the
    page scrolled 1 px sideways and the Enter-to-send hint showed on touch."""
    agent = DemoAgent(word_delay_s=0)
    async with running_gateway(agent) as gateway, watched(browser, **MOBILE) as (context, _):
        page = await context.new_page()
        await _two_thread_chat(page, gateway.url)
        panel = page.get_by_test_id("threads-panel")
        toggle = page.get_by_role("button", name="Threads")
        await expect(panel).to_be_hidden()
        await expect(toggle).to_have_attribute("aria-expanded", "false")
        await expect(page.get_by_test_id("composer-hint")).to_be_hidden()
        scroll_width, client_width, body_width = await page.evaluate(NO_SIDEWAYS_SCROLL)
        assert scroll_width == client_width == 390 and body_width <= 390
        header = await page.locator(".topbar").bounding_box()
        sign_out = await page.get_by_test_id("sign-out").bounding_box()
        assert header is not None and sign_out is not None
        assert header["height"] < 56 and sign_out["height"] < 32, (header, sign_out)
        conversation = await page.locator(".conversation").bounding_box()
        assert conversation is not None and conversation["width"] == 390
        await page.screenshot(path=str(_shot("chat-mobile.png")))

        await toggle.click()
        await expect(panel).to_be_visible()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        await expect(page.get_by_test_id("thread-item")).to_have_count(2)
        # Slid all the way in (the transition has ended), and narrower than the screen.
        await page.wait_for_function(
            """() => { const box = document.querySelector('[data-testid=threads-panel]')
                         .getBoundingClientRect();
                       return box.left === 0 && box.width <= 300; }"""
        )
        await page.screenshot(path=str(_shot("chat-mobile-threads.png")))
        await page.get_by_test_id("thread-item").last.click()  # the 17 * 23 thread
        await expect(panel).to_be_hidden()
        await expect(page.get_by_test_id("answer")).to_contain_text("17 * 23 = 391.")
        await toggle.click()
        await page.keyboard.press("Escape")
        await expect(panel).to_be_hidden()
    for name in ("chat-mobile.png", "chat-mobile-threads.png"):
        assert _png_size(ARTIFACTS / name) == (390, 844)


async def test_the_desktop_keeps_its_sidebar_and_hint(browser: Browser) -> None:
    agent = DemoAgent(word_delay_s=0)
    viewport: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}}
    async with running_gateway(agent) as gateway, watched(browser, **viewport) as (context, _):
        page = await context.new_page()
        await _two_thread_chat(page, gateway.url)
        await expect(page.get_by_test_id("threads-panel")).to_be_visible()
        await expect(page.get_by_role("button", name="Threads")).to_be_hidden()
        await expect(page.get_by_test_id("composer-hint")).to_be_visible()
        scroll_width, client_width, _ = await page.evaluate(NO_SIDEWAYS_SCROLL)
        assert scroll_width == client_width
        await page.screenshot(path=str(_shot("chat-desktop.png")))
    assert _png_size(ARTIFACTS / "chat-desktop.png") == (1280, 860)


@pytest.mark.parametrize(
    ("scheme", "background"), [("dark", "rgb(18, 21, 27)"), ("light", "rgb(246, 247, 249)")]
)
async def test_the_page_follows_the_system_color_scheme(
    browser: Browser, scheme: str, background: str
) -> None:
    agent = DemoAgent(word_delay_s=0)
    options: dict[str, Any] = {"color_scheme": scheme, "viewport": {"width": 1280, "height": 860}}
    async with running_gateway(agent) as gateway, watched(browser, **options) as (context, _):
        page = await context.new_page()
        await _two_thread_chat(page, gateway.url)
        colors = await page.evaluate(
            """() => {
              const css = (selector, property) =>
                getComputedStyle(document.querySelector(selector))[property];
              return { body: css('html', 'backgroundColor'), ink: css('body', 'color'),
                       panel: css('.agent', 'backgroundColor'),
                       tool: css('[data-testid=tool-card]', 'backgroundColor') };
            }"""
        )
        assert colors["body"] == background, colors
        dark = scheme == "dark"
        assert _lightness(colors["ink"]) > 0.8 if dark else _lightness(colors["ink"]) < 0.3
        assert (_lightness(colors["tool"]) < 0.2) == dark, colors
        await page.screenshot(path=str(_shot(f"chat-desktop-{scheme}.png")))
    if dark:
        async with (
            running_gateway(agent) as gateway,
            watched(browser, color_scheme="dark", **MOBILE) as (context, _),
        ):
            phone = await context.new_page()
            await _two_thread_chat(phone, gateway.url)
            await phone.screenshot(path=str(_shot("chat-mobile-dark.png")))


def _lightness(rgb: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", rgb)[:3])
    return (max(red, green, blue) + min(red, green, blue)) / 2
