// runwire.js: a browser client of runwire wire protocol v1.
//
// An ES module with no dependencies and no build step. It mirrors the Python client
// (runwire.client): it tracks the stream position (epoch + offset), drops any event
// it has already seen, and on an unexpected close reconnects with jittered
// exponential backoff and resumes race-free with `/ws?epoch=E&offset=N`. Given a
// token function, it keeps the socket's token fresh in-band (`refresh` frames) before
// `expires_at` and on `token_expiring`, without reconnecting.
//
//   import { RunwireClient } from "/assets/runwire.js";
//   const client = new RunwireClient();
//   client.addEventListener("agent_message_delta", (e) => out.append(e.detail.data.text));
//   await client.connect("wss://chat.example.com/ws", token);
//   const ack = await client.send("what is 17 * 23?");
//   const runs = await client.getRuns(ack.thread_id); // run snapshots, from any node
//
// See docs/browser.md for the full reference.

export const PROTOCOL = "runwire.v1";
export const BEARER_PREFIX = "bearer.";

/** The event types of protocol v1, in the order a run can emit them. */
export const EVENT_TYPES = Object.freeze([
  "agent_started",
  "agent_thinking",
  "tool_executing",
  "tool_completed",
  "agent_message_delta",
  "agent_completed",
  "agent_error",
]);

/** Terminal events: exactly one ends every run. */
export const TERMINAL_EVENT_TYPES = Object.freeze(["agent_completed", "agent_error"]);

/** Close codes after which reconnecting cannot help (sign in again, or fix the client). */
export const FATAL_CLOSE_CODES = Object.freeze([1000, 1002, 1003, 1007, 1008, 1009, 4400, 4401, 4403]);

/** Connection states, in the order they usually happen. */
export const STATES = Object.freeze(["idle", "connecting", "connected", "reconnecting", "resumed", "closed"]);

const CLOSE_SLOW_CONSUMER = 4409;
const CLOSE_RATE_LIMITED = 4429;
const CLOSE_UNAUTHORIZED = 4401;
/** The 4401 reason of a socket whose token ran out: a fresh token can reconnect it. */
export const TOKEN_EXPIRED_REASON = "token expired";
const MAX_TIMER_MS = 2 ** 31 - 1;
const REFRESH_RETRY_MS = 500;

/**
 * Milliseconds to wait before refreshing a token valid until `expiresAt` (Unix
 * seconds): `margin` ms before it, but never sooner than half the remaining
 * lifetime, so short-lived tokens are not refreshed in a loop. null once expired.
 */
export function refreshDelay(expiresAt, now, margin) {
  const remaining = expiresAt * 1000 - now;
  if (remaining <= 0) return null;
  return Math.min(MAX_TIMER_MS, Math.max(remaining - margin, remaining / 2));
}

const INTEGER_TEXT = /^-?\d+$/;

/** JSON.parse reviver: an integer beyond 2^53 becomes an exact BigInt, read from its
 * source text where the engine gives it (`context.source`; Chromium does), instead of
 * a rounded float. Everything else is what JSON.parse makes of it. */
function exactNumbers(key, value, context) {
  if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
  const source = context && context.source;
  return typeof source === "string" && INTEGER_TEXT.test(source) ? BigInt(source) : value;
}

/**
 * Parse JSON keeping every integer exact: those beyond Number.MAX_SAFE_INTEGER become
 * BigInts (where the engine supports JSON.parse source access; elsewhere they stay
 * rounded numbers). runwire.js parses every frame with it.
 */
export function parseJson(text) {
  return JSON.parse(text, exactNumbers);
}

/** JSON.stringify that writes BigInts (from parseJson) back as exact JSON numbers. */
export function stringifyJson(value, space) {
  return JSON.stringify(
    value,
    (key, item) => {
      if (typeof item !== "bigint") return item;
      return typeof JSON.rawJSON === "function" ? JSON.rawJSON(item.toString()) : item.toString();
    },
    space,
  );
}

/** The server refused a request (an `error` frame), or the connection ended first. */
export class RunwireError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "RunwireError";
    this.code = code;
    this.detail = message;
  }
}

/** The connection closed for good (4401 unauthorized, 4403, 4400, 1002, 1007, 1009, or close()). */
export class RunwireClosedError extends RunwireError {
  constructor(closeCode, reason) {
    super("closed", `connection closed (${closeCode}${reason ? ` ${reason}` : ""})`);
    this.name = "RunwireClosedError";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

function randomId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  }
  return Math.random().toString(16).slice(2) + Date.now().toString(16);
}

function withQuery(url, params) {
  const parsed = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  for (const [key, value] of Object.entries(params)) parsed.searchParams.set(key, String(value));
  return parsed.toString();
}

/**
 * One logical connection to a runwire gateway that survives network drops.
 *
 * Events (all `CustomEvent`s; read `event.detail`):
 * - `state`: `{state, previous, code, reason}` on every state change;
 * - `connected`: the `connected` frame of each (re)connection;
 * - `resumed` / `resume_failed`: the resume outcome of a reconnection (on
 *   `resume_failed` events were lost: rebuild your view, e.g. with `getRuns()`);
 * - `event`: every run event (the envelope), once, in offset order;
 * - one event per type (`agent_started`, `agent_thinking`, ...) with the envelope;
 * - `server_error`: an `error` frame that answers none of your requests;
 * - `token_expiring`: `{type, expires_at}`: the server warns that the token runs out
 *   (with a token function the client refreshes on its own);
 * - `refreshed`: `{type, id, expires_at}`: the token was replaced in-band;
 * - `refresh_failed`: `{error}`: the token function or the refresh failed (retried);
 * - `close`: `{code, reason, reconnect, delay}` whenever a socket closes;
 * - `engine_status`: `{type, state}`: the server's engine (Redis) is `unavailable` or
 *   `available` again;
 * - `engine_wait`: `{id, type}`: a request was refused with `engine_unavailable` and
 *   waits (up to `engineWait`) for the engine to be back, then is sent again.
 */
/** Requests sent again, with the same id, once a refused engine is back. */
const RETRY_ON_ENGINE = new Set(["user_message", "get_runs", "get_run"]);

export class RunwireClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {number} [options.baseDelay=500] first reconnect delay in ms (doubled per attempt)
   * @param {number} [options.maxDelay=10000] cap of the reconnect delay in ms
   * @param {number} [options.rateLimitedDelay=5000] least delay after 4429
   * @param {number} [options.requestTimeout=15000] default deadline of send/cancel/ping/getRuns/getRun in ms
   * @param {number} [options.engineWait=30000] how long send/getRuns/getRun answered `error`
   *   `engine_unavailable` wait for `engine_status` `available` before being sent again
   *   (the server promises that frame follows); then they reject with that error
   * @param {boolean} [options.reconnect=true] reconnect after unexpected closes
   * @param {number} [options.refreshMargin=30000] with a token function, refresh this many
   *   ms before `expires_at` (or after half the remaining lifetime, if later)
   * @param {{epoch: string, offset: number}} [options.resume] start from this position
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket implementation (tests, Node)
   */
  constructor(options = {}) {
    super();
    this.options = {
      baseDelay: 500,
      maxDelay: 10_000,
      rateLimitedDelay: 5_000,
      requestTimeout: 15_000,
      engineWait: 30_000,
      reconnect: true,
      refreshMargin: 30_000,
      ...options,
    };
    this.url = null;
    this.state = "idle";
    /** The last `connected` frame (user_id, connection_id, limits...). */
    this.session = null;
    this.epoch = options.resume ? options.resume.epoch : null;
    this.offset = options.resume ? options.resume.offset : null;
    this.duplicatesDropped = 0;
    this.attempt = 0;
    this.closeCode = null;
    this.closeReason = "";
    /** The current token's `exp` (Unix seconds), from `connected` and `refreshed`. */
    this.expiresAt = null;
    this._token = null;
    this._refreshTimer = null;
    this._refreshing = null;
    this._refreshStuck = false;
    this._socket = null;
    this._timer = null;
    this._pending = new Map(); // request id -> {frame, resolve, reject, timer, sent}
    this._resuming = false;
    this._stopped = false;
    this._ready = null;
    this._onOnline = () => {
      if (this.state === "reconnecting" && this._timer !== null) this._reconnectNow();
    };
  }

  /** The stream position to resume from, or null before the first `connected`. */
  get position() {
    return this.epoch === null ? null : { epoch: this.epoch, offset: this.offset };
  }

  /** The user id the server verified from the token (after `connected`). */
  get userId() {
    return this.session ? this.session.user_id : null;
  }

  /**
   * Open the connection. Resolves with the first `connected` frame; rejects with
   * RunwireClosedError if the server refuses for good (4401: bad or expired token).
   * Unexpected closes afterwards reconnect and resume on their own.
   *
   * @param {string} url the `ws://` or `wss://` endpoint, e.g. `wss://host/ws`
   * @param {string | (() => string | Promise<string>)} token the JWT, or a function
   *   returning a fresh one (called before every connection attempt, and to refresh
   *   the open socket's token before it runs out)
   */
  connect(url, token) {
    if (this._socket !== null || this._timer !== null) throw new Error("already connected");
    this.url = url;
    this._token = token;
    this._stopped = false;
    this.attempt = 0;
    this._ready = {};
    const ready = new Promise((resolve, reject) => {
      this._ready.resolve = resolve;
      this._ready.reject = reject;
    });
    if (globalThis.addEventListener) globalThis.addEventListener("online", this._onOnline);
    this._open("connecting");
    return ready;
  }

  /** Close for good (code 1000); pending requests reject. Idempotent. */
  close() {
    this._stopped = true;
    this._cancelRefresh();
    if (globalThis.removeEventListener) globalThis.removeEventListener("online", this._onOnline);
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    const socket = this._socket;
    this._socket = null;
    if (socket !== null) {
      this._detach(socket);
      if (socket.readyState <= 1) socket.close(1000, "client closed");
    }
    this._finish(1000, "client closed");
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, listener) {
    const handler = (event) => listener(event.detail, event);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /**
   * Start a run. Resolves with the `ack` ({id, run_id, thread_id}). Waits for the
   * connection if it is down; after a reconnection the same message id is sent
   * again, and the server's idempotency makes that start the run only once.
   *
   * @param {string} content the user's message
   * @param {string} [threadId] continue this thread (a new one is created if omitted)
   * @param {{id?: string, timeout?: number}} [options]
   */
  send(content, threadId, options = {}) {
    const id = options.id || randomId();
    const frame = { type: "user_message", id, content };
    if (threadId) frame.thread_id = threadId;
    return this._request(frame, id, options.timeout);
  }

  /**
   * Cancel one of your runs. Resolves once the server accepted it; rejects with
   * RunwireError `not_found` if the run is not active (finished, or not yours).
   */
  async cancel(runId, options = {}) {
    const id = options.id || randomId();
    const cancelled = this._request({ type: "cancel", run_id: runId, id }, id, options.timeout);
    // The server answers `cancel` only on failure: a ping sent right after it is
    // answered after the cancel was handled, so its pong means success.
    const probe = this._request({ type: "ping", id: `${id}.done` }, `${id}.done`, options.timeout);
    cancelled.catch(() => {}); // observed below; avoid an unhandled rejection meanwhile
    try {
      await probe;
      this._settle(id, "resolve", undefined);
    } catch (error) {
      this._settle(id, "reject", error);
    }
    return cancelled;
  }

  /** Round trip a `ping`; resolves with the round-trip time in ms. */
  async ping(options = {}) {
    const id = options.id || randomId();
    const started = performance.now();
    await this._request({ type: "ping", id }, id, options.timeout);
    return performance.now() - started;
  }

  /**
   * The user's run snapshots (of one thread, if given), oldest first, as the server
   * holds them: a `get_runs` frame, answered by `runs`. Unlike `GET /api/runs`, any
   * node of a multi-node deployment answers it for any user. Resolves with the list
   * of RunSnapshot objects; rejects with RunwireError (`engine_unavailable`,
   * `invalid_message`, `timeout`) or RunwireClosedError. Like `send`, it waits for
   * the connection if it is down.
   *
   * @param {string} [threadId] only the runs of this thread
   * @param {{id?: string, timeout?: number}} [options]
   */
  async getRuns(threadId, options = {}) {
    return (await this.getRunsPage(threadId, options)).runs;
  }

  /**
   * One page of run snapshots, as `getRuns`, with paging: resolves with
   * `{runs, more}`; while `more` is true, older runs exist: ask again with `before` =
   * the first run's `run_id`.
   *
   * @param {string} [threadId] only the runs of this thread
   * @param {{id?: string, timeout?: number, before?: string, limit?: number}} [options]
   */
  async getRunsPage(threadId, options = {}) {
    const id = options.id || randomId();
    const frame = { type: "get_runs", id };
    if (threadId) frame.thread_id = threadId;
    if (options.before) frame.before = options.before;
    if (options.limit) frame.limit = options.limit;
    const reply = await this._request(frame, id, options.timeout);
    return { runs: reply.runs, more: reply.more === true };
  }

  /**
   * One of the user's run snapshots (a `get_run` frame, answered by `runs`), or
   * null if the server holds none (unknown, evicted, or another user's run).
   * Rejects as `getRuns` does.
   *
   * @param {string} runId
   * @param {{id?: string, timeout?: number}} [options]
   */
  async getRun(runId, options = {}) {
    const id = options.id || randomId();
    const reply = await this._request({ type: "get_run", id, run_id: runId }, id, options.timeout);
    return reply.runs.length ? reply.runs[0] : null;
  }

  /**
   * Replace the open socket's token in-band (a `refresh` frame, answered by
   * `refreshed`). Without `token`, the token function given to `connect` is asked.
   * Resolves with the `refreshed` frame; a token the server refuses (another user,
   * forged, expired) closes the socket with 4401. Rejects with RunwireError
   * (`no_token`, `timeout`, `reconnected` if the socket was replaced meanwhile) or
   * RunwireClosedError.
   *
   * @param {string} [token]
   * @param {{id?: string, timeout?: number}} [options]
   */
  async refresh(token, options = {}) {
    let value = token;
    if (value === undefined && typeof this._token === "function") value = await this._token();
    if (typeof value !== "string" || value === "") {
      throw new RunwireError("no_token", "refresh() needs a token or a token function");
    }
    const id = options.id || randomId();
    // Never logged or kept: the frame leaves the pending map with its reply.
    const reply = await this._request({ type: "refresh", token: value, id }, id, options.timeout);
    this.expiresAt = reply.expires_at;
    this._emit("refreshed", reply);
    this._scheduleRefresh();
    return reply;
  }

  // -- internals ------------------------------------------------------------------

  _setState(state, extra = {}) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async _open(state) {
    this._setState(state);
    let token;
    try {
      token = typeof this._token === "function" ? await this._token() : this._token;
    } catch (error) {
      this._scheduleReconnect(1006, `token provider failed: ${error}`);
      return;
    }
    if (this._stopped) return;
    const resume = this.position;
    this._resuming = resume !== null;
    const url = resume ? withQuery(this.url, resume) : this.url;
    const Impl = this.options.WebSocket || globalThis.WebSocket;
    let socket;
    try {
      socket = new Impl(url, [PROTOCOL, BEARER_PREFIX + token]);
    } catch (error) {
      // A malformed URL or a token that is not a valid subprotocol: retrying cannot help.
      this._stopped = true;
      this._emit("close", { code: 1006, reason: String(error), reconnect: false, delay: null });
      this._finish(1006, String(error));
      return;
    }
    this._socket = socket;
    socket.onmessage = (message) => this._receive(message.data);
    socket.onclose = (event) => this._closed(socket, event.code, event.reason);
    socket.onerror = () => {}; // a close event always follows
  }

  _detach(socket) {
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
  }

  _receive(data) {
    let frame;
    try {
      frame = parseJson(data);
    } catch {
      return;
    }
    const type = frame.type;
    if (type === "ack" || type === "pong" || type === "runs" || type === "refreshed") {
      this._settle(frame.id, "resolve", frame);
    } else if (type === "error" && frame.ref && this._pending.has(frame.ref)) {
      const error = new RunwireError(frame.code, frame.message);
      if (frame.code === "engine_unavailable" && RETRY_ON_ENGINE.has(this._pending.get(frame.ref).frame.type)) {
        this._awaitEngine(frame.ref, error);
      } else {
        this._settle(frame.ref, "reject", error);
      }
    } else if (type === "engine_status") {
      if (frame.state === "available") this._engineBack();
      this._emit("engine_status", frame);
    } else if (type === "connected") {
      this._connected(frame);
    } else if (type === "resumed") {
      this._resuming = false;
      this._setState("resumed");
      this._emit("resumed", frame);
    } else if (type === "resume_failed") {
      this._resuming = false;
      this.epoch = frame.epoch;
      this.offset = frame.offset;
      this._setState("connected");
      this._emit("resume_failed", frame);
    } else if (typeof frame.offset === "number" && typeof frame.run_id === "string") {
      if (!this._advance(frame)) return;
      this._emit("event", frame);
      this._emit(type, frame);
    } else if (type === "token_expiring") {
      this._emit("token_expiring", frame);
      // About the current token (a late warning about a replaced one is ignored).
      if (this.expiresAt === null || frame.expires_at >= this.expiresAt) this._refreshNow();
    } else if (type === "error") {
      this._emit("server_error", frame);
    }
  }

  /** With a token function: refresh now, once at a time; failures retry later. */
  _refreshNow() {
    if (typeof this._token !== "function" || this._refreshing !== null || this.session === null) return;
    this._cancelRefresh();
    const before = this.expiresAt;
    const session = this.session;
    let retry = 0;
    this._refreshing = this.refresh()
      .then((reply) => {
        // A token function that cannot give a later `exp` is asked again only on a
        // server warning, never on a timer (which would fire faster and faster).
        this._refreshStuck = before !== null && reply.expires_at <= before;
      })
      .catch((error) => {
        if (this.session === session) this._emit("refresh_failed", { error });
        retry = REFRESH_RETRY_MS;
      })
      .finally(() => {
        this._refreshing = null;
        if (this.session === session) this._scheduleRefresh(retry);
      });
  }

  _scheduleRefresh(atLeast = 0) {
    this._cancelRefresh();
    if (typeof this._token !== "function" || this.expiresAt === null) return;
    if (this._refreshStuck || this.session === null || this._stopped) return;
    const delay = refreshDelay(this.expiresAt, Date.now(), this.options.refreshMargin);
    if (delay === null) return; // run out: the server closes the socket
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this._refreshNow();
    }, Math.max(delay, atLeast));
  }

  _cancelRefresh() {
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  _connected(frame) {
    this.session = frame;
    this.closeCode = null;
    this.closeReason = "";
    this.attempt = 0;
    if (this.epoch === null) {
      this.epoch = frame.epoch;
      this.offset = frame.offset;
    }
    this.expiresAt = typeof frame.expires_at === "number" ? frame.expires_at : null;
    this._refreshStuck = false;
    // The server buffers frames sent before `connected` is out, and answers them
    // after the replay: requests still waiting are (re)sent now, in order. A refresh
    // of the previous socket is not: this one was opened with a fresh token.
    for (const [key, pending] of [...this._pending.entries()]) {
      if (pending.frame.type === "refresh") {
        this._settle(key, "reject", new RunwireError("reconnected", "the socket was replaced"));
      } else {
        this._write(pending.frame);
      }
    }
    this._scheduleRefresh();
    if (!this._resuming) this._setState("connected");
    this._emit("connected", frame);
    if (this._ready !== null) {
      this._ready.resolve(frame);
      this._ready = null;
    }
  }

  /** Record an event's offset; false for one already seen (it is dropped). */
  _advance(event) {
    if (this.offset !== null && event.offset <= this.offset) {
      this.duplicatesDropped += 1;
      return false;
    }
    if (this.epoch === null && this.session) this.epoch = this.session.epoch;
    this.offset = event.offset;
    return true;
  }

  _write(frame) {
    const socket = this._socket;
    if (socket !== null && socket.readyState === 1 && this.session !== null) {
      socket.send(JSON.stringify(frame));
    }
  }

  _request(frame, key, timeout) {
    if (this._stopped && this.state === "closed") {
      return Promise.reject(new RunwireClosedError(this.closeCode ?? 1000, this.closeReason));
    }
    return new Promise((resolve, reject) => {
      const deadline = timeout ?? this.options.requestTimeout;
      const timer = setTimeout(() => {
        this._settle(key, "reject", new RunwireError("timeout", `no reply within ${deadline} ms`));
      }, deadline);
      this._pending.set(key, { frame, resolve, reject, timer, timeout: deadline, engineWait: false });
      if (this.state === "connected" || this.state === "resumed" || this._resuming) {
        this._write(frame);
      }
    });
  }

  /** Keep a request the engine refused until `engine_status` `available` (or engineWait). */
  _awaitEngine(key, error) {
    const pending = this._pending.get(key);
    clearTimeout(pending.timer);
    pending.engineWait = true;
    pending.timer = setTimeout(() => this._settle(key, "reject", error), this.options.engineWait);
    this._emit("engine_wait", { id: key, type: pending.frame.type });
  }

  /** The engine is back: send again, with the same id, what waited for it. */
  _engineBack() {
    for (const [key, pending] of this._pending.entries()) {
      if (!pending.engineWait) continue;
      pending.engineWait = false;
      clearTimeout(pending.timer);
      const deadline = pending.timeout;
      pending.timer = setTimeout(() => {
        this._settle(key, "reject", new RunwireError("timeout", `no reply within ${deadline} ms`));
      }, deadline);
      this._write(pending.frame);
    }
  }

  _settle(key, how, value) {
    const pending = this._pending.get(key);
    if (pending === undefined) return;
    this._pending.delete(key);
    clearTimeout(pending.timer);
    pending[how](value);
  }

  _closed(socket, code, reason) {
    if (socket !== this._socket) return;
    this._detach(socket);
    this._socket = null;
    this.session = null;
    this._cancelRefresh();
    this._resuming = false;
    this.closeCode = code;
    this.closeReason = reason || "";
    if (this._stopped) return;
    // A socket whose token ran out reconnects if a token function can give a new one.
    const renewable =
      code === CLOSE_UNAUTHORIZED && reason === TOKEN_EXPIRED_REASON && typeof this._token === "function";
    const fatal = (FATAL_CLOSE_CODES.includes(code) && !renewable) || !this.options.reconnect;
    if (fatal) {
      this._emit("close", { code, reason, reconnect: false, delay: null });
      this._stopped = true;
      this._finish(code, reason);
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _delay(code) {
    const { baseDelay, maxDelay, rateLimitedDelay } = this.options;
    if (code === CLOSE_SLOW_CONSUMER && this.attempt === 0) return Math.random() * 100;
    const ceiling = Math.min(maxDelay, baseDelay * 2 ** this.attempt);
    // "Equal jitter": half fixed, half random, so a fleet of tabs spreads out.
    let delay = ceiling / 2 + Math.random() * (ceiling / 2);
    if (code === CLOSE_RATE_LIMITED) delay = Math.max(delay, rateLimitedDelay * (0.8 + Math.random() * 0.4));
    return delay;
  }

  _scheduleReconnect(code, reason) {
    const delay = this._delay(code);
    this.attempt += 1;
    this._emit("close", { code, reason, reconnect: true, delay });
    this._setState("reconnecting", { code, reason, delay });
    this._timer = setTimeout(() => this._reconnectNow(), delay);
  }

  _reconnectNow() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    if (!this._stopped) this._open("reconnecting");
  }

  _finish(code, reason) {
    const error = new RunwireClosedError(code, reason);
    for (const key of [...this._pending.keys()]) this._settle(key, "reject", error);
    if (this._ready !== null) {
      this._ready.reject(error);
      this._ready = null;
    }
    if (globalThis.removeEventListener) globalThis.removeEventListener("online", this._onOnline);
    this._setState("closed", { code, reason });
  }
}
