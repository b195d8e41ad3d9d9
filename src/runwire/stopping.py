"""Stopping on a signal, even when the event loop is stuck.

A signal handler installed with ``loop.add_signal_handler`` runs *on* the loop: if
an agent blocks the loop, SIGTERM is never handled and only SIGKILL ends the
process. Here SIGINT and SIGTERM are blocked in every thread and received by one
dedicated thread (``signal.sigwait``), which asks the loop to stop gracefully and
arms a deadline: if the process has not exited ``grace_s`` + :data:`FORCE_AFTER_S`
seconds after the signal, it exits at once with status 1. A second signal forces
the exit immediately.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

__all__ = ["FORCE_AFTER_S", "block_stop_signals", "until_signalled"]

FORCE_AFTER_S = 2.0
"""Seconds past the grace period before a stop that did not finish is forced."""

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _force_exit(reason: str) -> None:
    sys.stderr.write(f"runwire: {reason}; exiting now\n")
    sys.stderr.flush()
    os._exit(1)


def block_stop_signals() -> None:
    """Block SIGINT and SIGTERM in this thread and every thread started after it.

    Call it first thing in the main thread (before the event loop and any thread
    exist): a thread that does not block them could receive them and die by the
    default action instead of stopping gracefully.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


async def until_signalled(grace_s: float) -> None:
    """Return on the first SIGINT or SIGTERM; from then on the process exits within
    ``grace_s + FORCE_AFTER_S`` seconds whatever the loop is doing.

    :func:`block_stop_signals` must have been called before any thread started.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    block_stop_signals()  # (again: harmless) this thread must not take them itself

    def wait_for_signals() -> None:
        signal.sigwait(_SIGNALS)
        timer = threading.Timer(
            grace_s + FORCE_AFTER_S,
            _force_exit,
            (f"did not stop within {grace_s + FORCE_AFTER_S:g} s of the signal",),
        )
        timer.daemon = True
        timer.start()
        loop.call_soon_threadsafe(stop.set)
        signal.sigwait(_SIGNALS)
        _force_exit("second signal")

    threading.Thread(target=wait_for_signals, name="runwire-signals", daemon=True).start()
    await stop.wait()
