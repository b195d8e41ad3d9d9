// Runs @ag-ui/client's HttpAgent, unmodified, and prints what it assembled.
//
// Options (JSON, argv[2]):
//   url        POST endpoint (e.g. http://127.0.0.1:8765/agui), or
//   sseFile    a file of SSE text served instead of a server (no network)
//   stream     {url, lastEventId?, prefixFile?}: read GET <url> instead of POSTing (the
//              resume route); HttpAgent's own pipeline, only requestInit() says GET.
//              prefixFile: a JSON file of the events an earlier, aborted run of the
//              client received; they go first, so the client's verifier and message
//              assembly judge the stitched stream (prefix + what the route sent)
//   recordIds  true: result.ids, the SSE id of each event received (in order)
//   token      bearer token (Authorization header)
//   threadId, runId, message   the run to ask for (message: the user's text)
//   abortAfterEvents           call agent.abortRun() once this many events arrived
// Result: {result, resolved, outcome, error, messages, events: [{type, ...}],
//          requests (with sseFile: what the client asked for)}
import { readFileSync } from "node:fs";
import { HttpAgent } from "@ag-ui/client";
import { concat, from } from "rxjs";
import { emit, errorOf, fileFetch, idRecordingFetch, options, requests } from "./common.mjs";

class StreamAgent extends HttpAgent {
  constructor(config, lastEventId, prefix) {
    super(config);
    this.lastEventId = lastEventId;
    this.prefix = prefix;
  }
  run(input) {
    const rest = super.run(input);
    return this.prefix ? concat(from(this.prefix), rest) : rest;
  }
  requestInit(input) {
    const init = super.requestInit(input);
    const headers = { ...init.headers };
    delete headers["Content-Type"];
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    return { method: "GET", headers, signal: init.signal };
  }
}

const opts = options();
const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
const config = {
  url: opts.stream?.url ?? opts.url ?? "http://runwire.invalid/agui",
  headers,
  threadId: opts.threadId ?? "t_harness",
  initialMessages: [{ id: `${opts.runId ?? "run"}.user`, role: "user", content: opts.message ?? "" }],
  ...(opts.sseFile ? { fetch: fileFetch(opts.sseFile) } : {}),
};
const ids = [];
if (opts.recordIds) config.fetch = idRecordingFetch(ids, config.fetch);
const prefix = opts.stream?.prefixFile ? JSON.parse(readFileSync(opts.stream.prefixFile)) : null;
const agent = opts.stream
  ? new StreamAgent(config, opts.stream.lastEventId, prefix)
  : new HttpAgent(config);
const events = [];
let outcome = null;
const subscriber = {
  onEvent({ event }) {
    events.push(event);
    if (opts.abortAfterEvents && events.length === opts.abortAfterEvents) agent.abortRun();
  },
  onRunFinishedEvent(params) {
    outcome = params.outcome ?? null;
  },
};
let run = null;
let error = null;
try {
  run = await agent.runAgent({ runId: opts.runId }, subscriber);
} catch (e) {
  error = e;
}
emit({
  resolved: run !== null,
  result: run?.result ?? null,
  outcome,
  error: errorOf(error),
  messages: agent.messages,
  events,
  ids,
  requests,
});
