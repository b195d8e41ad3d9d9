"""The AI SDK UI message stream (``useChat``, ``DefaultChatTransport``): start and
reattach to a chat's run.

Under ``chat_path`` (default ``/api/chat``, the ``ai`` package's default ``api``):

``POST <path>``
    Body: ``DefaultChatTransport``'s ``{id, messages, trigger, messageId}``. Starts a
    run of the token's user, thread ``id`` (the chat), input the last user message's
    text parts; the user message's id is the idempotency key (a retried POST follows
    the same run, replayed from its start); ``trigger: "regenerate-message"`` starts a
    new run. Answers the UI message stream (header ``x-vercel-ai-ui-message-stream:
    v1``), ended by ``data: [DONE]``. Closing the request does not cancel the run.
``GET <path>/{id}/stream``
    The transport's ``reconnectToStream``: the chat's active run from its start
    (``resumeStreamIsReplay``), live to its end, from any node; ``204`` when the chat
    has no active run.

Errors before any stream: JSON ``{"error", "message"}`` (see
:mod:`runwire.http.run_streams`).
"""

from __future__ import annotations

import secrets

from runwire.frontends.aisdk import HEADERS, UiMessageTranslator, parse_chat_request
from runwire.frontends.sse import EventId
from runwire.http.message import HttpRequest, HttpResponse, StreamResponse
from runwire.http.router import Router
from runwire.http.run_streams import RunStreams, parsed, stream_response
from runwire.http.sse_follower import SseFollower, TranslatorFactory
from runwire.ids import Epoch

__all__ = ["add_chat_routes"]

_HEADERS = tuple(
    (name, value)
    for name, value in HEADERS.items()
    if name not in ("content-type", "cache-control")
)
"""``x-vercel-ai-ui-message-stream: v1`` (the others are every stream's)."""


def _translator(after: EventId | None) -> TranslatorFactory:
    def make(epoch: Epoch) -> UiMessageTranslator:
        return UiMessageTranslator(epoch, after=after)

    return make


def _fresh_key(user_message_id: str) -> str:
    """A new run's key (a regenerate that names no answer): the message id and 16 hex
    digits, within the 128 characters of an idempotency key."""
    suffix = secrets.token_hex(8)
    return f"{user_message_id[: _MAX_KEY - len(suffix) - 1]}.{suffix}"


_MAX_KEY = 128


def _answer(follower: SseFollower) -> StreamResponse:
    return stream_response(follower, HEADERS["content-type"], _HEADERS)


def add_chat_routes(router: Router, streams: RunStreams, path: str) -> None:
    """Add the AI SDK routes under ``path`` (see the module)."""

    async def chat(request: HttpRequest) -> StreamResponse:
        claims = streams.claims(request)
        asked = parsed(parse_chat_request, request)
        key = asked.idempotency_key or _fresh_key(asked.user_message_id)
        follower = await streams.start(
            claims, asked.text, key=key, thread_id=asked.thread_id, translator=_translator
        )
        return _answer(follower)

    async def resume(request: HttpRequest) -> HttpResponse | StreamResponse:
        claims = streams.claims(request)
        snapshot = await streams.active_in_thread(claims, request.params["chat_id"])
        if snapshot is None:
            return HttpResponse(204, b"")
        return _answer(await streams.replay(claims, snapshot, None, _translator))

    router.post(path, chat)
    router.get(f"{path}/{{chat_id}}/stream", resume)
