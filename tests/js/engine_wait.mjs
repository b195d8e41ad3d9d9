// runwire.js waits for the engine: a message refused with `engine_unavailable` is sent
// again once `engine_status` `available` comes. Prints one line per step on stdout.
// Usage: node --experimental-websocket engine_wait.mjs <ws url> <token> <runwire.js path>
const [url, token, library] = process.argv.slice(2);
const { RunwireClient } = await import(library);

const say = (line) => process.stdout.write(`${line}\n`);
const client = new RunwireClient({ requestTimeout: 20_000, engineWait: 20_000 });
client.on("engine_status", (frame) => say(`engine ${frame.state}`));
client.on("engine_wait", (detail) => say(`waiting ${detail.type}`));
const completed = new Promise((resolve) => client.on("agent_completed", resolve));
await client.connect(url, token);
say("connected");
await new Promise((resolve) => client.on("engine_status", (f) => f.state === "unavailable" && resolve()));
try {
  const ack = await client.send("while the engine is down", undefined, { id: "m-engine" });
  say(`ack ${ack.id}`);
  const done = await completed;
  say(`completed ${done.run_id === ack.run_id}`);
} catch (error) {
  say(`rejected ${error.code}`);
}
client.close();
