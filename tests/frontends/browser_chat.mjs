// The page of the browser test: the ai package's DefaultChatTransport, unmodified,
// bundled by esbuild (tests/frontends/node.py bundle()). The page asks for the gateway's
// token and chat id in its URL (#token=...&chat=...), sends the message typed in, and
// shows the assembled assistant message: its reasoning, tool and answer text.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const params = new URLSearchParams(location.hash.slice(1));
const transport = new DefaultChatTransport({
  api: new URL("api/chat", location.href.replace(/[^/]*$/, "../")).href,
  headers: { Authorization: `Bearer ${params.get("token")}` },
});

const form = document.querySelector("form");
const show = (id, text) => (document.getElementById(id).textContent = text);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = form.elements.message.value;
  show("status", "streaming");
  const stream = await transport.sendMessages({
    chatId: params.get("chat"),
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
    messages: [{ id: crypto.randomUUID(), role: "user", parts: [{ type: "text", text }] }],
  });
  let message = null;
  for await (const snapshot of readUIMessageStream({ stream })) message = snapshot;
  const parts = message.parts;
  show("reasoning", parts.filter((p) => p.type === "reasoning").map((p) => p.text).join(" "));
  show("tool", parts.filter((p) => p.type === "dynamic-tool").map((p) => `${p.toolName}: ${p.state}`).join(" "));
  show("answer", parts.filter((p) => p.type === "text").map((p) => p.text).join(""));
  show("status", "done");
});
