"""The AI SDK UI message stream: a run's events as the chunks ``useChat`` reads, and
``DefaultChatTransport``'s request body.

Chunks are the ``ai`` package's ``uiMessageChunkSchema`` (checked against ``ai`` 7.0),
one JSON object per SSE ``data:`` block, the stream closed by ``data: [DONE]``. Answer
with :data:`HEADERS`. One run is one assistant message, id ``<run_id>.assistant``;
part ids derive from the run id and ``seq``, so a replay (the transport's
``resumeStreamIsReplay``) rebuilds the very same message.

===================  ==========================================================
runwire              UI message chunks
===================  ==========================================================
``agent_started``    ``start`` (``messageId``; ``messageMetadata.runwire``: ``runId``,
                     ``threadId``, ``agent``), ``start-step``
``agent_thinking``   ``reasoning-start``, ``reasoning-delta``, ``reasoning-end``
``tool_executing``   ``tool-input-available`` (``dynamic``: runwire's tools are not
                     the page's; parts of type ``dynamic-tool``)
``tool_completed``   ``tool-output-available`` (``output`` the result) or
                     ``tool-output-error`` (``errorText``)
deltas               ``text-start`` (when no text part is open), ``text-delta``; any
                     other event ends the open text part (``text-end``), so parts keep
                     the order things happened in
``agent_completed``  ``text-end`` (or ``output`` as one text part when no delta came),
                     ``finish-step``, then ``finish`` (``finishReason`` ``stop``); a
                     cancelled run: ``abort`` (``reason`` ``cancelled``) and ``finish``
                     (``finishReason`` ``other``)
``agent_error``      ``text-end`` if open, ``finish-step``, ``error`` (``errorText`` the
                     message), ``finish`` (``finishReason`` ``error``)
===================  ==========================================================

``finish`` carries ``messageMetadata.runwire.status`` (``completed``, ``cancelled`` or
``error``, with ``code`` for an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from runwire.events import (
    AgentCompleted,
    AgentError,
    AgentMessageDelta,
    AgentStarted,
    AgentThinking,
    ClientId,
    Event,
    ToolCompleted,
    ToolExecuting,
    WireId,
)
from runwire.frontends.base import InvalidRequest, RunTranslator, derived_id
from runwire.frontends.sse import EventId, data_block
from runwire.ids import Epoch

__all__ = [
    "DONE",
    "HEADERS",
    "Chunk",
    "ChatRequest",
    "UiMessageTranslator",
    "message_id",
    "parse_chat_request",
]

Chunk = dict[str, Any]
"""One UI message chunk (a JSON object with ``type``)."""

HEADERS: Final = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
}
"""The response headers of a UI message stream (as the ``ai`` package sends them)."""

DONE: Final = data_block("[DONE]")
"""The block that ends a UI message stream."""

_json = msgspec.json.Encoder()


def message_id(run_id: str) -> str:
    """The id of the assistant message of run ``run_id``."""
    return f"{run_id}.assistant"


class UiMessageTranslator(RunTranslator[Chunk]):
    """One run as UI message chunks (see the module for the mapping and
    :class:`~runwire.frontends.base.RunTranslator` for the feeding contract); the
    terminal event's last frame is followed by :data:`DONE`."""

    def __init__(self, epoch: Epoch, *, after: EventId | None = None) -> None:
        super().__init__(epoch, after=after)
        self._text_id: str | None = None
        self._texted = False

    def _open(self, event: Event) -> list[Chunk]:
        data = event.data
        runwire: dict[str, Any] = {"runId": event.run_id, "threadId": event.thread_id}
        if isinstance(data, AgentStarted):
            runwire["agent"] = data.agent
        else:
            runwire["partial"] = True  # the run's start is not in what was fed
        return [
            {
                "type": "start",
                "messageId": message_id(event.run_id),
                "messageMetadata": {"runwire": runwire},
            },
            {"type": "start-step"},
        ]

    def _translate(self, event: Event) -> list[Chunk]:
        data = event.data
        if isinstance(data, AgentMessageDelta):
            chunks: list[Chunk] = []
            if not data.text:
                return chunks
            if self._text_id is None:
                self._text_id = derived_id(event.run_id, event.seq, "text")
                self._texted = True
                chunks.append({"type": "text-start", "id": self._text_id})
            chunks.append({"type": "text-delta", "id": self._text_id, "delta": data.text})
            return chunks
        chunks = self._end_text()
        if isinstance(data, AgentThinking):
            part = derived_id(event.run_id, event.seq, "reasoning")
            chunks.append({"type": "reasoning-start", "id": part})
            if data.text:
                chunks.append({"type": "reasoning-delta", "id": part, "delta": data.text})
            chunks.append({"type": "reasoning-end", "id": part})
        elif isinstance(data, ToolExecuting):
            chunks.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": data.call_id,
                    "toolName": data.tool,
                    "input": data.args,
                    "dynamic": True,
                }
            )
        elif isinstance(data, ToolCompleted):
            if data.ok:
                output = None if data.result is msgspec.UNSET else data.result
                chunks.append(
                    {
                        "type": "tool-output-available",
                        "toolCallId": data.call_id,
                        "output": output,
                        "dynamic": True,
                    }
                )
            else:
                chunks.append(
                    {
                        "type": "tool-output-error",
                        "toolCallId": data.call_id,
                        "errorText": str(data.error),
                        "dynamic": True,
                    }
                )
        elif isinstance(data, AgentCompleted):
            if not self._texted and data.output:
                part = derived_id(event.run_id, event.seq, "text")
                chunks += [
                    {"type": "text-start", "id": part},
                    {"type": "text-delta", "id": part, "delta": data.output},
                    {"type": "text-end", "id": part},
                ]
            chunks.append({"type": "finish-step"})
            status = {"runwire": {"status": data.status}}
            if data.status == "cancelled":
                chunks.append({"type": "abort", "reason": "cancelled"})
                chunks.append(
                    {"type": "finish", "finishReason": "other", "messageMetadata": status}
                )
            else:
                chunks.append({"type": "finish", "finishReason": "stop", "messageMetadata": status})
        elif isinstance(data, AgentError):
            chunks.append({"type": "finish-step"})
            chunks.append({"type": "error", "errorText": data.message})
            chunks.append(
                {
                    "type": "finish",
                    "finishReason": "error",
                    "messageMetadata": {"runwire": {"status": "error", "code": data.code}},
                }
            )
        return chunks

    def _end_text(self) -> list[Chunk]:
        if self._text_id is None:
            return []
        part, self._text_id = self._text_id, None
        return [{"type": "text-end", "id": part}]

    def _encode(self, item: Chunk) -> str:
        return data_block(_json.encode(item).decode())

    def _trailer(self) -> str:
        return DONE


# ---------------------------------------------------------------------------
# DefaultChatTransport's request body
# ---------------------------------------------------------------------------


class _Part(msgspec.Struct):
    type: str
    text: str | None = None


class _UiMessage(msgspec.Struct):
    id: str
    role: str
    parts: list[_Part] = msgspec.field(default_factory=list)


class _ChatBody(msgspec.Struct, rename="camel"):
    id: WireId
    messages: Annotated[list[_UiMessage], Meta(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = None


_body_decoder = msgspec.json.Decoder(_ChatBody)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a ``POST /api/chat`` asks for: a run of thread ``thread_id`` (the chat id)
    with input ``text``.

    ``idempotency_key`` (the runwire ``user_message`` id): the last user message's id
    for ``submit-message``, so a retried POST attaches to the same run;
    ``<user message id>.regenerate.<messageId>`` for ``regenerate-message`` of a given
    answer, and ``None`` when the client names none (always a new run: the route picks
    a fresh key). ``message_id`` is the body's ``messageId``.
    """

    thread_id: str
    text: str
    trigger: Literal["submit-message", "regenerate-message"]
    user_message_id: str
    message_id: str | None
    idempotency_key: str | None


def parse_chat_request(body: bytes | str) -> ChatRequest:
    """Validate ``DefaultChatTransport``'s body ``{id, messages, trigger, messageId}``.

    The last message must be the user's (the transport sends the history up to it,
    for both triggers); its ``text`` parts, joined by newlines, are the input.

    Raises:
        InvalidRequest: not JSON, a field of the wrong type (named in the message), a
            chat id that is not a runwire thread id (1-128 of ``A-Za-z0-9_.:-``), or a
            last message that is not a user message with text.
    """
    try:
        chat = _body_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"chat request: {exc}") from None
    last = chat.messages[-1]
    if last.role != "user":
        raise InvalidRequest("chat request: the last message is not a user message")
    text = "\n".join(part.text for part in last.parts if part.type == "text" and part.text)
    if not text.strip():
        raise InvalidRequest("chat request: the last user message has no text part")
    try:
        user_message_id = msgspec.convert(last.id, ClientId)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"chat request: messages[-1].id: {exc}") from None
    key: str | None = user_message_id
    if chat.trigger == "regenerate-message":
        key = f"{user_message_id}.regenerate.{chat.message_id}" if chat.message_id else None
        if key is not None and len(key) > 128:
            key = None
    return ChatRequest(chat.id, text, chat.trigger, user_message_id, chat.message_id, key)
