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

/**
 * A fetch that records the `id:` of every SSE event (a block with data) it passes on,
 * in order, into `ids`: the body the client reads is unchanged. One AG-UI event or UI
 * message chunk is one block, so `ids[n - 1]` is the position of the n-th one.
 */
export function idRecordingFetch(ids, inner = globalThis.fetch) {
  return async (url, init) => {
    const response = await inner(url, init);
    if (!response.body) return response;
    const decoder = new TextDecoder();
    let buffer = "";
    const tap = new TransformStream({
      transform(chunk, out) {
        buffer += decoder.decode(chunk, { stream: true });
        const blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        for (const block of blocks) {
          const lines = block.split("\n");
          const id = lines.find((line) => line.startsWith("id: "));
          if (id && lines.some((line) => line.startsWith("data: ") && line !== "data: [DONE]")) {
            ids.push(id.slice(4));
          }
        }
        out.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(tap), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}
