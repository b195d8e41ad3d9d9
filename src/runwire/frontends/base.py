"""What the AG-UI and AI SDK translators share: feeding one run, positions, ids, errors.

A translator is sans-I/O: it is fed the runwire events of one run in order with
their offsets (:meth:`RunTranslator.feed`) and answers the front-end's events for
each, already framed as SSE (:class:`Frame`). An HTTP route only reads events from
the engine, feeds them, writes ``frame.sse`` and stops when :attr:`~RunTranslator.done`.

Contract of :meth:`RunTranslator.feed`, for both front-ends:

- events of one run only (:class:`ValueError` otherwise), in ``seq`` order; an event
  whose ``seq`` is not newer than the last one fed is ignored, so a route may overlap
  its history replay with live delivery;
- nothing after the terminal event (``agent_completed`` / ``agent_error``);
- deterministic: the same events give the same frames, ids included (message, part
  and tool call ids derive from the run id and ``seq``; nothing is random or clocked),
  so a replay of a run is byte-identical to its live stream;
- resume: built with ``after`` (the client's ``Last-Event-ID``) and fed the run from its
  start, it withholds every block at or before ``after`` and answers exactly the rest.
  Fed a run whose start is no longer in history (from an offset), it still answers a
  stream its client accepts (it opens the run first), without what it never saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from runwire.events import Event
from runwire.exceptions import RunwireError
from runwire.frontends.sse import EventId, with_id
from runwire.ids import Epoch

__all__ = ["Frame", "InvalidRequest", "RunTranslator", "derived_id"]

ItemT = TypeVar("ItemT")


class InvalidRequest(RunwireError):
    """A front-end's request body is not acceptable; answer ``400`` with
    ``{"error": "invalid_request", "message": message}`` before any stream."""

    code = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON body of the ``400`` answer."""
        return {"error": self.code, "message": self.message}


def derived_id(run_id: str, seq: int, kind: str) -> str:
    """The id of the message, part or result that event ``seq`` of ``run_id`` opened
    (``r_1.5.text``): stable across replays and unique in the user's stream."""
    return f"{run_id}.{seq}.{kind}"


@dataclass(frozen=True, slots=True)
class Frame(Generic[ItemT]):
    """One front-end event: ``item`` as the front-end's model, ``sse`` its SSE text
    (``id:`` line included; on the AI SDK's last frame ``data: [DONE]`` follows)."""

    event_id: EventId
    item: ItemT
    sse: str


class RunTranslator(ABC, Generic[ItemT]):
    """Turns the runwire events of one run into a front-end's SSE stream (see the module).

    ``epoch`` is the user's stream epoch (for the ``id:`` lines); ``after`` the client's
    position in that epoch, or ``None`` for the whole run.

    Raises:
        ValueError: ``after`` is of another epoch (the route answers that the stream
            restarted, as ``resume_failed`` does on the socket).
    """

    def __init__(self, epoch: Epoch, *, after: EventId | None = None) -> None:
        if after is not None and after.epoch != epoch:
            raise ValueError(f"event id of epoch {after.epoch}, the stream is at {epoch}")
        self.epoch = epoch
        self.after = after
        self.run_id: str | None = None
        self.thread_id: str | None = None
        self.started = False
        self.done = False
        """The terminal event was fed: the stream is complete; close it."""
        self._last_seq = 0

    def feed(self, offset: int, event: Event) -> list[Frame[ItemT]]:
        """The frames for ``event`` (at ``offset`` in the user's stream) that the client
        does not have yet; ``[]`` for a duplicate, or anything after the terminal event.

        Raises:
            ValueError: ``event`` belongs to another run than the first one fed.
        """
        if self.run_id is None:
            self.run_id, self.thread_id = event.run_id, event.thread_id
        elif event.run_id != self.run_id:
            raise ValueError(f"event of run {event.run_id} fed to the stream of {self.run_id}")
        if self.done or event.seq <= self._last_seq:
            return []
        self._last_seq = event.seq
        items: list[ItemT] = []
        if not self.started:
            self.started = True
            items.extend(self._open(event))
        items.extend(self._translate(event))
        if event.is_terminal:
            self.done = True
        return self._frames(offset, items)

    def _frames(self, offset: int, items: Sequence[ItemT]) -> list[Frame[ItemT]]:
        frames: list[Frame[ItemT]] = []
        last = len(items)
        after = self.after
        for block, item in enumerate(items, start=1):
            if after is not None and after.covers(offset, block):
                continue
            event_id = EventId(self.epoch, offset, None if block == last else block)
            text = with_id(self._encode(item), event_id)
            if block == last and self.done:
                text += self._trailer()
            frames.append(Frame(event_id, item, text))
        return frames

    @abstractmethod
    def _open(self, event: Event) -> list[ItemT]:
        """What opens the stream, before the first event's own items: the run start
        (for ``agent_started`` itself, or synthesized when the run's start is not fed)."""

    @abstractmethod
    def _translate(self, event: Event) -> list[ItemT]:
        """The front-end items for one event, in order (state may change)."""

    @abstractmethod
    def _encode(self, item: ItemT) -> str:
        """One item as one SSE ``data:`` block (no ``id:`` line)."""

    def _trailer(self) -> str:
        """Text after the terminal event's last block (the AI SDK's ``[DONE]``)."""
        return ""
