// Folds every golden event sequence with the page's run model (runstore.js) and
// prints the resulting runs as JSON, for tests/test_golden_runs.py to compare.
// Also prints runwire.js's protocol constants, checked against Python's.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [webDir, goldenPath] = process.argv.slice(2);
const { applyEvent, newRun } = await import(pathToFileURL(`${webDir}/runstore.js`).href);
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
process.stdout.write(JSON.stringify({ runs, constants }));
