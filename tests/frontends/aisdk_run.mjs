// Runs the ai package's DefaultChatTransport + readUIMessageStream, unmodified, and
// prints the assistant message it assembled.
//
// Options (JSON, argv[2]):
//   api        the chat endpoint (e.g. http://127.0.0.1:8765/api/chat), or
//   sseFile    a file of SSE text served instead of a server (no network)
//   token      bearer token (Authorization header)
//   chatId, messageId, message   the chat, the user message's id and text
//   trigger    "submit-message" (default) or "regenerate-message"; regenerateId: its messageId
//   reconnect  true: reconnectToStream() instead of sendMessages() (204 -> noStream)
//   abortAfterChunks   abort the request once this many chunks arrived
//   recordIds  true: result.ids, the SSE id of each chunk received (in order)
// Result: {message, chunks, errors, noStream, error, requests (with sseFile)}
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { emit, errorOf, fileFetch, idRecordingFetch, options, requests } from "./common.mjs";

const opts = options();
const ids = [];
const baseFetch = opts.sseFile ? fileFetch(opts.sseFile) : globalThis.fetch;
const transport = new DefaultChatTransport({
  api: opts.api ?? "http://runwire.invalid/api/chat",
  headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
  fetch: opts.recordIds ? idRecordingFetch(ids, baseFetch) : baseFetch,
});
const controller = new AbortController();
const chatId = opts.chatId ?? "t_harness";
const chunks = [];
const errors = [];
let message = null;
let noStream = false;
let error = null;
try {
  const stream = opts.reconnect
    ? await transport.reconnectToStream({ chatId, abortSignal: controller.signal })
    : await transport.sendMessages({
        chatId,
        trigger: opts.trigger ?? "submit-message",
        messageId: opts.regenerateId,
        abortSignal: controller.signal,
        messages: [
          {
            id: opts.messageId ?? "m_user",
            role: "user",
            parts: [{ type: "text", text: opts.message ?? "" }],
          },
        ],
      });
  if (stream === null) {
    noStream = true;
  } else {
    const counted = stream.pipeThrough(
      new TransformStream({
        transform(chunk, out) {
          chunks.push(chunk);
          out.enqueue(chunk);
          if (opts.abortAfterChunks && chunks.length === opts.abortAfterChunks) controller.abort();
        },
      }),
    );
    for await (const snapshot of readUIMessageStream({
      stream: counted,
      onError: (e) => errors.push(errorOf(e)),
    })) {
      message = snapshot;
    }
  }
} catch (e) {
  error = e;
}
emit({ message, chunks, errors, noStream, error: errorOf(error), ids, requests });
