"""The chat page after a clean restart of `runwire serve` on its SQLite file.

Five conversations, then SIGTERM and a new process on the same file and port: the
page lists all five threads, and opening one shows its conversation. Real processes,
Debian's Chromium through Playwright; waits are DOM conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from runwire.client import Client
from tests.engines.test_sqlite import serve_sqlite
from tests.helpers import SECRET, assert_run_rules, collect_run, make_settings, token_for
from tests.redis_server import free_port
from tests.web.conftest import require_browser
from tests.web.test_chat_page import browser_context, sign_in

require_browser()

pytestmark = pytest.mark.asyncio(loop_scope="module")

expect.set_options(timeout=10_000)

AGENT = "tests.helpers:scripted_agent"
QUESTIONS = [f"question {n}" for n in range(5)]


async def test_after_a_clean_restart_the_page_shows_all_five_threads_and_opens_one(
    browser: Browser, tmp_path: Path
) -> None:
    db = tmp_path / "runwire.db"
    port = free_port()
    token = token_for(make_settings(auth_secret=SECRET), "alice")
    with serve_sqlite(db, tmp_path, port=port, agent=AGENT) as (process, ws_url):
        async with Client.connect(ws_url, token) as client:
            for question in QUESTIONS:  # one new thread each
                ack = await client.send_message(question)
                assert_run_rules(await collect_run(client, ack["run_id"]))
        process.send_signal(signal.SIGTERM)  # a clean stop
        assert await asyncio.to_thread(process.wait, 15) == 0

    with serve_sqlite(db, tmp_path, port=port, agent=AGENT) as (_, ws_url):
        url = ws_url.replace("ws", "http", 1).removesuffix("/ws")
        async with browser_context(browser) as context:
            page = await context.new_page()
            await sign_in(page, url, "alice")
            threads = page.get_by_test_id("thread-item")
            await expect(threads).to_have_count(5)
            await expect(threads).to_contain_text(list(reversed(QUESTIONS)))  # newest first
            await threads.filter(has_text="question 2").click()
            run = page.get_by_test_id("run")
            await expect(run).to_have_count(1)
            await expect(run).to_have_attribute("data-status", "completed")
            await expect(run.get_by_test_id("run-input")).to_have_text("question 2")
            await expect(run.get_by_test_id("tool-card")).to_have_count(1)
            await expect(run.get_by_test_id("answer")).to_have_text("echo: question 2.")
