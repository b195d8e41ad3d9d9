// The run model of a page: one run folded from its events, exactly as the server's
// RunStore (src/runwire/runs.py) folds its run snapshots. Pure: no DOM, no clock.
// The suite runs it under Node against the same golden event sequences as the
// Python store (tests/golden/runs.json), so the two cannot drift apart.

/** A run with nothing applied yet (`fields` override the defaults, e.g. a snapshot). */
export function newRun(runId, threadId, fields = {}) {
  return {
    run_id: runId,
    thread_id: threadId,
    agent: "",
    input: "",
    status: "running",
    thinking: [],
    tools: [],
    answer: "",
    output: null,
    error: null,
    started_ts: 0,
    ended_ts: null,
    last_offset: 0,
    ...fields,
  };
}

/**
 * Fold one event into its run; false (and nothing changed) if the run already holds it.
 * @param {number} clockOffsetMs browser clock minus server clock, for `started_at`
 *   (when a running tool call began, in this browser's clock)
 */
export function applyEvent(run, event, clockOffsetMs = 0) {
  if (event.offset <= run.last_offset) return false;
  run.last_offset = event.offset;
  const data = event.data;
  switch (event.type) {
    case "agent_started":
      run.agent = data.agent;
      run.input = data.input;
      run.started_ts = event.ts;
      break;
    case "agent_thinking":
      run.thinking.push(data.text);
      break;
    case "tool_executing":
      run.tools.push({
        call_id: data.call_id,
        tool: data.tool,
        args: data.args,
        status: "running",
        ok: null,
        result: null,
        error: null,
        duration_ms: null,
        started_ts: event.ts,
        started_at: event.ts + clockOffsetMs,
      });
      break;
    case "tool_completed":
      for (const call of run.tools) {
        if (call.call_id !== data.call_id) continue;
        call.status = data.ok ? "completed" : "failed";
        call.ok = data.ok;
        call.result = data.result ?? null;
        call.error = data.error ?? null;
        call.duration_ms = data.duration_ms;
      }
      break;
    case "agent_message_delta":
      run.answer += data.text;
      break;
    case "agent_completed":
      run.status = data.status;
      run.output = data.output;
      run.ended_ts = event.ts;
      break;
    case "agent_error":
      run.status = "error";
      run.error = { code: data.code, message: data.message };
      run.ended_ts = event.ts;
      break;
    default:
      break;
  }
  return true;
}

/**
 * The thread list of a set of runs, as the server's RunStore.threads() gives it: one
 * entry per thread with its title (the oldest run's input, 80 characters), how many
 * runs it holds and when the newest started; most recent first. The page draws its
 * thread list from this, over the same runs it shows, so counts and view never differ.
 */
export function threadsOf(runs) {
  const ordered = [...runs].sort((a, b) => a.started_ts - b.started_ts || a.last_offset - b.last_offset);
  const threads = new Map();
  for (const run of ordered) {
    const known = threads.get(run.thread_id);
    if (known === undefined) {
      threads.set(run.thread_id, {
        thread_id: run.thread_id,
        title: run.input.slice(0, 80),
        runs: 1,
        last_ts: run.started_ts,
      });
    } else {
      known.runs += 1;
      known.last_ts = Math.max(known.last_ts, run.started_ts);
    }
  }
  return [...threads.values()].sort((a, b) => b.last_ts - a.last_ts);
}
