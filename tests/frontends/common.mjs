// Shared by the harness scripts: options in, one JSON result out, and a fetch that
// serves a recorded SSE body (the Python translators' output) to an official client.
import { readFileSync } from "node:fs";

/** The options: one JSON object, as argv[2] or in $HARNESS_OPTIONS. */
export function options() {
  const text = process.argv[2] ?? process.env.HARNESS_OPTIONS;
  if (!text) throw new Error("usage: node <script> '<options as JSON>'");
  return JSON.parse(text);
}

/** Print the one result line (the Python helper parses the last stdout line). */
export function emit(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

/** The requests a fileFetch answered: {url, method, headers, body}. */
export const requests = [];

/** A fetch answering every request with the SSE text of `file`, as a server would. */
export function fileFetch(file, headers = {}) {
  const body = readFileSync(file);
  return async (url, init) => {
    requests.push({
      url: String(url),
      method: init?.method ?? "GET",
      headers: Object.fromEntries(new Headers(init?.headers ?? {})),
      body: init?.body ?? null,
    });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "text/event-stream", ...headers },
    });
  };
}

/** The error as JSON-able data. */
export function errorOf(error) {
  if (error == null) return null;
  return { name: error.name ?? "Error", message: String(error.message ?? error) };
}
