"""Prometheus metrics of one gateway (its own registry, so gateways never share counters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["CLOSE_CODE_LABELS", "RUN_STATUS_LABELS", "Metrics", "Tally", "label_of"]

CLOSE_CODE_LABELS = frozenset(
    {str(code) for code in (*range(1000, 1004), 1005, 1006, *range(1007, 1015))}
    | {"4400", "4401", "4403", "4409", "4429"}
)
"""The ``code`` label values of ``runwire_connections_closed``: the RFC 6455 / IANA
codes and runwire's own; any other (an application code 3000-4999 a client chose) is
``other``, so clients cannot add label values."""

RUN_STATUS_LABELS = frozenset(
    {"completed", "cancelled", "shutdown", "timeout", "agent_failed", "event_rejected"}
    | {"worker_lost", "interrupted", "node_lost"}
)
"""The ``status`` label values of ``runwire_runs_finished``; any other is ``other``."""


def label_of(value: object, allowed: frozenset[str]) -> str:
    """``value`` as a label if it is one of ``allowed``, else ``other``: labels come
    only from fixed sets, so no client or agent can grow the metrics without bound."""
    text = str(value)
    return text if text in allowed else "other"


class Tally:
    """A lock-free count for the per-event path, added to its counter at every scrape.

    ``prometheus_client`` takes a lock on every ``inc``; the delivery path instead adds
    to ``pending`` (a plain integer, event-loop thread only), and every collection of
    the registry first moves ``pending`` into the counter, so a scrape is always exact.
    """

    __slots__ = ("counter", "pending")

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.pending = 0

    def sync(self) -> None:
        """Move the pending count into the Prometheus counter."""
        pending = self.pending
        if pending:
            self.pending = 0
            self.counter.inc(pending)


class _SyncTallies(Collector):
    """Registered first, so every collection syncs the tallies before reading counters."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def collect(self) -> Iterable[Metric]:
        for tally in self.tallies:
            tally.sync()
        return []


class Metrics:
    """Every metric runwire exports; names are documented in docs/operations.md."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._sync = _SyncTallies()
        r.register(self._sync)
        self.connections_opened = Counter(
            "runwire_connections_opened", "Authenticated connections opened.", registry=r
        )
        self.connections_closed = Counter(
            "runwire_connections_closed",
            "Connections closed, by close code (1006: dropped without a close frame).",
            ["code"],
            registry=r,
        )
        self.connections_rejected = Counter(
            "runwire_connections_rejected",
            "Connections refused, by reason (auth, too_many_connections, shutting_down).",
            ["reason"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "runwire_token_refreshes",
            "In-band token refreshes, by outcome (ok; refused: the socket closed 4401).",
            ["outcome"],
            registry=r,
        )
        self.events_published = Counter(
            "runwire_events_published", "Events stored in users' streams.", registry=r
        )
        self.events_delivered = Counter(
            "runwire_events_delivered", "Event frames queued to connections.", registry=r
        )
        self.frames_written = Counter(
            "runwire_frames_written", "Frames written to sockets.", registry=r
        )
        self.transport_writes = Counter(
            "runwire_transport_writes", "Socket writes (one per flush per connection).", registry=r
        )
        self.slow_consumer_closes = Counter(
            "runwire_slow_consumer_closes", "Connections closed with 4409.", registry=r
        )
        self.deltas_coalesced = Counter(
            "runwire_deltas_coalesced",
            "Queued agent_message_delta frames merged into a neighbour for a slow socket.",
            registry=r,
        )
        self.client_errors = Counter(
            "runwire_client_errors", "Error frames sent to clients, by code.", ["code"], registry=r
        )
        self.runs_started = Counter("runwire_runs_started", "Agent runs started.", registry=r)
        self.runs_finished = Counter(
            "runwire_runs_finished", "Agent runs finished, by status.", ["status"], registry=r
        )
        self.event_loop_lag = Histogram(
            "runwire_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 0.25 s): time it was held.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.slow_steps = Counter(
            "runwire_agent_slow_steps",
            "Agent run steps that held the event loop longer than slow_step_warning_s.",
            registry=r,
        )
        self._tallies()

    def _tallies(self) -> None:
        # Hot-path counts (per event or per flush), lock-free; see Tally.
        self.published = self.tally(self.events_published)
        self.delivered = self.tally(self.events_delivered)
        self.written = self.tally(self.frames_written)
        self.writes = self.tally(self.transport_writes)

    def tally(self, counter: Counter) -> Tally:
        """A lock-free :class:`Tally` feeding ``counter`` (one of this registry's)."""
        tally = Tally(counter)
        self._sync.tallies.append(tally)
        return tally

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
