"""The publish script's call: a batch of publishes in, their stored events out.

The one place that knows the argument layout of :data:`runwire.redis.scripts.PUBLISH`
(documented there). A batch is grouped by user, each user's events in batch order,
so a user's offsets follow the order its events were submitted in. On a Redis
Cluster a call goes to one master: :func:`partition` splits a batch into one call per
master (a user's events all in one), :func:`in_request_order` puts the answers back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

import msgspec

from runwire.engines.base import StoredEvent
from runwire.events import Event
from runwire.ids import Epoch, UserId
from runwire.redis.keys import live_channel, stream_keys

_SEQ_FIELD = re.compile(rb'"seq":\d+')
"""An envelope's ``seq`` field: its first match in the part after the offset (the
``run_id`` and ``thread_id`` before it are JSON strings, which cannot hold it)."""

__all__ = [
    "PublishRequest",
    "in_request_order",
    "partition",
    "publish_call",
    "stored_of",
]


class PublishRequest(msgspec.Struct, frozen=True, gc=False):
    """One event to publish, already encoded around its (unknown) offset.

    Not tracked by the garbage collector (``gc=False``: it holds a string, an
    untracked event and bytes, so it can be in no cycle): thousands are in flight
    under load, each for milliseconds, and tracked ones would be promoted and bring
    on full collections."""

    user_id: UserId
    event: Event
    prefix: bytes
    suffix: bytes


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
    requests: list[PublishRequest], header: list[Any]
) -> tuple[list[str], list[Any], list[list[int]]]:
    """``(keys, args, groups)`` for one script call storing ``requests``.

    ``header``: the script's first nine arguments (clock, bounds, epoch candidate);
    ``groups``: the request indexes of each group, for :func:`stored_of`.
    """
    keys: list[str] = []
    args: list[Any] = list(header)
    order: list[list[int]] = []
    for user_id, indexes in _groups(requests).items():
        runs: dict[str, None] = {}
        events: list[Any] = []
        for index in indexes:
            request = requests[index]
            event = request.event
            runs[event.run_id] = None
            seq = -event.seq if event.is_terminal else event.seq  # see scripts.PUBLISH
            events += (event.run_id, seq, request.prefix, request.suffix)
        keys += stream_keys(user_id)
        args.append(live_channel(user_id))
        args += runs
        args.append("")
        args += events
        args.append("")
        order.append(indexes)
    return keys, args, order


def stored_of(
    requests: list[PublishRequest], reply: Any, groups: list[list[int]]
) -> tuple[list[StoredEvent], list[bool]]:
    """The script's reply as one :class:`StoredEvent` per request, in request order,
    and whether each was a duplicate (stored already: then it has the offset of its
    run's last stored event)."""
    results: list[StoredEvent | None] = [None] * len(requests)
    duplicates = [False] * len(requests)
    for indexes, group in zip(groups, reply, strict=True):
        epoch = Epoch(group[0].decode())
        for position, index in enumerate(indexes):
            request = requests[index]
            raw = group[1 + 2 * position]  # the offset, as the script's string
            if isinstance(raw, int):
                raw = str(raw).encode()
            stored_as = int(group[2 + 2 * position])
            event, suffix = request.event, request.suffix
            if stored_as < 0:  # a terminal event stored with another seq (scripts.PUBLISH)
                event = msgspec.structs.replace(event, seq=-stored_as)
                suffix = _SEQ_FIELD.sub(b'"seq":%d' % -stored_as, suffix, count=1)
            duplicate = stored_as == 1
            frame = request.prefix + raw + suffix
            results[index] = StoredEvent(
                request.user_id, epoch, int(raw), frame, event, duplicate=duplicate
            )
            duplicates[index] = duplicate
    return results, duplicates  # type: ignore[return-value]  # each index is in a group


def partition(
    requests: list[PublishRequest], key_of: Callable[[UserId], Hashable]
) -> list[list[int]]:
    """The request indexes of each part (the users with one ``key_of``: the master
    serving their slot), in batch order; a user's requests all in one part."""
    parts: dict[Hashable, list[int]] = {}
    seen: dict[UserId, list[int]] = {}
    for index, request in enumerate(requests):
        part = seen.get(request.user_id)
        if part is None:
            part = seen[request.user_id] = parts.setdefault(key_of(request.user_id), [])
        part.append(index)
    return list(parts.values())


def in_request_order(
    count: int, parts: list[list[int]], answers: list[tuple[list[StoredEvent], list[bool]]]
) -> tuple[list[StoredEvent], list[bool]]:
    """The answers (:func:`stored_of`) of the calls for :func:`partition`'s parts, as
    one answer in request order."""
    results: list[StoredEvent | None] = [None] * count
    duplicates = [False] * count
    for indexes, (stored, duplicated) in zip(parts, answers, strict=True):
        for index, result, duplicate in zip(indexes, stored, duplicated, strict=True):
            results[index] = result
            duplicates[index] = duplicate
    return results, duplicates  # type: ignore[return-value]  # every index is in one part
