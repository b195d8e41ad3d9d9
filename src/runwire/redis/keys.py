"""Every Redis key and channel name runwire uses, in one place.

A user's keys share the hash tag ``{<user_id>}``, so everything the publish script
touches for one user is in one slot (Redis Cluster ready).

==================================  =============================================
``rw:{u}:meta``                      hash: the user's stream epoch, last offset,
                                     history bytes, and per run ``r:<run>`` /
                                     ``o:<run>`` / ``t:<run>`` its last stored
                                     ``seq``, that event's offset and when (the
                                     publish dedupe; fields written by the script)
``rw:{u}:stream``                    the user's history (stream)
``rw:{u}:live``                      the user's live channel
``rw:{u}:snap:<run>`` / ``:snaps``   run snapshots and their index
``rw:{u}:msg:<id>`` / ``:active``    idempotency keys, active runs (workers)
``rw:{u}:run:<run>``                 the worker that took a run
``rw:worker:<name>``                 a worker's heartbeat
``rw:{nodes}:lease:<node>``          a gateway node's lease (``local`` runs)
``rw:{nodes}:runs:<node>``           the runs a node executes (hash run -> owner)
``rw:{nodes}:closing:<node>``        lost nodes' runs a node claimed to end (hash)
``rw:{nodes}:all``                   the nodes holding a lease (set)
``rw:runs``                          the run queue (stream, group ``workers``)
``rw:cancel``                        cancel requests to workers (channel)
``rw:control``                       commands to every node (channel)
``rw:node``                          a node's own channel (subscription liveness)
==================================  =============================================
"""

from __future__ import annotations

from runwire.ids import UserId

__all__ = [
    "CANCEL_CHANNEL",
    "CONTROL_CHANNEL",
    "NODES_KEY",
    "NODE_CHANNEL",
    "RUNS_STREAM",
    "active_runs_key",
    "live_channel",
    "message_key",
    "node_closing_key",
    "node_lease_key",
    "node_runs_key",
    "run_owner_key",
    "snapshot_index_key",
    "snapshot_key",
    "stream_keys",
    "user_of_channel",
    "worker_key",
]

RUNS_STREAM = "rw:runs"
CANCEL_CHANNEL = "rw:cancel"
CONTROL_CHANNEL = "rw:control"
NODE_CHANNEL = "rw:node"
NODES_KEY = "rw:{nodes}:all"
"""The gateway nodes holding a lease; every lease key shares the ``{nodes}`` tag, so
the claim script touches one slot."""


def stream_keys(user_id: UserId) -> tuple[str, str]:
    """The user's meta hash and stream keys."""
    base = f"rw:{{{user_id}}}"
    return f"{base}:meta", f"{base}:stream"


def live_channel(user_id: UserId) -> str:
    return f"rw:{{{user_id}}}:live"


def user_of_channel(channel: bytes) -> UserId | None:
    """The user of a live channel (``rw:{<user>}:live``), ``None`` for any other."""
    if channel.startswith(b"rw:{") and channel.endswith(b"}:live"):
        return UserId(channel[4:-6].decode())
    return None


def snapshot_key(user_id: UserId, run_id: str) -> str:
    return f"rw:{{{user_id}}}:snap:{run_id}"


def snapshot_index_key(user_id: UserId) -> str:
    return f"rw:{{{user_id}}}:snaps"


def message_key(user_id: UserId, message_id: str) -> str:
    return f"rw:{{{user_id}}}:msg:{message_id}"


def active_runs_key(user_id: UserId) -> str:
    return f"rw:{{{user_id}}}:active"


def run_owner_key(user_id: UserId, run_id: str) -> str:
    """The worker that took a run (in the user's slot)."""
    return f"rw:{{{user_id}}}:run:{run_id}"


def worker_key(name: str) -> str:
    return f"rw:worker:{name}"


def node_lease_key(node: str) -> str:
    return f"rw:{{nodes}}:lease:{node}"


def node_runs_key(node: str) -> str:
    return f"rw:{{nodes}}:runs:{node}"


def node_closing_key(node: str) -> str:
    return f"rw:{{nodes}}:closing:{node}"
