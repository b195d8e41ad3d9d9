"""The front-ends' request bodies: AG-UI's RunAgentInput and DefaultChatTransport's body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ag_ui.core import RunAgentInput, TextInputContent, UserMessage

from runwire.frontends import InvalidRequest
from runwire.frontends.agui import parse_run_input
from runwire.frontends.aisdk import parse_chat_request


def run_input(**fields: Any) -> str:
    """A RunAgentInput as @ag-ui/client sends it (camelCase, all fields)."""
    body: dict[str, Any] = {
        "threadId": "thread-1",
        "runId": "3f2a9c1e-7b7d-4c55-9a60-0e1b2c3d4e5f",
        "protocolVersion": "1.0",
        "state": {},
        "messages": [
            {"id": "m1", "role": "user", "content": "first"},
            {"id": "m2", "role": "assistant", "content": "answer"},
            {"id": "m3", "role": "user", "content": "what is 17 * 23?"},
        ],
        "tools": [],
        "context": [],
        "forwardedProps": {},
    }
    return json.dumps(body | fields)


def test_a_run_agent_input_gives_thread_run_id_and_the_last_user_text() -> None:
    request = parse_run_input(run_input())
    assert (request.thread_id, request.run_id, request.text) == (
        "thread-1",
        "3f2a9c1e-7b7d-4c55-9a60-0e1b2c3d4e5f",
        "what is 17 * 23?",
    )
    assert isinstance(request.input, RunAgentInput)


def test_the_text_parts_of_a_multimodal_user_message_are_the_input() -> None:
    message = UserMessage(
        id="u",
        content=[TextInputContent(text="look at"), TextInputContent(text="this")],
    )
    body = run_input(messages=[message.model_dump(by_alias=True, exclude_none=True)])
    assert parse_run_input(body.encode()).text == "look at\nthis"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{", "RunAgentInput"),
        (json.dumps({"threadId": "t"}), "runId"),
        (run_input(messages=[{"id": "a", "role": "assistant", "content": "x"}]), "no user message"),
        (run_input(messages=[{"id": "a", "role": "user", "content": "  "}]), "no text"),
        (run_input(threadId="has space"), "threadId"),
        (run_input(runId=""), "runId"),
        (run_input(messages=[{"id": "a", "role": "wizard", "content": "x"}]), "messages"),
    ],
)
def test_an_unusable_run_agent_input_is_an_invalid_request(body: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        parse_run_input(body)
    assert caught.value.body()["error"] == "invalid_request"


def chat_body(**fields: Any) -> str:
    """DefaultChatTransport's body: {id, messages, trigger, messageId} (+ extra body)."""
    body: dict[str, Any] = {
        "id": "chat_abc123",
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hello"}]},
            {
                "id": "r_1.assistant",
                "role": "assistant",
                "parts": [{"type": "step-start"}, {"type": "text", "text": "hi", "state": "done"}],
            },
            {
                "id": "u2",
                "role": "user",
                "parts": [
                    {"type": "text", "text": "what is"},
                    {"type": "file", "mediaType": "image/png", "url": "data:,"},
                    {"type": "text", "text": "17 * 23?"},
                ],
            },
        ],
        "trigger": "submit-message",
        "extra": {"from": "the app's own body"},
    }
    return json.dumps(body | fields)


def test_a_submitted_chat_message_maps_the_chat_to_the_thread() -> None:
    request = parse_chat_request(chat_body())
    assert (request.thread_id, request.text, request.trigger) == (
        "chat_abc123",
        "what is\n17 * 23?",
        "submit-message",
    )
    assert (request.user_message_id, request.idempotency_key) == ("u2", "u2")


def test_regenerating_starts_a_new_run_for_the_same_user_message() -> None:
    request = parse_chat_request(chat_body(trigger="regenerate-message", messageId="r_9.assistant"))
    assert request.idempotency_key == "u2.regenerate.r_9.assistant"
    assert request.message_id == "r_9.assistant"
    unnamed = parse_chat_request(chat_body(trigger="regenerate-message"))
    assert unnamed.idempotency_key is None and unnamed.text == "what is\n17 * 23?"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "chat request"),
        (chat_body(id="a/b"), "id"),
        (chat_body(trigger="resume-stream"), "trigger"),
        (chat_body(messages=[]), "messages"),
        (
            chat_body(messages=[{"id": "a", "role": "assistant", "parts": []}]),
            "not a user message",
        ),
        (
            chat_body(messages=[{"id": "a", "role": "user", "parts": [{"type": "file"}]}]),
            "no text",
        ),
    ],
)
def test_an_unusable_chat_body_is_an_invalid_request(body: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        parse_chat_request(body)
