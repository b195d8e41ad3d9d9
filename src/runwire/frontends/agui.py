"""AG-UI: a run's events as the AG-UI event stream, and the client's ``RunAgentInput``.

Needs the ``agui`` extra (``ag-ui-protocol``): events are its pydantic models, written
by its ``EventEncoder`` (camelCase keys, optional fields left out, never ``null``).

Mapping (every event has ``timestamp`` = the runwire ``ts`` in integer milliseconds
and ``metadata.runwire`` = ``{"seq", "event"}`` plus the fields AG-UI has no place for):

===================  ==========================================================
runwire              AG-UI
===================  ==========================================================
``agent_started``    ``RUN_STARTED`` (``metadata.runwire``: ``agent``, ``input``)
``agent_thinking``   ``REASONING_MESSAGE_START``, ``_CONTENT``, ``_END``
``tool_executing``   ``TOOL_CALL_START``, ``TOOL_CALL_ARGS`` (JSON), ``TOOL_CALL_END``
``tool_completed``   ``TOOL_CALL_RESULT``: ``content`` the result (a string as is,
                     anything else as JSON) or the error message (``metadata.runwire``:
                     ``ok``, ``durationMs``, ``error``)
deltas               ``TEXT_MESSAGE_START`` (at the first), ``TEXT_MESSAGE_CONTENT``
``agent_completed``  ``TEXT_MESSAGE_END`` (the text streamed, or ``output`` in one piece
                     when no delta came), ``RUN_FINISHED``: ``result`` = ``output``,
                     ``outcome`` ``success`` or ``cancelled``
``agent_error``      ``TEXT_MESSAGE_END`` if a text message is open, ``RUN_ERROR``
                     (``code``, ``message``)
===================  ==========================================================

The stream passes the client's verifier (``verifyEvents``): ``RUN_STARTED`` first, one
open message per id, ``RUN_FINISHED`` only with nothing open, nothing after the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from ag_ui.core import (
    BaseEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextInputContent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    UserMessage,
)
from ag_ui.encoder import EventEncoder
from pydantic import ValidationError

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
from runwire.frontends.sse import EventId
from runwire.ids import Epoch

__all__ = ["AguiRequest", "AguiTranslator", "CONTENT_TYPE", "parse_run_input"]

CONTENT_TYPE = EventEncoder().get_content_type()
"""``text/event-stream``: the only encoding runwire answers (not the protobuf one)."""

_encoder = EventEncoder()
_json = msgspec.json.Encoder()


class AguiTranslator(RunTranslator[BaseEvent]):
    """One run as AG-UI events (see the module for the mapping and
    :class:`~runwire.frontends.base.RunTranslator` for the feeding contract)."""

    def __init__(self, epoch: Epoch, *, after: EventId | None = None) -> None:
        super().__init__(epoch, after=after)
        self._text_id: str | None = None
        """The open text message, if any."""
        self._texted = False

    def _meta(self, event: Event, **extra: Any) -> dict[str, Any]:
        return {"runwire": {"seq": event.seq, "event": event.type, **extra}}

    def _open(self, event: Event) -> list[BaseEvent]:
        data = event.data
        extra = (
            {"agent": data.agent, "input": data.input}
            if isinstance(data, AgentStarted)
            else {"partial": True}  # the run's start is not in what was fed
        )
        return [
            RunStartedEvent(
                thread_id=event.thread_id,
                run_id=event.run_id,
                timestamp=event.ts,
                metadata=self._meta(event, **extra),
            )
        ]

    def _translate(self, event: Event) -> list[BaseEvent]:
        data, ts, meta = event.data, event.ts, self._meta(event)
        if isinstance(data, AgentMessageDelta):
            items: list[BaseEvent] = []
            if not data.text:
                return items
            if self._text_id is None:
                self._text_id = derived_id(event.run_id, event.seq, "text")
                self._texted = True
                items.append(
                    TextMessageStartEvent(
                        message_id=self._text_id, role="assistant", timestamp=ts, metadata=meta
                    )
                )
            items.append(
                TextMessageContentEvent(
                    message_id=self._text_id, delta=data.text, timestamp=ts, metadata=meta
                )
            )
            return items
        if isinstance(data, AgentThinking):
            message_id = derived_id(event.run_id, event.seq, "reasoning")
            items = [ReasoningMessageStartEvent(message_id=message_id, timestamp=ts, metadata=meta)]
            if data.text:
                items.append(
                    ReasoningMessageContentEvent(
                        message_id=message_id, delta=data.text, timestamp=ts, metadata=meta
                    )
                )
            items.append(
                ReasoningMessageEndEvent(message_id=message_id, timestamp=ts, metadata=meta)
            )
            return items
        if isinstance(data, ToolExecuting):
            return [
                ToolCallStartEvent(
                    tool_call_id=data.call_id,
                    tool_call_name=data.tool,
                    timestamp=ts,
                    metadata=meta,
                ),
                ToolCallArgsEvent(
                    tool_call_id=data.call_id,
                    delta=_json.encode(data.args).decode(),
                    timestamp=ts,
                    metadata=meta,
                ),
                ToolCallEndEvent(tool_call_id=data.call_id, timestamp=ts, metadata=meta),
            ]
        if isinstance(data, ToolCompleted):
            extra: dict[str, Any] = {"ok": data.ok, "durationMs": data.duration_ms}
            if data.ok:
                content = _result_text(None if data.result is msgspec.UNSET else data.result)
            else:
                content = extra["error"] = str(data.error)
            return [
                ToolCallResultEvent(
                    message_id=derived_id(event.run_id, event.seq, "result"),
                    tool_call_id=data.call_id,
                    content=content,
                    timestamp=ts,
                    metadata=self._meta(event, **extra),
                )
            ]
        if isinstance(data, AgentCompleted):
            items = self._end_text(event)
            if not self._texted and data.output:
                message_id = derived_id(event.run_id, event.seq, "text")
                items += [
                    TextMessageStartEvent(
                        message_id=message_id, role="assistant", timestamp=ts, metadata=meta
                    ),
                    TextMessageContentEvent(
                        message_id=message_id, delta=data.output, timestamp=ts, metadata=meta
                    ),
                    TextMessageEndEvent(message_id=message_id, timestamp=ts, metadata=meta),
                ]
            outcome = (
                RunFinishedCancelledOutcome()
                if data.status == "cancelled"
                else RunFinishedSuccessOutcome()
            )
            items.append(
                RunFinishedEvent(
                    thread_id=event.thread_id,
                    run_id=event.run_id,
                    result=data.output,
                    outcome=outcome,
                    timestamp=ts,
                    metadata=self._meta(event, status=data.status),
                )
            )
            return items
        if isinstance(data, AgentError):
            items = self._end_text(event)
            items.append(
                RunErrorEvent(message=data.message, code=data.code, timestamp=ts, metadata=meta)
            )
            return items
        return []  # agent_started: answered by _open

    def _end_text(self, event: Event) -> list[BaseEvent]:
        if self._text_id is None:
            return []
        message_id, self._text_id = self._text_id, None
        return [
            TextMessageEndEvent(
                message_id=message_id, timestamp=event.ts, metadata=self._meta(event)
            )
        ]

    def _encode(self, item: BaseEvent) -> str:
        return _encoder.encode(item)


def _result_text(result: Any) -> str:
    """A tool result as ``TOOL_CALL_RESULT.content``: a string as is, else its JSON."""
    return result if isinstance(result, str) else _json.encode(result).decode()


@dataclass(frozen=True, slots=True)
class AguiRequest:
    """What a ``POST /agui`` asks for: a run of thread ``thread_id`` with input ``text``.

    ``run_id`` is the client's ``runId``: the run's idempotency key (a retried POST
    attaches to the same run). ``input`` is the whole validated ``RunAgentInput``.
    """

    thread_id: str
    run_id: str
    text: str
    input: RunAgentInput


def parse_run_input(body: bytes | str) -> AguiRequest:
    """Validate a ``RunAgentInput`` body with ag-ui-protocol's model and extract the run.

    The input is the text of the last ``user`` message (its text parts, joined by
    newlines, when its content is a list). ``threadId`` must be a runwire thread id
    (1-128 of ``A-Za-z0-9_.:-``); ``runId`` 1-128 characters.

    Raises:
        InvalidRequest: not JSON, not a valid ``RunAgentInput`` (the message names the
            field), unusable ids, or no user message with text.
    """
    try:
        run_input = RunAgentInput.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"RunAgentInput: {where}: {first['msg']}") from None
    try:
        thread_id = msgspec.convert(run_input.thread_id, WireId)
        run_id = msgspec.convert(run_input.run_id, ClientId)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"RunAgentInput: threadId or runId: {exc}") from None
    for message in reversed(run_input.messages):
        if isinstance(message, UserMessage):
            text = _user_text(message)
            if not text.strip():
                raise InvalidRequest("RunAgentInput: the last user message has no text")
            return AguiRequest(thread_id, run_id, text, run_input)
    raise InvalidRequest("RunAgentInput: messages: no user message")


def _user_text(message: UserMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content if isinstance(part, TextInputContent))
