"""The chat page and runwire.js, end to end in a real browser against a real gateway.

Each test starts a gateway on this module's event loop (real sockets on 127.0.0.1)
and drives Debian's Chromium through Playwright. Waits are DOM conditions with
deadlines (``expect``), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from runwire.agents.demo import DemoAgent
from runwire.app import Gateway
from runwire.exceptions import CloseCode
from runwire.ids import UserId
from runwire.runs import RunSnapshot
from tests.helpers import GatedAgent, running_gateway, token_for
from tests.web.conftest import require_browser

require_browser()

pytestmark = pytest.mark.asyncio(loop_scope="module")

expect.set_options(timeout=5_000)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

# Records, in order, the first moment each stage of a run is visible in the DOM.
# MutationObserver callbacks run after every WebSocket message task, so a stage the
# page skipped (a tool card drawn already completed, say) is missing from the list.
STAGE_RECORDER = """
window.__stages = [];
const stageChecks = {
  started: () => [...document.querySelectorAll('[data-testid=run-started]')]
    .some((e) => e.textContent.includes('started')),
  thinking: () => !!document.querySelector('[data-testid=thinking-step]'),
  tool_executing: () => !!document.querySelector('[data-testid=tool-card][data-status=running]'),
  tool_completed: () => !!document.querySelector('[data-testid=tool-card][data-status=completed]'),
  completed: () => !!document.querySelector('[data-testid=run][data-status=completed]'),
};
new MutationObserver(() => {
  for (const [name, check] of Object.entries(stageChecks)) {
    if (!window.__stages.includes(name) && check()) window.__stages.push(name);
  }
}).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""

# Records every state the connection badge shows.
BADGE_RECORDER = """
window.__badge = [];
new MutationObserver(() => {
  const badge = document.querySelector('[data-testid=connection-badge]');
  const state = badge && badge.dataset.state;
  if (state && window.__badge.at(-1) !== state) window.__badge.push(state);
}).observe(document, { subtree: true, childList: true, attributes: true });
"""


@asynccontextmanager
async def browser_context(browser: Browser, **options: Any) -> AsyncIterator[BrowserContext]:
    """A fresh profile (own storage: one signed-in user); fails on uncaught page errors."""
    context = await browser.new_context(**options)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        yield context
    finally:
        await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


async def sign_in(page: Page, url: str, user: str) -> None:
    """Dev-mode sign in by typing a user name, then wait for the live connection."""
    await page.goto(url)
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("User name").press("Enter")
    await expect(page.get_by_test_id("connection-badge")).to_have_attribute(
        "data-state", "connected"
    )
    await expect(page.get_by_test_id("user-name")).to_have_text(user)


async def send(page: Page, text: str) -> None:
    """Type a message and press Enter, as a user does."""
    box = page.get_by_label("Message")
    await box.fill(text)
    await box.press("Enter")


class SnapshotReads:
    """Records every ``get_runs`` a gateway answers (the HTTP API does not come here)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> None:
        self.answers: list[tuple[str, str | None, list[str]]] = []
        self.answered = asyncio.Event()
        runs = gateway.snapshots.runs

        async def recorded(user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
            snapshots = await runs(user_id, thread_id)
            self.answers.append((user_id, thread_id, [s.run_id for s in snapshots]))
            self.answered.set()
            return snapshots

        monkeypatch.setattr(gateway.snapshots, "runs", recorded)


async def wait_for(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), 5)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_golden_path_shows_every_stage_in_order_and_the_answer(browser: Browser) -> None:
    async with running_gateway() as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await page.add_init_script(STAGE_RECORDER)
        await sign_in(page, gateway.url, "alice")
        await send(page, "hello")

        run = page.get_by_test_id("run")
        await expect(run).to_have_attribute("data-status", "completed")
        stages = await page.evaluate("window.__stages")
        assert stages == ["started", "thinking", "tool_executing", "tool_completed", "completed"]

        await expect(run).to_have_count(1)
        await expect(run.get_by_test_id("run-input")).to_have_text("hello")
        await expect(run.get_by_test_id("run-started")).to_contain_text("scripted_agent started")
        await expect(run.get_by_test_id("thinking-step")).to_have_text(["thinking about hello"])
        card = run.get_by_test_id("tool-card")
        await expect(card).to_have_count(1)
        await expect(card.get_by_test_id("tool-name")).to_have_text("echo")
        await expect(card.get_by_test_id("tool-status")).to_have_text("done")
        await expect(card.get_by_test_id("tool-result")).to_have_text("HELLO")
        await expect(card.get_by_test_id("tool-duration")).to_have_text(re.compile(r"^[\d.]+ ms$"))
        await expect(run.get_by_test_id("answer")).to_have_text("echo: hello.")
        await expect(run.get_by_test_id("run-status")).to_have_text("Completed")
        await expect(run.get_by_test_id("cancel-run")).to_be_hidden()
        # The new thread is listed, selected, and named after its first message.
        await expect(page.get_by_test_id("thread-item")).to_have_count(1)
        await expect(page.get_by_test_id("thread-item")).to_have_attribute("aria-current", "page")
        await expect(page.get_by_test_id("thread-title")).to_have_text("hello")


async def test_two_tabs_of_a_user_share_a_run_and_another_user_sees_none_of_it(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = GatedAgent()
    async with (
        running_gateway(agent) as gateway,
        browser_context(browser) as alice,
        browser_context(browser) as bob,
    ):
        tab1 = await alice.new_page()
        await sign_in(tab1, gateway.url, "alice")
        tab2 = await alice.new_page()  # same profile: already signed in
        await tab2.goto(gateway.url)
        await expect(tab2.get_by_test_id("connection-badge")).to_have_attribute(
            "data-state", "connected"
        )
        bob_tab = await bob.new_page()
        await sign_in(bob_tab, gateway.url, "bob")

        await send(tab1, "shared question")
        await wait_for(agent.in_tool, "the agent's tool call")
        running = tab1.get_by_test_id("tool-card")
        await expect(running).to_have_attribute("data-status", "running")

        # The second tab lists the new thread live and joins the run midway.
        item = tab2.get_by_test_id("thread-item")
        await expect(item).to_have_text(re.compile("shared question"))
        await expect(item.get_by_test_id("thread-live")).to_be_visible()
        await item.click()
        await expect(tab2.get_by_test_id("tool-card")).to_have_attribute("data-status", "running")
        await expect(tab2.get_by_test_id("thinking-step")).to_have_text(["waiting"])

        agent.release.set()
        for tab in (tab1, tab2):
            run = tab.get_by_test_id("run")
            await expect(run).to_have_attribute("data-status", "completed")
            await expect(run.get_by_test_id("tool-card")).to_have_count(1)
            await expect(run.get_by_test_id("tool-result")).to_have_text("released")
            await expect(run.get_by_test_id("answer")).to_have_text("done")

        # A run started in tab 1 while tab 2 watches the thread appears there live.
        await send(tab1, "and again")
        for tab in (tab1, tab2):
            runs = tab.get_by_test_id("run")
            await expect(runs).to_have_count(2)
            await expect(runs.nth(1).get_by_test_id("run-input")).to_have_text("and again")
            await expect(runs.nth(1)).to_have_attribute("data-status", "completed")

        # Bob saw nothing: no thread, no run, not one event on his connection...
        await expect(bob_tab.get_by_test_id("thread-item")).to_have_count(0)
        await expect(bob_tab.get_by_test_id("run")).to_have_count(0)
        assert await bob_tab.evaluate("window.runwireApp.state.client.offset") == 0
        # ...and opening Alice's thread by its URL shows him nothing either.
        thread_id = await tab1.evaluate("window.runwireApp.state.currentThread")
        reads = SnapshotReads(monkeypatch, gateway)
        await bob_tab.goto(f"{gateway.url}/#thread={thread_id}")
        await bob_tab.reload()  # a fresh load of that URL reads his runs from the gateway
        await wait_for(reads.answered, "bob's get_runs")
        assert reads.answers == [("bob", None, [])]  # all of his runs: none
        await expect(bob_tab.get_by_test_id("empty-thread")).to_be_visible()
        await expect(bob_tab.get_by_test_id("run")).to_have_count(0)


async def test_dropped_socket_reconnects_resumes_and_shows_every_step_once(
    browser: Browser,
) -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await page.add_init_script(BADGE_RECORDER)
        await sign_in(page, gateway.url, "alice")
        await page.evaluate(
            "window.runwireApp.state.client.addEventListener("
            "'resumed', (e) => { window.__resumed = e.detail; })"
        )
        await send(page, "survive a drop")
        await wait_for(agent.in_tool, "the agent's tool call")
        run = page.get_by_test_id("run")
        await expect(run.get_by_test_id("tool-card")).to_have_attribute("data-status", "running")

        [connection] = gateway.manager.connections_of(UserId("alice"))
        gateway.manager.close_connection(connection, CloseCode.GOING_AWAY, "test")
        # The run ends while the page is away: its last events must come by replay.
        agent.release.set()

        badge = page.get_by_test_id("connection-badge")
        await expect(badge).to_have_attribute("data-state", "resumed")
        await expect(badge).to_have_text("Resumed")
        history = await page.evaluate("window.__badge")
        assert history[-2:] == ["reconnecting", "resumed"], history
        resumed = await page.evaluate("window.__resumed")
        assert resumed["to"] > resumed["from"], resumed  # missed events were replayed

        await expect(run).to_have_attribute("data-status", "completed")
        await expect(page.get_by_test_id("run")).to_have_count(1)
        await expect(run.get_by_test_id("thinking-step")).to_have_count(1)
        await expect(run.get_by_test_id("tool-card")).to_have_count(1)
        await expect(run.get_by_test_id("tool-card")).to_have_attribute("data-status", "completed")
        await expect(run.get_by_test_id("answer")).to_have_text("done")
        assert len(gateway.manager.connections_of(UserId("alice"))) == 1


async def test_cancel_mid_tool_marks_the_call_and_the_run_cancelled(browser: Browser) -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        await send(page, "never finishes")
        await wait_for(agent.in_tool, "the agent's tool call")

        run = page.get_by_test_id("run")
        card = run.get_by_test_id("tool-card")
        await expect(card).to_have_attribute("data-status", "running")
        await expect(run.get_by_test_id("run-status")).to_have_text("Running")
        # The elapsed-time counter ticks while the call runs.
        elapsed = card.get_by_test_id("tool-elapsed")
        await expect(elapsed).to_have_text(re.compile(r"^[\d.]+ (ms|s)$"))
        await expect(elapsed).not_to_have_text(await elapsed.text_content() or "")

        await run.get_by_test_id("cancel-run").click()
        await expect(card).to_have_attribute("data-status", "cancelled")
        await expect(card.get_by_test_id("tool-status")).to_have_text("cancelled")
        await expect(card.get_by_test_id("tool-elapsed")).to_be_hidden()
        await expect(run).to_have_attribute("data-status", "cancelled")
        await expect(run.get_by_test_id("run-status")).to_have_text("Cancelled")
        await expect(run.get_by_test_id("cancel-run")).to_be_hidden()
        assert gateway.runtime.active_runs() == 0


async def test_reload_mid_run_rebuilds_from_snapshots_then_continues_live(
    browser: Browser,
) -> None:
    agent = GatedAgent()
    async with running_gateway(agent) as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        await send(page, "first")
        await wait_for(agent.in_tool, "the agent's tool call")
        await expect(page.get_by_test_id("tool-card")).to_have_attribute("data-status", "running")

        await page.reload()
        run = page.get_by_test_id("run")
        await expect(run).to_have_count(1)
        await expect(run.get_by_test_id("run-input")).to_have_text("first")
        await expect(run.get_by_test_id("tool-card")).to_have_attribute("data-status", "running")
        await expect(page.get_by_test_id("connection-badge")).to_have_attribute(
            "data-state", "connected"
        )

        agent.release.set()
        await expect(run).to_have_attribute("data-status", "completed")
        await expect(run.get_by_test_id("thinking-step")).to_have_count(1)
        await expect(run.get_by_test_id("tool-card")).to_have_count(1)
        await expect(run.get_by_test_id("answer")).to_have_text("done")

        # A finished thread comes back whole after another reload.
        await page.reload()
        await expect(run).to_have_attribute("data-status", "completed")
        await expect(run.get_by_test_id("tool-card")).to_have_count(1)
        await expect(run.get_by_test_id("answer")).to_have_text("done")


async def test_reload_rebuilds_the_thread_over_the_socket_not_http(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_gateway() as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        await send(page, "hello")
        await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
        thread_id = await page.evaluate("window.runwireApp.state.currentThread")
        [run_id] = await page.evaluate("[...window.runwireApp.state.runs.keys()]")

        reads = SnapshotReads(monkeypatch, gateway)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.reload()
        run = page.get_by_test_id("run")
        await expect(run).to_have_attribute("data-status", "completed")
        await expect(run.get_by_test_id("run-input")).to_have_text("hello")
        await expect(run.get_by_test_id("answer")).to_have_text("echo: hello.")
        # One read of all her runs (the thread list and the view come from it).
        assert reads.answers == [("alice", None, [run_id])]
        assert await page.evaluate("window.runwireApp.state.currentThread") == thread_id
        assert not [url for url in requested if "/api/" in url], requested


async def test_production_mode_signs_in_with_a_pasted_token(browser: Browser) -> None:
    async with (
        running_gateway(mode="production") as gateway,
        browser_context(browser) as context,
    ):
        page = await context.new_page()
        await page.goto(gateway.url)
        token_box = page.get_by_label("Access token")
        await expect(token_box).to_be_visible()
        await expect(page.get_by_label("User name")).to_be_hidden()

        await token_box.fill("not-a-token")
        await page.get_by_test_id("token-submit").click()
        await expect(page.get_by_test_id("token-error")).to_contain_text("refused")

        await token_box.fill(token_for(gateway.settings, "carol"))
        await page.get_by_test_id("token-submit").click()
        await expect(page.get_by_test_id("connection-badge")).to_have_attribute(
            "data-state", "connected"
        )
        await expect(page.get_by_test_id("user-name")).to_have_text("carol")


async def test_runwire_js_works_on_its_own_as_documented(browser: Browser) -> None:
    async with running_gateway() as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{gateway.url}/healthz")  # any page of the origin
        result = await page.evaluate(
            """async ([url, token]) => {
              const { RunwireClient } = await import('/assets/runwire.js');
              const client = new RunwireClient();
              const states = [];
              const types = [];
              client.addEventListener('state', (e) => states.push(e.detail.state));
              const done = new Promise((resolve) => {
                client.addEventListener('event', (e) => {
                  types.push(e.detail.type);
                  if (e.detail.type === 'agent_completed') resolve(e.detail.data);
                });
              });
              const connected = await client.connect(url, token);
              const ack = await client.send('hi', 'thread-1');
              const completed = await done;
              let cancelError = null;
              try { await client.cancel(ack.run_id); } catch (error) { cancelError = error.code; }
              const rtt = await client.ping();
              const runs = await client.getRuns('thread-1');
              const run = await client.getRun(ack.run_id);
              const unknown = await client.getRun('r_unknown');
              let invalidError = null;
              try { await client.getRun('r'.repeat(129)); }
              catch (error) { invalidError = error.code; }
              client.close();

              const refused = new RunwireClient();
              const refusedStates = [];
              refused.addEventListener('state', (e) => refusedStates.push(e.detail.state));
              let closeCode = null;
              try { await refused.connect(url, 'forged.token.value'); }
              catch (error) { closeCode = error.closeCode; }
              return { user: connected.user_id, ack, types, completed, cancelError,
                       rtt, runs, run, unknown, invalidError, states, offset: client.offset,
                       closeCode, refusedStates };
            }""",
            [gateway.ws_url, token_for(gateway.settings, "dora")],
        )
    assert result["user"] == "dora"
    assert result["ack"]["thread_id"] == "thread-1"
    assert result["types"] == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message_delta",
        "agent_completed",
    ]
    assert result["completed"] == {"output": "echo: hi.", "status": "completed"}
    assert result["cancelError"] == "not_found"  # the run had finished
    assert result["rtt"] >= 0
    assert [(r["run_id"], r["status"]) for r in result["runs"]] == [
        (result["ack"]["run_id"], "completed")
    ]
    assert result["run"]["answer"] == "echo: hi."
    assert result["unknown"] is None
    assert result["invalidError"] == "invalid_message"
    assert result["offset"] == 8
    assert result["states"] == ["connecting", "connected", "closed"]
    assert result["closeCode"] == 4401  # refused for good: no reconnect loop
    assert result["refusedStates"] == ["connecting", "closed"]


# A scripted stand-in for WebSocket: records what runwire.js opens and sends, and lets
# the test play server frames and closes (no gateway involved).
FAKE_SOCKET_SCENARIO = """async () => {
  const { RunwireClient } = await import('/assets/runwire.js');
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url; this.protocols = protocols; this.sent = []; this.readyState = 1;
      sockets.push(this);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.readyState = 3; }
    play(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code) { this.readyState = 3; this.onclose({ code, reason: 'test' }); }
  }
  const until = async (predicate) => {
    for (let i = 0; i < 500 && !predicate(); i++) await new Promise((r) => setTimeout(r, 2));
    if (!predicate()) throw new Error('timed out: ' + predicate);
  };
  const event = (offset, type, data) =>
    ({ type, offset, run_id: 'r1', thread_id: 't1', seq: offset, ts: Date.now(), data });
  const client = new RunwireClient({ WebSocket: FakeSocket, baseDelay: 20, maxDelay: 40 });
  const states = [];
  const seen = [];
  client.addEventListener('state', (e) => states.push(e.detail.state));
  client.addEventListener('event', (e) => seen.push(e.detail.offset));
  const ready = client.connect('ws://gateway.test/ws', 'tok');
  sockets[0].play({ type: 'connected', user_id: 'u', epoch: 'e1', offset: 0 });
  await ready;
  sockets[0].play(event(1, 'agent_started', { agent: 'a', input: 'x' }));
  sockets[0].play(event(2, 'agent_thinking', { text: 'hm' }));
  sockets[0].play(event(2, 'agent_thinking', { text: 'hm' }));  // a duplicate
  // A message sent while the socket drops is sent again, same id, after the resume.
  const acked = client.send('again?', 't1', { id: 'm1' });
  sockets[0].drop(1001);
  await until(() => sockets.length === 2);
  const second = sockets[1];
  second.play({ type: 'connected', user_id: 'u', epoch: 'e1', offset: 5 });
  second.play(event(1, 'agent_started', { agent: 'a', input: 'x' }));  // already seen
  second.play(event(3, 'agent_message_delta', { text: 'ok' }));
  second.play({ type: 'resumed', epoch: 'e1', from: 2, to: 3 });
  second.play({ type: 'ack', id: 'm1', run_id: 'r2', thread_id: 't1' });
  const ack = await acked;
  second.drop(4409);  // slow consumer: reconnect at once
  await until(() => sockets.length === 3);
  sockets[2].play({ type: 'connected', user_id: 'u', epoch: 'e2', offset: 0 });
  sockets[2].play({ type: 'resume_failed', reason: 'epoch_changed', epoch: 'e2', offset: 0 });
  sockets[2].play(event(1, 'agent_started', { agent: 'a', input: 'y' }));  // new stream
  sockets[2].drop(4401);  // unauthorized: never reconnect
  await new Promise((r) => setTimeout(r, 100));
  return {
    urls: sockets.map((s) => s.url),
    protocols: sockets[0].protocols,
    resent: second.sent,
    seen, states, ack: ack.run_id,
    dropped: client.duplicatesDropped,
    position: client.position,
  };
}"""


async def test_runwire_js_dedupes_reconnects_and_resumes(browser: Browser) -> None:
    async with running_gateway() as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{gateway.url}/healthz")
        result = await page.evaluate(FAKE_SOCKET_SCENARIO)
    assert result["protocols"] == ["runwire.v1", "bearer.tok"]
    assert result["urls"] == [
        "ws://gateway.test/ws",
        "ws://gateway.test/ws?epoch=e1&offset=2",
        "ws://gateway.test/ws?epoch=e1&offset=3",
    ]  # and no fourth socket after 4401
    assert result["resent"] == [
        {"type": "user_message", "id": "m1", "content": "again?", "thread_id": "t1"}
    ]
    assert result["ack"] == "r2"
    assert result["seen"] == [1, 2, 3, 1]
    assert result["dropped"] == 2
    assert result["states"] == [
        "connecting",
        "connected",
        "reconnecting",
        "resumed",
        "reconnecting",
        "connected",
        "closed",
    ]
    assert result["position"] == {"epoch": "e2", "offset": 1}


# runwire.js refreshing its token in-band, against scripted sockets (no gateway).
FAKE_REFRESH_SCENARIO = """async () => {
  const { RunwireClient } = await import('/assets/runwire.js');
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.protocols = protocols; this.sent = []; this.readyState = 1; sockets.push(this);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.readyState = 3; }
    play(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
    drop(code, reason) { this.readyState = 3; this.onclose({ code, reason }); }
  }
  const until = async (predicate) => {
    for (let i = 0; i < 500 && !predicate(); i++) await new Promise((r) => setTimeout(r, 2));
    if (!predicate()) throw new Error('timed out: ' + predicate);
  };
  const far = Math.floor(Date.now() / 1000) + 3600;  // no proactive refresh in this test
  const connected = { type: 'connected', user_id: 'u', epoch: 'e1', offset: 0, expires_at: far };
  let calls = 0;
  const client = new RunwireClient({ WebSocket: FakeSocket, baseDelay: 20, maxDelay: 40 });
  const seen = [];
  for (const type of ['token_expiring', 'refreshed', 'refresh_failed']) {
    client.addEventListener(type, (e) => seen.push([type, e.detail.expires_at ?? null]));
  }
  const states = [];
  client.addEventListener('state', (e) => states.push(e.detail.state));
  const ready = client.connect('ws://gateway.test/ws', async () => `tok${++calls}`);
  await until(() => sockets.length === 1);
  sockets[0].play(connected);
  await ready;
  const expiresAtConnect = client.expiresAt;
  // The server warns: a fresh token goes out in-band, on the same socket.
  sockets[0].play({ type: 'token_expiring', expires_at: far });
  await until(() => sockets[0].sent.length === 1);
  const refresh = sockets[0].sent[0];
  sockets[0].play({ type: 'refreshed', id: refresh.id, expires_at: far + 600 });
  await until(() => client.expiresAt === far + 600);
  // A late warning about the replaced token changes nothing.
  sockets[0].play({ type: 'token_expiring', expires_at: far });
  await new Promise((r) => setTimeout(r, 20));
  const sentAfterLateWarning = sockets[0].sent.length;
  // The token ran out anyway: a token function can reconnect with a fresh one...
  sockets[0].drop(4401, 'token expired');
  await until(() => sockets.length === 2);
  sockets[1].play(connected);
  sockets[1].play({ type: 'resumed', epoch: 'e1', from: 0, to: 0 });
  // ...but a token the server refuses is final.
  sockets[1].drop(4401, 'invalid token');
  await new Promise((r) => setTimeout(r, 60));

  // A plain string token: the warning is passed on, nothing is refreshed, and the
  // expiry close is final.
  const plain = new RunwireClient({ WebSocket: FakeSocket, baseDelay: 20, maxDelay: 40 });
  const plainSeen = [];
  plain.addEventListener('token_expiring', (e) => plainSeen.push(e.detail.expires_at));
  const plainReady = plain.connect('ws://gateway.test/ws', 'plain');
  sockets[2].play(connected);
  await plainReady;
  sockets[2].play({ type: 'token_expiring', expires_at: far });
  sockets[2].drop(4401, 'token expired');
  await new Promise((r) => setTimeout(r, 60));
  return {
    protocols: sockets.map((s) => s.protocols[1]),
    refresh, sentAfterLateWarning, seen, states, calls, expiresAtConnect, far,
    plainSeen, plainSent: sockets[2].sent, plainState: plain.state, sockets: sockets.length,
  };
}"""


async def test_runwire_js_refreshes_its_token_in_band_with_a_token_function(
    browser: Browser,
) -> None:
    async with running_gateway() as gateway, browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{gateway.url}/healthz")
        result = await page.evaluate(FAKE_REFRESH_SCENARIO)
    far = result["far"]
    assert result["expiresAtConnect"] == far
    assert result["refresh"] == {"type": "refresh", "token": "tok2", "id": result["refresh"]["id"]}
    assert result["sentAfterLateWarning"] == 1  # no second refresh
    assert result["seen"] == [
        ["token_expiring", far],
        ["refreshed", far + 600],
        ["token_expiring", far],
    ]
    # tok1: connect; tok2: refresh; tok3: the reconnect after `token expired`.
    assert result["protocols"] == ["bearer.tok1", "bearer.tok3", "bearer.plain"]
    assert result["calls"] == 3
    assert result["states"] == ["connecting", "connected", "reconnecting", "resumed", "closed"]
    assert result["plainSeen"] == [far]
    assert result["plainSent"] == []
    assert result["plainState"] == "closed"
    assert result["sockets"] == 3  # neither refused client reconnected


SESSION = """() => {
  const client = window.runwireApp.state.client;
  return { connectionId: client.session && client.session.connection_id,
           expiresAt: client.expiresAt, state: client.state };
}"""


async def test_the_page_refreshes_a_short_lived_token_without_reconnecting(
    browser: Browser,
) -> None:
    # Dev tokens of 3 s (2-3 s after truncation to whole seconds), warned 1.5 s early.
    async with (
        running_gateway(dev_token_ttl_s=3, token_refresh_window_s=1.5) as gateway,
        browser_context(browser) as context,
    ):
        page = await context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await sign_in(page, gateway.url, "erin")
        first = await page.evaluate(SESSION)
        assert first["expiresAt"] is not None
        # Past the sign-in token's exp, the page holds a later token on the same socket.
        await page.wait_for_function(
            """(exp) => Date.now() / 1000 > exp + 0.2
                 && window.runwireApp.state.client.expiresAt > exp""",
            arg=first["expiresAt"],
            timeout=10_000,
        )
        now = await page.evaluate(SESSION)
        assert now["connectionId"] == first["connectionId"]
        assert now["state"] == "connected"

        await send(page, "still signed in?")
        run = page.get_by_test_id("run")
        await expect(run).to_have_attribute("data-status", "completed")
        await expect(run.get_by_test_id("answer")).to_have_text("echo: still signed in?.")
        # The HTTP API gets the refreshed token too (the first one has expired).
        status = await page.evaluate(
            """async () => (await fetch('/api/threads', { headers: {
                 Authorization: `Bearer ${window.runwireApp.state.token}` } })).status"""
        )
        assert status == 200
        await expect(page.get_by_test_id("user-name")).to_have_text("erin")
        assert (await page.evaluate(SESSION))["connectionId"] == first["connectionId"]
    assert sockets == [gateway.ws_url]
    assert gateway.metrics.connections_opened._value.get() == 1
    assert gateway.metrics.token_refreshes.labels("ok")._value.get() >= 1
    assert gateway.metrics.token_refreshes.labels("refused")._value.get() == 0


async def test_screenshot_of_a_finished_run(browser: Browser) -> None:
    async with (
        running_gateway(DemoAgent(word_delay_s=0)) as gateway,
        browser_context(browser, viewport={"width": 1280, "height": 860}) as context,
    ):
        page = await context.new_page()
        await sign_in(page, gateway.url, "alice")
        await send(page, "What is 17 * 23?")
        await expect(page.get_by_test_id("run")).to_have_attribute("data-status", "completed")
        await send(page, "And what is (120 - 36) / 4?")
        runs = page.get_by_test_id("run")
        await expect(runs).to_have_count(2)
        await expect(runs.nth(1)).to_have_attribute("data-status", "completed")
        await expect(runs.first.get_by_test_id("answer")).to_contain_text("17 * 23 = 391.")
        await expect(runs.nth(1).get_by_test_id("answer")).to_contain_text("(120 - 36) / 4 = 21")
        await expect(runs.first.get_by_test_id("tool-card")).to_have_count(2)

        ARTIFACTS.mkdir(exist_ok=True)
        target = ARTIFACTS / "chat-page.png"
        target.unlink(missing_ok=True)
        await page.screenshot(path=str(target))
    header = target.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 860)
