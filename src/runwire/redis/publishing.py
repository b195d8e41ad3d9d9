"""The publish script's call: a batch of publishes in, their stored events out.

The one place that knows the argument layout of :data:`runwire.redis.scripts.PUBLISH`
(documented there). A batch is grouped by user, each user's events in batch order,
so a user's offsets follow the order its events were submitted in. On a Redis
Cluster a script touches one slot: :func:`by_slot` splits a batch into one call per
slot (a user's events all in one), :func:`in_request_order` puts the answers back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runwire.engines.base import StoredEvent
from runwire.events import Event
from runwire.ids import Epoch, UserId
from runwire.redis.keys import live_channel, run_field, stream_keys

__all__ = [
    "PublishRequest",
    "Stored",
    "by_slot",
    "in_request_order",
    "publish_call",
    "stored_of",
]


class PublishRequest:
    """One event to publish, already encoded around its (unknown) offset."""

    __slots__ = ("event", "prefix", "suffix", "user_id")

    def __init__(self, user_id: UserId, event: Event, prefix: bytes, suffix: bytes) -> None:
        self.user_id = user_id
        self.event = event
        self.prefix = prefix
        self.suffix = suffix


class Stored:
    """What the script did with one request: stored (``duplicate`` false), or found
    it stored already (then ``stored`` has the offset of its run's last event)."""

    __slots__ = ("duplicate", "stored")

    def __init__(self, stored: StoredEvent, duplicate: bool) -> None:
        self.stored = stored
        self.duplicate = duplicate


def _groups(requests: list[PublishRequest]) -> dict[UserId, list[int]]:
    groups: dict[UserId, list[int]] = {}
    for index, request in enumerate(requests):
        group = groups.get(request.user_id)
        if group is None:
            groups[request.user_id] = [index]
        else:
            group.append(index)
    return groups


def publish_call(
    requests: list[PublishRequest], header: list[Any], candidate: Callable[[], str]
) -> tuple[list[str], list[Any], list[list[int]]]:
    """``(keys, args, groups)`` for one script call storing ``requests``.

    ``header``: the script's first eight arguments (clock and bounds); ``candidate``:
    a fresh epoch name per group (used if the user's stream is new or was lost);
    ``groups``: the request indexes of each group, for :func:`stored_of`.
    """
    keys: list[str] = []
    args: list[Any] = list(header)
    order: list[list[int]] = []
    for user_id, indexes in _groups(requests).items():
        runs: dict[str, str] = {}
        events: list[Any] = []
        for index in indexes:
            request = requests[index]
            event = request.event
            field = runs.get(event.run_id)
            if field is None:
                field = runs[event.run_id] = run_field(event.run_id)
            events += (field, event.seq, request.prefix, request.suffix)
        keys += stream_keys(user_id)
        args += (candidate(), live_channel(user_id), len(runs), len(indexes))
        args += runs.values()
        args += events
        order.append(indexes)
    return keys, args, order


def stored_of(requests: list[PublishRequest], reply: Any, groups: list[list[int]]) -> list[Stored]:
    """The script's reply as one :class:`Stored` per request, in request order."""
    results: list[Stored | None] = [None] * len(requests)
    for indexes, group in zip(groups, reply, strict=True):
        epoch = Epoch(group[0].decode())
        for position, index in enumerate(indexes):
            request = requests[index]
            offset = int(group[1 + 2 * position])
            frame = request.prefix + str(offset).encode() + request.suffix
            stored = StoredEvent(request.user_id, epoch, offset, frame, request.event)
            results[index] = Stored(stored, bool(group[2 + 2 * position]))
    return results  # type: ignore[return-value]  # every index is in one group


def by_slot(requests: list[PublishRequest], slot_of: Callable[[UserId], int]) -> list[list[int]]:
    """The request indexes of each slot (by ``slot_of`` of the user), in batch order."""
    slots: dict[int, list[int]] = {}
    seen: dict[UserId, list[int]] = {}
    for index, request in enumerate(requests):
        part = seen.get(request.user_id)
        if part is None:
            part = seen[request.user_id] = slots.setdefault(slot_of(request.user_id), [])
        part.append(index)
    return list(slots.values())


def in_request_order(
    count: int, parts: list[list[int]], answers: list[list[Stored]]
) -> list[Stored]:
    """The answers of the calls of :func:`by_slot`'s parts, as one list in request order."""
    results: list[Stored | None] = [None] * count
    for indexes, stored in zip(parts, answers, strict=True):
        for index, result in zip(indexes, stored, strict=True):
            results[index] = result
    return results  # type: ignore[return-value]  # every index is in one part
