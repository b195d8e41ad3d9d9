// The runwire chat page. Plain DOM, no framework, no build step.
//
// Model: every run this tab knows, keyed by run id, folded from events exactly as the
// server folds its run snapshots (runs.py). A run is created by its `agent_started`,
// or adopted from a snapshot when the tab joins it midway; a snapshot
// carries `last_offset`, and an event at or below a run's `last_offset` is never
// applied twice. The view of the current thread is synced from the model after every
// change, touching only the DOM that differs. The thread list (titles, run counts) is
// derived from the same model (runstore.js threadsOf), so it always matches the view.
//
// At sign-in, and whenever events were lost (`resume_failed`), the model is rebuilt
// from all of the user's run snapshots. They are read over the socket (`getRunsPage`
// / `getRun`) when it is up: any node answers those, also for a user it did not serve
// before. Only while the socket is down does the page ask this node's HTTP API
// (`/api/runs`), which knows only the runs this node has seen.

import { RunwireClient, parseJson, stringifyJson } from "./runwire.js";
import { applyEvent, newRun, threadsOf } from "./runstore.js";

const TOKEN_KEY = "runwire.token";
// "dev" when the token came from /api/dev-token (the page can mint fresh ones).
const TOKEN_SOURCE_KEY = "runwire.token-source";
const TICK_MS = 100;
const SNAPSHOT_TIMEOUT_MS = 5_000; // then the page asks over HTTP instead

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const state = {
  token: null,
  renewable: false, // the token comes from /api/dev-token: refreshed before it runs out
  client: null,
  userId: null,
  currentThread: null,
  runs: new Map(), // run_id -> run model
  loading: new Map(), // run_id -> events buffered while its snapshot is fetched
  views: new Map(), // run_id -> view of a run of the current thread
  pending: [], // messages sent but not acknowledged: {id, content, threadId, element}
  skewMs: Infinity, // smallest (browser clock - event ts) seen: server clock offset + latency
  ticker: null,
  generation: 0, // bumped on sign out, so late replies of an old session are ignored
};

// -- small helpers ------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else if (key === "testid") element.dataset.testid = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function setAttr(element, name, value) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function formatClock(ts) {
  if (!ts) return "";
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function formatWhen(ts) {
  if (!ts) return "";
  const seconds = (Date.now() - ts) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  const date = new Date(ts);
  if (date.toDateString() === new Date().toDateString()) return formatClock(ts).slice(0, 5);
  return date.toLocaleDateString([], { month: "short", day: "numeric" });
}

/** A tool's args or result as text; big integers exactly as the server sent them. */
function formatValue(value) {
  if (typeof value === "string") return value;
  try {
    return stringifyJson(value, 1).replace(/\n\s*/g, " ");
  } catch {
    return String(value);
  }
}

function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

function tokenExpired(token) {
  const claims = tokenClaims(token);
  return claims !== null && typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
}

// Every URL is relative to the page, so the page works wherever the gateway is mounted
// (`/`, or `/runwire/` in a FastAPI app): the socket is `ws` beside the page.
function wsUrl() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.href;
}

async function api(path) {
  const generation = state.generation;
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (generation !== state.generation) throw new Error("signed out");
  if (response.status === 401) {
    signOut("Your session has expired. Sign in again.");
    throw new Error("unauthorized");
  }
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return parseJson(await response.text());
}

/** Whether to read snapshots over the socket: it is open, or opening for the first time. */
function socketReadable(client) {
  return client !== null && ["connecting", "connected", "resumed"].includes(client.state);
}

/**
 * Snapshots from the socket when it is readable, else (or when it fails: engine
 * unavailable, no reply in time, closed) from HTTP. `fromSocket(client)` and
 * `fromHttp()` return what the caller wants; late replies of a signed-out session throw.
 */
async function readSnapshots(fromSocket, fromHttp) {
  const client = state.client;
  const generation = state.generation;
  if (socketReadable(client)) {
    try {
      const result = await fromSocket(client);
      if (generation !== state.generation) throw new Error("signed out");
      return result;
    } catch (error) {
      if (generation !== state.generation) throw error;
    }
  }
  return fromHttp();
}

/** One page of the user's runs, oldest first: `{runs, more}`, or null if unknown. */
function loadRunsPage(before) {
  return readSnapshots(
    (client) => client.getRunsPage(null, { timeout: SNAPSHOT_TIMEOUT_MS, before }),
    async () => {
      const query = before ? `?before=${encodeURIComponent(before)}` : "";
      const body = await api(`api/runs${query}`);
      return body === null ? null : { runs: body.runs, more: body.more === true };
    },
  );
}

/** Every run snapshot the gateway holds for the user, oldest first; null if unknown. */
async function loadAllRuns() {
  const all = [];
  let before;
  for (;;) {
    const page = await loadRunsPage(before);
    if (page === null) return all.length ? all : null;
    all.unshift(...page.runs);
    if (!page.more || page.runs.length === 0) return all;
    before = page.runs[0].run_id;
  }
}

/** One run's snapshot; null if the gateway holds none. */
function loadRun(runId) {
  return readSnapshots(
    (client) => client.getRun(runId, { timeout: SNAPSHOT_TIMEOUT_MS }),
    () => api(`api/runs/${encodeURIComponent(runId)}`),
  );
}

function showBanner(text, action = null, label = "Reconnect") {
  const banner = $("banner");
  setText($("banner-text"), text);
  const button = $("banner-action");
  button.hidden = action === null;
  button.onclick = action;
  setText(button, label);
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// -- sign in ------------------------------------------------------------------------

async function showSignIn(message = "") {
  $("chat-view").hidden = true;
  $("who").hidden = true;
  $("threads-toggle").hidden = true;
  setThreadsOpen(false);
  $("signin-view").hidden = false;
  setBadge("idle");
  let production = false;
  try {
    // Always 200: the page never probes a route that answers an error (a console error).
    const info = await (await fetch("api/info")).json();
    production = info.dev_sign_in !== true;
  } catch {
    production = false;
  }
  const form = production ? $("token-signin") : $("dev-signin");
  $("dev-signin").hidden = production;
  $("token-signin").hidden = !production;
  setText(production ? $("token-error") : $("signin-error"), message);
  form.querySelector("input, textarea").focus();
}

async function devSignIn(event) {
  event.preventDefault();
  const user = $("signin-user").value.trim();
  const error = $("signin-error");
  if (!user) {
    setText(error, "Type a user name.");
    $("signin-user").focus();
    return;
  }
  const response = await fetch(`api/dev-token?user=${encodeURIComponent(user)}`);
  if (response.status === 404) {
    await showSignIn("This gateway runs in production mode: paste an access token.");
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    setText(error, body.error || `Sign-in failed (HTTP ${response.status}).`);
    return;
  }
  setText(error, "");
  start(body.token, { renewable: true });
}

async function tokenSignIn(event) {
  event.preventDefault();
  const token = $("signin-token").value.trim();
  const error = $("token-error");
  if (!token) {
    setText(error, "Paste a token.");
    return;
  }
  const response = await fetch("api/threads", { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    setText(error, `The gateway refused this token (${body.error || "unauthorized"}).`);
    return;
  }
  setText(error, "");
  start(token, { renewable: false });
}

function signOut(message = "") {
  stop();
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_SOURCE_KEY);
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

function stop() {
  state.generation += 1;
  if (state.client !== null) state.client.close();
  state.client = null;
  state.token = null;
  state.userId = null;
  state.runs.clear();
  state.loading.clear();
  state.pending = [];
  state.currentThread = null;
  renderThreads();
  renderThread();
}

// -- session ------------------------------------------------------------------------

/**
 * The token runwire.js connects and refreshes with. A dev sign-in gets a function:
 * the sign-in token first, then a fresh one from /api/dev-token for every refresh
 * and reconnect (the socket stays open across token lifetimes). A pasted token
 * cannot be renewed by the page: it is passed as is, and expires with its socket.
 */
function tokenSource(userId) {
  if (!state.renewable) return state.token;
  const generation = state.generation;
  let first = true;
  return async () => {
    if (first) {
      first = false;
      return state.token;
    }
    const response = await fetch(`api/dev-token?user=${encodeURIComponent(userId)}`);
    if (generation !== state.generation) throw new Error("signed out");
    if (!response.ok) throw new Error(`/api/dev-token: HTTP ${response.status}`);
    const body = await response.json();
    state.token = body.token; // the HTTP API calls use it too
    localStorage.setItem(TOKEN_KEY, body.token);
    return body.token;
  };
}

function start(token, { renewable = state.renewable } = {}) {
  stop();
  state.token = token;
  state.renewable = renewable;
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(TOKEN_SOURCE_KEY, renewable ? "dev" : "pasted");
  const claims = tokenClaims(token);
  showUser(claims && typeof claims.sub === "string" ? claims.sub : "");
  $("signin-view").hidden = true;
  $("chat-view").hidden = false;
  $("threads-toggle").hidden = false;
  hideBanner();

  const client = new RunwireClient();
  state.client = client;
  client.addEventListener("state", (event) => {
    if (client === state.client) setBadge(event.detail.state, event.detail);
  });
  client.addEventListener("connected", (event) => {
    if (client !== state.client) return;
    showUser(event.detail.user_id);
    const limits = event.detail.limits;
    if (limits && limits.max_message_chars) $("message-input").maxLength = limits.max_message_chars;
    hideBanner();
  });
  client.addEventListener("resume_failed", (event) => {
    if (client === state.client) rebuild(event.detail.reason);
  });
  client.addEventListener("event", (event) => {
    if (client === state.client) onEvent(event.detail);
  });
  client.addEventListener("close", (event) => {
    if (client !== state.client || event.detail.reconnect) return;
    onFatalClose(event.detail.code, event.detail.reason);
  });
  client.addEventListener("token_expiring", (event) => {
    if (client !== state.client || state.renewable) return; // renewable: runwire.js refreshes
    const at = formatClock(event.detail.expires_at * 1000);
    showBanner(`Your session ends at ${at}. Sign in again with a new token to continue.`);
  });
  const sub = claims && typeof claims.sub === "string" ? claims.sub : "";
  client.connect(wsUrl(), tokenSource(sub)).catch(() => {}); // failures arrive as `close` events
  updateSend();

  openThread(threadFromHash(), { focus: true });
  loadEverything();
}

function onFatalClose(code, reason) {
  if (code === 4401) {
    signOut("Your session has expired or is not valid. Sign in again.");
  } else if (code === 4403) {
    showBanner("The gateway refused this connection (forbidden).");
  } else {
    const why = reason ? `: ${reason}` : "";
    showBanner(`Disconnected (${code}${why}).`, () => start(state.token));
  }
}

function showUser(userId) {
  state.userId = userId;
  setText($("user-name"), userId);
  setText($("user-avatar"), (userId || "?").slice(0, 1).toUpperCase());
  $("user-avatar").title = userId;
  $("who").hidden = false;
}

const BADGE_TEXT = {
  idle: "Offline",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  resumed: "Resumed",
  closed: "Disconnected",
};

function setBadge(connectionState, detail = {}) {
  const badge = $("connection-badge");
  badge.dataset.state = connectionState;
  setText(badge, BADGE_TEXT[connectionState] || connectionState);
  badge.title =
    connectionState === "reconnecting" && detail.code
      ? `Connection lost (${detail.code}); retrying`
      : connectionState === "resumed"
        ? "Reconnected; missed events were replayed"
        : "";
}

/** Adopt every run snapshot the gateway holds (sign-in, or a rebuild). */
async function loadEverything() {
  const generation = state.generation;
  let snapshots;
  try {
    snapshots = await loadAllRuns();
  } catch {
    return null;
  }
  if (generation !== state.generation || snapshots === null) return null;
  for (const snapshot of snapshots) adoptSnapshot(snapshot);
  renderThreads();
  renderThread();
  return snapshots;
}

/**
 * After `resume_failed` (events were lost): forget every run and rebuild from the
 * snapshots. If runs this tab showed are gone from the gateway too (a memory-engine
 * gateway restarted, say), say so, and leave a thread that no longer exists.
 */
async function rebuild(reason) {
  const before = new Set(state.runs.keys());
  state.runs.clear();
  state.loading.clear();
  renderThreads();
  renderThread();
  const snapshots = await loadEverything();
  if (snapshots === null) return;
  const kept = new Set(snapshots.map((snapshot) => snapshot.run_id));
  const lost = [...before].filter((runId) => !kept.has(runId)).length;
  if (lost === 0) return;
  const runs = `${lost} earlier ${lost === 1 ? "run" : "runs"}`;
  const why = reason === "epoch_changed" ? "The gateway restarted and lost its history" : "The gateway no longer holds some history";
  showBanner(`${why}: ${runs} of this list ${lost === 1 ? "is" : "are"} gone.`, hideBanner, "Dismiss");
  if (state.currentThread !== null && runsOfThread(state.currentThread).length === 0) selectThread(null);
}

// -- threads ------------------------------------------------------------------------

function threadFromHash() {
  const match = /^#thread=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

/** The thread list, from the runs this tab holds (the same model as the view). */
function threads() {
  return threadsOf(state.runs.values());
}

function renderTitle() {
  const thread = threads().find((t) => t.thread_id === state.currentThread);
  setText($("thread-title"), thread ? thread.title || "Untitled" : "New thread");
}

function threadRunning(threadId) {
  for (const run of state.runs.values()) {
    if (run.thread_id === threadId && run.status === "running") return true;
  }
  return false;
}

function renderThreads() {
  const list = $("thread-list");
  const all = threads();
  $("threads-empty").hidden = all.length > 0;
  const items = all.map((thread) => {
    const current = thread.thread_id === state.currentThread;
    const running = threadRunning(thread.thread_id);
    const runs = `${thread.runs} ${thread.runs === 1 ? "run" : "runs"}`;
    return h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: "thread",
          testid: "thread-item",
          "data-thread-id": thread.thread_id,
          "aria-current": current ? "page" : null,
          onclick: () => selectThread(thread.thread_id),
        },
        h("span", { class: "thread-name", text: thread.title || "Untitled" }),
        h(
          "span",
          { class: "thread-meta" },
          running ? h("span", { class: "live-dot", title: "A run is in progress", testid: "thread-live" }) : null,
          `${runs} · ${formatWhen(thread.last_ts)}`,
        ),
      ),
    );
  });
  const focused = document.activeElement && document.activeElement.dataset.threadId;
  list.replaceChildren(...items);
  if (focused) {
    const again = list.querySelector(`[data-thread-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  renderTitle();
}

function selectThread(threadId) {
  setThreadsOpen(false);
  if (threadId === state.currentThread) return;
  if (threadId === null) history.pushState(null, "", location.pathname);
  else location.hash = `thread=${encodeURIComponent(threadId)}`;
  openThread(threadId, { focus: true });
}

/** Show a thread from the model (loadEverything fills it at sign-in). */
function openThread(threadId, { focus = false } = {}) {
  state.currentThread = threadId;
  renderThreads();
  renderThread();
  if (focus) $("message-input").focus();
}

// -- the run model ------------------------------------------------------------------

function fromSnapshot(snapshot) {
  const now = Date.now();
  return newRun(snapshot.run_id, snapshot.thread_id, {
    ...snapshot,
    thinking: [...snapshot.thinking],
    // A snapshot does not say when a running call began: count from now.
    tools: snapshot.tools.map((call) => ({ ...call, started_at: now })),
  });
}

/** One event from the client (already deduplicated by stream offset). */
function onEvent(event) {
  if (event.ts) state.skewMs = Math.min(state.skewMs, Date.now() - event.ts);
  const run = state.runs.get(event.run_id);
  if (run !== undefined) {
    if (apply(run, event)) changed(run, event);
    return;
  }
  if (event.type === "agent_started") {
    const created = newRun(event.run_id, event.thread_id);
    state.runs.set(created.run_id, created);
    apply(created, event);
    renderThreads();
    changed(created, event);
    return;
  }
  // A run that started before this tab was listening: fetch its snapshot, keep its
  // events meanwhile, then apply those the snapshot does not already hold.
  const buffered = state.loading.get(event.run_id);
  if (buffered !== undefined) {
    buffered.push(event);
    return;
  }
  state.loading.set(event.run_id, [event]);
  fetchRun(event.run_id, event.thread_id);
}

async function fetchRun(runId, threadId) {
  let snapshot = null;
  try {
    snapshot = await loadRun(runId);
  } catch {
    snapshot = null;
  }
  if (snapshot !== null) {
    adoptSnapshot(snapshot);
  } else if (state.loading.has(runId)) {
    // Evicted from the server's snapshots: show what this tab saw.
    const run = newRun(runId, threadId, { input: "(earlier message)" });
    state.runs.set(runId, run);
    flushBuffered(run);
  }
  const run = state.runs.get(runId);
  if (run !== undefined) {
    renderThreads();
    changed(run, null);
  }
}

/** Take a snapshot unless this tab already holds the run at least as far. */
function adoptSnapshot(snapshot) {
  const known = state.runs.get(snapshot.run_id);
  if (known !== undefined && known.last_offset >= snapshot.last_offset) return;
  const run = fromSnapshot(snapshot);
  state.runs.set(run.run_id, run);
  flushBuffered(run);
  const view = state.views.get(run.run_id);
  if (view !== undefined) {
    const fresh = createRunView(run);
    view.root.replaceWith(fresh.root);
    state.views.set(run.run_id, fresh);
    syncRunView(fresh, run);
  }
}

function flushBuffered(run) {
  const buffered = state.loading.get(run.run_id);
  state.loading.delete(run.run_id);
  for (const event of buffered || []) apply(run, event);
}

/** Fold one event into its run (runstore.js); false if already applied. */
function apply(run, event) {
  return applyEvent(run, event, Number.isFinite(state.skewMs) ? state.skewMs : 0);
}

function changed(run, event) {
  const ended = event !== null && (event.type === "agent_completed" || event.type === "agent_error");
  if (ended) renderThreads();
  if (run.thread_id !== state.currentThread) return;
  if (ended) announce(run);
  if (event !== null && event.type === "agent_started") dropPlaceholder(run);
  let view = state.views.get(run.run_id);
  if (view === undefined) {
    view = createRunView(run);
    state.views.set(run.run_id, view);
    placeRunView(view, run);
  }
  const stick = nearBottom();
  syncRunView(view, run);
  $("empty-thread").hidden = true;
  if (stick) scrollToBottom();
}

// -- the conversation view ----------------------------------------------------------

function runsOfThread(threadId) {
  return [...state.runs.values()]
    .filter((run) => run.thread_id === threadId)
    .sort((a, b) => a.started_ts - b.started_ts || a.last_offset - b.last_offset);
}

function renderThread() {
  const container = $("runs");
  for (const view of state.views.values()) view.root.remove();
  state.views.clear();
  for (const element of container.querySelectorAll("[data-testid=pending-run]")) element.remove();
  renderTitle();
  const runs = runsOfThread(state.currentThread);
  for (const run of runs) {
    const view = createRunView(run);
    state.views.set(run.run_id, view);
    container.append(view.root);
    syncRunView(view, run);
  }
  const waiting = state.pending.filter((p) => !p.dropped && p.threadId === state.currentThread);
  for (const pending of waiting) container.append(pending.element);
  $("empty-thread").hidden = runs.length > 0 || waiting.length > 0;
  scrollToBottom();
  updateTicker();
}

function placeRunView(view, run) {
  const container = $("runs");
  // Runs are shown in start order; a new one goes before any not-yet-acknowledged message.
  const later = [...state.views.values()].find(
    (other) => other !== view && other.run.started_ts > run.started_ts && other.root.isConnected,
  );
  const firstPending = container.querySelector("[data-testid=pending-run]");
  container.insertBefore(view.root, later ? later.root : firstPending);
}

function createRunView(run) {
  const status = h("span", { class: "pill", testid: "run-status", role: "status" });
  const cancel = h("button", {
    type: "button",
    class: "button danger small",
    testid: "cancel-run",
    onclick: () => cancelRun(run.run_id, cancel),
  });
  cancel.textContent = "Cancel";
  const started = h("span", { class: "run-started", testid: "run-started" });
  const thinkingCount = h("span", { class: "count" });
  const thinkingList = h("ol", { class: "thinking-steps" });
  const thinking = h(
    "details",
    { class: "thinking", testid: "thinking" },
    h("summary", {}, h("span", { text: "Thinking" }), thinkingCount),
    thinkingList,
  );
  // Open while the run thinks, folded once it ends, unless the user toggled it.
  thinking.open = run.status === "running";
  thinking.dataset.auto = thinking.open ? "open" : "closed";
  thinking.addEventListener("toggle", () => {
    if ((thinking.open ? "open" : "closed") !== thinking.dataset.auto) thinking.dataset.auto = "user";
  });
  const tools = h("div", { class: "tools", testid: "tools" });
  const answer = h("div", { class: "answer", testid: "answer" });
  const error = h("p", { class: "run-error", testid: "run-error", role: "alert", hidden: true });
  const root = h(
    "article",
    { class: "run", testid: "run", "data-run-id": run.run_id, "aria-label": "Run" },
    h("div", { class: "bubble user", testid: "run-input" }),
    h(
      "div",
      { class: "agent" },
      h("div", { class: "run-head" }, h("span", { class: "agent-mark", "aria-hidden": "true" }), started, status, cancel),
      thinking,
      tools,
      answer,
      error,
    ),
  );
  return { run, root, status, cancel, started, thinking, thinkingCount, thinkingList, tools, answer, error, cards: new Map() };
}

const RUN_STATUS_TEXT = { running: "Running", completed: "Completed", cancelled: "Cancelled", error: "Failed" };

function syncRunView(view, run) {
  view.run = run;
  const root = view.root;
  setAttr(root, "data-status", run.status);
  setText(root.querySelector("[data-testid=run-input]"), run.input);
  setText(view.started, run.agent ? `${run.agent} started · ${formatClock(run.started_ts)}` : "starting…");
  setText(view.status, RUN_STATUS_TEXT[run.status] || run.status);
  setAttr(view.status, "data-status", run.status);
  const running = run.status === "running";
  view.cancel.hidden = !running;

  const steps = view.thinkingList;
  while (steps.children.length < run.thinking.length) {
    steps.append(h("li", { testid: "thinking-step", text: run.thinking[steps.children.length] }));
  }
  setText(view.thinkingCount, ` · ${run.thinking.length} ${run.thinking.length === 1 ? "step" : "steps"}`);
  view.thinking.hidden = run.thinking.length === 0;
  if (!running && view.thinking.dataset.auto === "open") {
    view.thinking.dataset.auto = "closed";
    view.thinking.open = false;
  }

  for (const call of run.tools) {
    let card = view.cards.get(call.call_id);
    if (card === undefined) {
      card = createToolCard(call);
      view.cards.set(call.call_id, card);
      view.tools.append(card.root);
    }
    syncToolCard(card, call);
  }

  const answer = run.answer || (run.status === "completed" && run.output ? run.output : "");
  setText(view.answer, answer);
  view.answer.hidden = answer === "" && !running;
  view.answer.classList.toggle("streaming", running);
  if (run.error) {
    setText(view.error, `${run.error.message} (${run.error.code})`);
    view.error.hidden = false;
  } else {
    view.error.hidden = true;
  }
  updateTicker();
}

function toolState(call) {
  if (call.status === "running") return "running";
  if (call.ok) return "completed";
  return call.error === "cancelled" ? "cancelled" : "failed";
}

const TOOL_STATUS_TEXT = { running: "running", completed: "done", failed: "failed", cancelled: "cancelled" };

function createToolCard(call) {
  const status = h("span", { class: "pill", testid: "tool-status" });
  const elapsed = h("span", { class: "tool-time", testid: "tool-elapsed", "aria-label": "elapsed time" });
  const duration = h("span", { class: "tool-time", testid: "tool-duration", "aria-label": "duration" });
  const args = h("code", { class: "tool-args", testid: "tool-args" });
  const result = h("pre", { class: "tool-result", testid: "tool-result" });
  const error = h("p", { class: "tool-error", testid: "tool-error" });
  const root = h(
    "div",
    { class: "tool", testid: "tool-card", "data-call-id": call.call_id },
    h(
      "div",
      { class: "tool-head" },
      h("span", { class: "tool-icon", "aria-hidden": "true" }),
      h("span", { class: "tool-name", testid: "tool-name", text: call.tool }),
      status,
      elapsed,
      duration,
    ),
    h("div", { class: "tool-row" }, h("span", { class: "label", text: "args" }), args),
    h("div", { class: "tool-row result-row" }, h("span", { class: "label", text: "result" }), result),
    h("div", { class: "tool-row error-row" }, h("span", { class: "label", text: "error" }), error),
  );
  return { root, status, elapsed, duration, args, result, error, call };
}

function syncToolCard(card, call) {
  card.call = call;
  const stateName = toolState(call);
  setAttr(card.root, "data-status", stateName);
  setText(card.status, TOOL_STATUS_TEXT[stateName]);
  setAttr(card.status, "data-status", stateName);
  setText(card.args, formatValue(call.args));
  card.elapsed.hidden = stateName !== "running";
  card.duration.hidden = stateName === "running";
  if (stateName === "running") setText(card.elapsed, formatMs(Math.max(0, Date.now() - call.started_at)));
  else setText(card.duration, formatMs(call.duration_ms));
  card.result.parentElement.hidden = stateName !== "completed";
  if (stateName === "completed") setText(card.result, formatValue(call.result));
  card.error.parentElement.hidden = stateName !== "failed";
  if (stateName === "failed") setText(card.error, call.error || "failed");
}

/** One timer for every running tool call's elapsed-time counter; stops when none runs. */
function updateTicker() {
  const running = [...state.views.values()].some((view) =>
    view.run.tools.some((call) => call.status === "running"),
  );
  if (running && state.ticker === null) {
    state.ticker = setInterval(() => {
      for (const view of state.views.values()) {
        for (const card of view.cards.values()) {
          if (card.call.status === "running") {
            setText(card.elapsed, formatMs(Math.max(0, Date.now() - card.call.started_at)));
          }
        }
      }
    }, TICK_MS);
  } else if (!running && state.ticker !== null) {
    clearInterval(state.ticker);
    state.ticker = null;
  }
}

function nearBottom() {
  const container = $("runs");
  return container.scrollHeight - container.scrollTop - container.clientHeight < 80;
}

function scrollToBottom() {
  const container = $("runs");
  container.scrollTop = container.scrollHeight;
}

async function cancelRun(runId, button) {
  button.disabled = true;
  button.textContent = "Cancelling…";
  try {
    await state.client.cancel(runId);
  } catch (error) {
    if (error.code !== "not_found") {
      // not_found: it finished meanwhile, which the run's own events will show.
      showComposerError(`Could not cancel: ${error.detail || error.message}`);
    }
    button.disabled = false;
    button.textContent = "Cancel";
  }
}

// -- sending ------------------------------------------------------------------------

function showComposerError(text) {
  setText($("composer-error"), text);
}

/** Hide the "Sending…" bubble of a message whose run just appeared (before its ack). */
function dropPlaceholder(run) {
  const pending = state.pending.find(
    (p) => !p.dropped && p.content === run.input && p.threadId === run.thread_id,
  );
  if (pending !== undefined) {
    pending.dropped = true;
    pending.element.remove();
  }
}

function newThreadId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `t_${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function sendMessage(event) {
  event.preventDefault();
  const input = $("message-input");
  const content = input.value.trim();
  if (!content || state.client === null) return;
  input.value = "";
  resizeComposer();
  updateSend();
  showComposerError("");
  // A new thread gets its id here, so its run shows live before the ack arrives.
  let threadId = state.currentThread;
  if (threadId === null) {
    threadId = newThreadId();
    history.pushState(null, "", `#thread=${encodeURIComponent(threadId)}`);
    state.currentThread = threadId;
    renderThreads();
  }
  const element = h(
    "article",
    { class: "run pending", testid: "pending-run" },
    h("div", { class: "bubble user", text: content }),
    h("p", { class: "muted sending", text: "Sending…" }),
  );
  const pending = { content, threadId, element, dropped: false };
  state.pending.push(pending);
  if (state.currentThread === threadId) {
    $("empty-thread").hidden = true;
    $("runs").append(element);
    scrollToBottom();
  }
  const client = state.client;
  try {
    const ack = await client.send(content, threadId);
    if (client !== state.client) return;
    removePending(pending);
    let run = state.runs.get(ack.run_id);
    if (run === undefined) {
      run = newRun(ack.run_id, ack.thread_id, { input: content, started_ts: Date.now() });
      state.runs.set(run.run_id, run);
      renderThreads();
    }
    changed(run, null);
  } catch (error) {
    if (client !== state.client) return;
    removePending(pending);
    if (input.value === "") input.value = content;
    resizeComposer();
    updateSend();
    showComposerError(`Not sent: ${error.detail || error.message}`);
    if (state.currentThread === threadId) {
      $("empty-thread").hidden = state.views.size > 0 || state.pending.some((p) => p.threadId === threadId);
    }
  }
}

function removePending(pending) {
  state.pending = state.pending.filter((p) => p !== pending);
  pending.element.remove();
}

/** Send is enabled only for a message with text in it, on a signed-in page. */
function updateSend() {
  $("send").disabled = $("message-input").value.trim() === "" || state.client === null;
}

/** Tell screen readers, politely, how a run of the open thread ended. */
function announce(run) {
  const answer = run.answer || run.output || "";
  const text =
    run.status === "error" && run.error
      ? `The agent failed: ${run.error.message}`
      : run.status === "cancelled"
        ? "The run was cancelled."
        : `The agent answered: ${answer}`;
  // Cleared first, so the same words twice are announced twice.
  const region = $("announcer");
  region.textContent = "";
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}

/** The thread list as a drawer (narrow screens): open or closed. */
function setThreadsOpen(open) {
  const toggle = $("threads-toggle");
  toggle.setAttribute("aria-expanded", open ? "true" : "false");
  document.body.classList.toggle("threads-open", open);
}

function resizeComposer() {
  const input = $("message-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

// -- wiring -------------------------------------------------------------------------

function init() {
  $("dev-signin").addEventListener("submit", devSignIn);
  $("token-signin").addEventListener("submit", tokenSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("new-thread").addEventListener("click", () => selectThread(null));
  $("composer").addEventListener("submit", sendMessage);
  const input = $("message-input");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    resizeComposer();
    updateSend();
  });
  $("threads-toggle").addEventListener("click", () =>
    setThreadsOpen($("threads-toggle").getAttribute("aria-expanded") !== "true"),
  );
  $("threads-scrim").addEventListener("click", () => setThreadsOpen(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("threads-open")) {
      setThreadsOpen(false);
      $("threads-toggle").focus();
    }
  });
  updateSend();
  window.addEventListener("popstate", () => {
    if (state.token !== null) openThread(threadFromHash());
  });
  window.addEventListener("hashchange", () => {
    const threadId = threadFromHash();
    if (state.token !== null && threadId !== state.currentThread) openThread(threadId);
  });

  const token = localStorage.getItem(TOKEN_KEY);
  const renewable = localStorage.getItem(TOKEN_SOURCE_KEY) === "dev";
  if (token && !tokenExpired(token)) start(token, { renewable });
  else showSignIn(token ? "Your session has expired. Sign in again." : "");
}

// A handle for debugging from the console (and for the browser tests).
window.runwireApp = { state };

init();
