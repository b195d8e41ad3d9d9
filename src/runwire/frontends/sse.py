"""Server-sent events: the one place runwire writes SSE framing, and stream positions.

Pure and synchronous. Every SSE block runwire sends goes through :func:`data_block`,
:func:`with_id` or :data:`HEARTBEAT`: LF line separators only (the AG-UI client splits
on ``"\\n\\n"``; CRLF breaks it), one ``data:`` line per block (JSON never contains a raw
newline), and an ``id:`` line naming the block's position in the user's stream.

Positions (:class:`EventId`): one runwire event may become several SSE blocks (a tool
call is ``TOOL_CALL_START``, ``TOOL_CALL_ARGS`` and ``TOOL_CALL_END``). The last block of
the event at ``offset`` carries ``epoch:offset``; an earlier block ``k`` (1-based) carries
``epoch:offset.k``, "the first ``k`` blocks of that event". A client that reconnects with
either as ``Last-Event-ID`` therefore gets exactly what it has not seen, never a block
twice (which the AG-UI verifier would refuse: a second ``TEXT_MESSAGE_START``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from runwire.ids import Epoch
from runwire.resume import ResumeRequest

__all__ = ["HEARTBEAT", "EventId", "comment", "data_block", "with_id"]

HEARTBEAT: Final = ": heartbeat\n\n"
"""A comment block: keeps an idle stream open through proxies; every client ignores it."""

_EVENT_ID = re.compile(r"^([A-Za-z0-9_-]{1,64}):(\d{1,18})(?:\.(\d{1,6}))?$")


def data_block(payload: str) -> str:
    """``data: <payload>\\n\\n``: one SSE event with one data line.

    Raises:
        ValueError: ``payload`` contains a line break (it would split the event).
    """
    if "\n" in payload or "\r" in payload:
        raise ValueError("an SSE data payload must be one line")
    return f"data: {payload}\n\n"


def with_id(block: str, event_id: EventId) -> str:
    """``block`` (one ``data:`` event, as :func:`data_block` or ag-ui's ``EventEncoder``
    write it) with an ``id:`` line in front."""
    return f"id: {event_id.format()}\n{block}"


def comment(text: str) -> str:
    """A comment block (``: text``), ignored by clients; ``text`` is one line."""
    if "\n" in text or "\r" in text:
        raise ValueError("an SSE comment must be one line")
    return f": {text}\n\n"


@dataclass(frozen=True, slots=True, order=True)
class EventId:
    """A position in a user's stream as an SSE ``id:``: through block ``blocks`` of the
    event at ``offset`` of ``epoch``, or through the whole event when ``blocks`` is
    ``None``."""

    epoch: Epoch
    offset: int
    blocks: int | None = None

    def format(self) -> str:
        """``epoch:offset`` or ``epoch:offset.blocks``."""
        base = f"{self.epoch}:{self.offset}"
        return base if self.blocks is None else f"{base}.{self.blocks}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """Read a ``Last-Event-ID`` header or an ``?after=`` value.

        Raises:
            ValueError: not ``epoch:offset`` or ``epoch:offset.k`` (k >= 1).
        """
        match = _EVENT_ID.match(text.strip())
        if match is None:
            raise ValueError(f"not an event id (epoch:offset): {text[:80]!r}")
        epoch, offset, blocks = match.groups()
        if blocks is not None and int(blocks) < 1:
            raise ValueError("an event id's block count starts at 1")
        return cls(Epoch(epoch), int(offset), None if blocks is None else int(blocks))

    def covers(self, offset: int, block: int) -> bool:
        """Whether block ``block`` (1-based) of the event at ``offset`` is at or before
        this position, i.e. the client that sent it has that block already."""
        if offset != self.offset:
            return offset < self.offset
        return self.blocks is None or block <= self.blocks

    def resume_request(self) -> ResumeRequest:
        """The engine-level position: every event the client has *whole* (an event it has
        only part of is replayed, and its delivered blocks withheld by the translator)."""
        whole = self.offset if self.blocks is None else self.offset - 1
        return ResumeRequest(self.epoch, max(whole, 0))
