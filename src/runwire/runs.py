"""Run snapshots: the current state of each recent run, for clients that cannot resume.

When a client's position is out of the history window (``resume_failed``), it
rebuilds its view from ``GET /api/runs`` instead of replaying events. The store
folds every published event into a :class:`RunSnapshot`.

Bounds: ``runs_per_user`` snapshots per user (oldest dropped first), ``max_users``
users (least recently active dropped first), and per snapshot at most
``MAX_ITEMS`` thinking steps and tool calls and ``MAX_ANSWER_CHARS`` of answer text
(beyond them ``truncated`` is set and the rest is only in the event stream).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from runwire.events import (
    AgentCompleted,
    AgentError,
    AgentMessageDelta,
    AgentStarted,
    AgentThinking,
    Event,
    ToolCompleted,
    ToolExecuting,
)
from runwire.ids import UserId

__all__ = [
    "LocalSnapshots",
    "RunsPage",
    "page_of",
    "SnapshotReader",
    "MAX_ANSWER_CHARS",
    "MAX_ITEMS",
    "RunSnapshot",
    "RunStore",
    "ThreadSummary",
]

MAX_ITEMS = 200
MAX_ANSWER_CHARS = 200_000


class ToolCallSnapshot(msgspec.Struct):
    """One tool call: ``running`` until its ``tool_completed``."""

    call_id: str
    tool: str
    args: dict[str, Any]
    status: str = "running"
    ok: bool | None = None
    result: Any = None
    error: str | None = None
    duration_ms: float | None = None
    started_ts: int = 0


class RunSnapshot(msgspec.Struct):
    """Everything a page needs to draw one run, as of ``last_offset``."""

    run_id: str
    thread_id: str
    agent: str
    input: str
    status: str = "running"
    """``running``, ``completed``, ``cancelled`` or ``error``."""
    thinking: list[str] = msgspec.field(default_factory=list)
    tools: list[ToolCallSnapshot] = msgspec.field(default_factory=list)
    answer: str = ""
    output: str | None = None
    error: dict[str, str] | None = None
    started_ts: int = 0
    ended_ts: int | None = None
    last_offset: int = 0
    last_seq: int = 0
    truncated: bool = False
    first_offset: int = 0
    """Offset of the run's ``agent_started`` in its user's stream: a replay of the run
    reads history after ``first_offset - 1``. ``0`` in snapshots written before it
    existed (they still decode)."""


class ThreadSummary(msgspec.Struct):
    """A thread of the user, for the thread list."""

    thread_id: str
    title: str
    runs: int
    last_ts: int


class _Answer:
    """Answer text of a running run not yet joined into its snapshot.

    Appending each delta to ``RunSnapshot.answer`` would copy the whole answer per
    event (quadratic in its length); pieces are joined when the snapshot is read.
    """

    __slots__ = ("length", "parts")

    def __init__(self, length: int) -> None:
        self.length = length
        self.parts: list[str] = []


class RunStore:
    """Bounded snapshots of each user's recent runs, fed with every published event."""

    def __init__(self, *, runs_per_user: int, max_users: int) -> None:
        self.runs_per_user = runs_per_user
        self.max_users = max_users
        self._users: OrderedDict[UserId, OrderedDict[str, RunSnapshot]] = OrderedDict()
        self._answers: dict[tuple[UserId, str], _Answer] = {}

    def observe(self, user_id: UserId, offset: int, event: Event) -> None:
        """Fold one event (at ``offset`` in the user's stream) into its run's snapshot.

        Idempotent per run: an event whose ``seq`` is not newer than the snapshot's is
        ignored, so the same event may be observed twice (published here, and
        delivered here by a shared engine).
        """
        users = self._users
        runs = users.get(user_id)
        if runs is None:
            runs = users[user_id] = OrderedDict()
            if len(users) > self.max_users:
                evicted, dropped = users.popitem(last=False)
                for run_id in dropped:
                    self._answers.pop((evicted, run_id), None)
        else:
            users.move_to_end(user_id)
        data = event.data
        snapshot = runs.get(event.run_id)
        if snapshot is not None and event.seq <= snapshot.last_seq:
            return  # seen already: a node observes its own publishes and its deliveries
        if snapshot is None:
            if not isinstance(data, AgentStarted):
                return  # its start was evicted; nothing coherent to show
            snapshot = RunSnapshot(
                event.run_id,
                event.thread_id,
                data.agent,
                data.input,
                started_ts=event.ts,
                first_offset=offset,
            )
            runs[event.run_id] = snapshot
            if len(runs) > self.runs_per_user:
                self._answers.pop((user_id, runs.popitem(last=False)[0]), None)
        snapshot.last_offset = offset
        snapshot.last_seq = event.seq
        if type(data) is AgentMessageDelta:
            key = (user_id, event.run_id)
            answer = self._answers.get(key)
            if answer is None:
                answer = self._answers[key] = _Answer(len(snapshot.answer))
            room = MAX_ANSWER_CHARS - answer.length
            text = data.text
            if len(text) > room:
                snapshot.truncated = True
                text = text[: max(room, 0)]
            if text:
                answer.parts.append(text)
                answer.length += len(text)
        elif isinstance(data, AgentThinking):
            if len(snapshot.thinking) < MAX_ITEMS:
                snapshot.thinking.append(data.text)
            else:
                snapshot.truncated = True
        elif isinstance(data, ToolExecuting):
            if len(snapshot.tools) < MAX_ITEMS:
                snapshot.tools.append(
                    ToolCallSnapshot(data.call_id, data.tool, data.args, started_ts=event.ts)
                )
            else:
                snapshot.truncated = True
        elif isinstance(data, ToolCompleted):
            for call in snapshot.tools:
                if call.call_id == data.call_id:
                    call.status = "completed" if data.ok else "failed"
                    call.ok = data.ok
                    call.result = None if data.result is msgspec.UNSET else data.result
                    call.error = None if data.error is msgspec.UNSET else data.error
                    call.duration_ms = data.duration_ms
        elif isinstance(data, AgentCompleted):
            snapshot.status = data.status
            snapshot.output = data.output[:MAX_ANSWER_CHARS]
            if len(data.output) > MAX_ANSWER_CHARS:
                snapshot.truncated = True
            snapshot.ended_ts = event.ts
            self._join_answer(user_id, snapshot)
        elif isinstance(data, AgentError):
            snapshot.status = "error"
            snapshot.error = {"code": data.code, "message": data.message}
            snapshot.ended_ts = event.ts
            self._join_answer(user_id, snapshot)

    def _join_answer(self, user_id: UserId, snapshot: RunSnapshot) -> RunSnapshot:
        """Bring ``snapshot.answer`` up to date with the deltas observed so far."""
        answer = self._answers.pop((user_id, snapshot.run_id), None)
        if answer is not None and answer.parts:
            snapshot.answer += "".join(answer.parts)
        return snapshot

    def merge(self, user_id: UserId, snapshot: RunSnapshot) -> None:
        """Adopt a snapshot made elsewhere (another node or a worker) unless ours is newer."""
        runs = self._users.get(user_id)
        if runs is None:
            runs = self._users[user_id] = OrderedDict()
            if len(self._users) > self.max_users:
                evicted, dropped = self._users.popitem(last=False)
                for run_id in dropped:
                    self._answers.pop((evicted, run_id), None)
        local = runs.get(snapshot.run_id)
        if local is not None and local.last_seq >= snapshot.last_seq:
            return
        self._answers.pop((user_id, snapshot.run_id), None)
        runs[snapshot.run_id] = snapshot
        if local is None and len(runs) > 1:
            # A run new here may be older than runs observed here (read back from
            # Redis by get_runs): the order is by start, which runs(), the pages and
            # the eviction in observe() rely on.
            ordered = sorted(runs.values(), key=lambda r: r.started_ts)
            if any(a is not b for a, b in zip(ordered, runs.values(), strict=True)):
                runs.clear()
                runs.update((r.run_id, r) for r in ordered)
        if len(runs) > self.runs_per_user:
            oldest = min(runs.values(), key=lambda r: r.started_ts)
            del runs[oldest.run_id]
            self._answers.pop((user_id, oldest.run_id), None)

    def runs(self, user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
        """The user's retained runs (of one thread, if given), oldest first."""
        runs = self._users.get(user_id) or OrderedDict()
        return [
            self._join_answer(user_id, r)
            for r in runs.values()
            if thread_id is None or r.thread_id == thread_id
        ]

    def run(self, user_id: UserId, run_id: str) -> RunSnapshot | None:
        """One of the user's own runs, or ``None`` (also for another user's run id)."""
        runs = self._users.get(user_id)
        snapshot = runs.get(run_id) if runs is not None else None
        return self._join_answer(user_id, snapshot) if snapshot is not None else None

    def threads(self, user_id: UserId) -> list[ThreadSummary]:
        """The user's threads with retained runs, most recent first."""
        summaries: dict[str, ThreadSummary] = {}
        for snapshot in (self._users.get(user_id) or OrderedDict()).values():
            summary = summaries.get(snapshot.thread_id)
            if summary is None:
                summaries[snapshot.thread_id] = ThreadSummary(
                    snapshot.thread_id, snapshot.input[:80], 1, snapshot.started_ts
                )
            else:
                summary.runs += 1
                summary.last_ts = max(summary.last_ts, snapshot.started_ts)
        return sorted(summaries.values(), key=lambda s: s.last_ts, reverse=True)

    def open_runs(self) -> list[tuple[UserId, RunSnapshot]]:
        """Every retained run still ``running``, with its user."""
        return [
            (user_id, self._join_answer(user_id, snapshot))
            for user_id, runs in self._users.items()
            for snapshot in list(runs.values())
            if snapshot.status == "running"
        ]

    def stats(self) -> dict[str, int]:
        """Users and runs held."""
        return {
            "users": len(self._users),
            "runs": sum(len(runs) for runs in self._users.values()),
        }


class SnapshotReader(Protocol):
    """Run snapshots as any node can read them (``get_runs`` over the socket)."""

    async def runs(self, user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
        """The user's retained runs (of one thread, if given), oldest first."""
        ...

    async def run(self, user_id: UserId, run_id: str) -> RunSnapshot | None:
        """One of the user's own runs, or ``None``."""
        ...


class LocalSnapshots:
    """Snapshots held by this process only (the memory engine)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    async def runs(self, user_id: UserId, thread_id: str | None = None) -> list[RunSnapshot]:
        return self.store.runs(user_id, thread_id)

    async def run(self, user_id: UserId, run_id: str) -> RunSnapshot | None:
        return self.store.run(user_id, run_id)


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of run snapshots, oldest first; ``more``: older runs exist."""

    runs: list[RunSnapshot]
    more: bool


def page_of(runs: list[RunSnapshot], *, limit: int, before: str | None, max_bytes: int) -> RunsPage:
    """The newest ``limit`` of ``runs`` (oldest first) older than run ``before``,
    encoded in at most ``max_bytes`` (about: the page stops at the run that would
    pass it).

    A run that alone is over ``max_bytes`` is sent cut down, with ``truncated`` set
    (no thinking or tool calls, the answer shortened): the event stream has the rest.
    An unknown ``before`` gives an empty page.
    """
    if before is not None:
        position = next((i for i, run in enumerate(runs) if run.run_id == before), None)
        runs = runs[:position] if position is not None else []
    chosen: list[RunSnapshot] = []
    size = 0
    for snapshot in reversed(runs):
        if len(chosen) == limit:
            break
        encoded = len(msgspec.json.encode(snapshot))
        if encoded > max_bytes:
            snapshot = _cut_down(snapshot, max_bytes)
            encoded = len(msgspec.json.encode(snapshot))
        if chosen and size + encoded > max_bytes:
            break
        chosen.append(snapshot)
        size += encoded
    chosen.reverse()
    return RunsPage(chosen, more=len(chosen) < len(runs))


def _cut_down(snapshot: RunSnapshot, max_bytes: int) -> RunSnapshot:
    chars = max_bytes // 16  # answer and output, up to 4 bytes a character, with room
    return msgspec.structs.replace(
        snapshot,
        input=snapshot.input[:chars],
        thinking=[],
        tools=[],
        answer=snapshot.answer[:chars],
        output=snapshot.output[:chars] if snapshot.output is not None else None,
        truncated=True,
    )
