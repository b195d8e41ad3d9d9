// Folds every golden event sequence with the page's run model (runstore.js) and
// prints the resulting runs as JSON, for tests/test_golden_runs.py to compare.
// Also prints the thread list of all those runs (threadsOf) and runwire.js's protocol constants, checked against Python's.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [webDir, goldenPath] = process.argv.slice(2);
const { applyEvent, newRun, threadsOf } = await import(pathToFileURL(`${webDir}/runstore.js`).href);
const client = await import(pathToFileURL(`${webDir}/runwire.js`).href);

const golden = JSON.parse(readFileSync(goldenPath, "utf8"));
const runs = golden.cases.map((testCase) => {
  const first = testCase.events[0];
  const run = newRun(first.run_id, first.thread_id);
  for (const event of testCase.events) applyEvent(run, event, 0);
  return run;
});
const constants = {
  PROTOCOL: client.PROTOCOL,
  BEARER_PREFIX: client.BEARER_PREFIX,
  EVENT_TYPES: client.EVENT_TYPES,
  TERMINAL_EVENT_TYPES: client.TERMINAL_EVENT_TYPES,
  FATAL_CLOSE_CODES: client.FATAL_CLOSE_CODES,
  TOKEN_EXPIRED_REASON: client.TOKEN_EXPIRED_REASON,
};
// For the thread list: each case as a run of its own, in one of two threads, each
// later than the one before (tests/test_golden_runs.py shifts them the same way).
const spread = golden.cases.map((testCase, index) => {
  const shift = (event) => ({
    ...event,
    run_id: `${event.run_id}_${index}`,
    thread_id: `${event.thread_id}_${index % 2}`,
    offset: event.offset + index * 1000,
    ts: event.ts + index * 10_000,
  });
  const first = shift(testCase.events[0]);
  const run = newRun(first.run_id, first.thread_id);
  for (const event of testCase.events) applyEvent(run, shift(event), 0);
  return run;
});
process.stdout.write(JSON.stringify({ runs, threads: threadsOf(spread), constants }));
