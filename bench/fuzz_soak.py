"""``python -m bench.fuzz_soak``: the wire fuzz of tests/test_fuzz.py, soaked.

Sends ``--frames`` (default 200,000) mutated client frames (tests/wirefuzz.py: bit
flips, truncation, opcode / RSV / FIN / mask / length changes, garbage and deeply
nested JSON, invalid UTF-8) over many short connections to one gateway (memory
engine, uvloop when installed), in rounds of ``--round`` frames with a fresh seed
each. Every frame's outcome is checked against the documented one. After each round
it prints frames/s and the process RSS (after a garbage collection); at the end the
outcome counts, the log records at ERROR (there must be none) and whether a control
user is still served.

Gateway and clients share one process and one event loop, so the frames/s are those
of both together (the client is the heavier half). Exit status 1 on any mismatch,
ERROR log record, residue or control failure.

Options: ``--frames N``, ``--round N``, ``--seed S``, ``--concurrency C``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.helpers import (  # noqa: E402
    collect_run,
    connect,
    make_settings,
    scripted_agent,
    wait_until,
)
from tests.wirefuzz import fuzz  # noqa: E402

from runwire import Gateway  # noqa: E402


class _ErrorCounter(logging.Handler):
    """Counts (and keeps the first few of) records at ERROR or with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.count += 1
            if len(self.first) < 5:
                self.first.append(f"{record.name}: {record.getMessage()}")


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak(frames: int, round_frames: int, seed: int, concurrency: int) -> int:
    errors = _ErrorCounter()
    logging.getLogger().addHandler(errors)
    settings = make_settings(
        max_frame_bytes=1024,
        client_messages_per_s=1e9,
        max_connections_per_user=1000,
        close_timeout_s=2.0,
    )
    gateway = Gateway(settings, agent=scripted_agent)
    await gateway.start()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    connections = sent = 0
    try:
        print(f"fuzz soak: {frames:,} frames, seed {seed}, {concurrency} concurrent sockets")
        print(f"  RSS at start: {_rss_mib():.1f} MiB")
        started = time.perf_counter()
        baseline: float | None = None
        rounds = -(-frames // round_frames)
        for number in range(rounds):
            size = min(round_frames, frames - sent)
            t0 = time.perf_counter()
            report = await fuzz(gateway, size, seed=seed + number, concurrency=concurrency)
            elapsed = time.perf_counter() - t0
            sent += report.frames
            connections += report.connections
            outcomes.update(report.outcomes)
            failures.extend(report.failures)
            gc.collect()
            rss = _rss_mib()
            baseline = rss if baseline is None else baseline
            print(
                f"  round {number + 1}/{rounds}: {report.frames:,} frames in {elapsed:.1f} s"
                f" = {report.frames / elapsed:,.0f} frames/s,"
                f" {report.connections / elapsed:,.0f} connections/s; RSS {rss:.1f} MiB"
            )
            if failures:
                break
        total = time.perf_counter() - started
        control = await _control_user_served(gateway)
        stats = gateway.manager.stats()
        print(f"  total: {sent:,} frames, {connections:,} connections in {total:.1f} s")
        print(f"         {sent / total:,.0f} frames/s, {connections / total:,.0f} connections/s")
        final = _rss_mib()
        print(
            f"  RSS: {final:.1f} MiB at the end, {final - (baseline or final):+.1f} MiB"
            " since the first round"
        )
        print("  outcomes: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()))
        print(f"  ERROR log records: {errors.count}", *errors.first, sep="\n    ")
        print(f"  control user served: {control}; residue: {stats}")
    finally:
        await gateway.stop()
        logging.getLogger().removeHandler(errors)
    for failure in failures[:10]:
        print("MISMATCH", failure)
    residue = stats["connections"] or stats["users"] or stats["queued_frames"]
    return 1 if failures or errors.count or not control or residue else 0


async def _control_user_served(gateway: Gateway) -> bool:
    """After the fuzz: a well-behaved user still gets a pong and a complete run."""
    await wait_until(lambda: not gateway.manager.connection_count, 10, "fuzz sockets to close")
    async with connect(gateway, "control") as control:
        await control.ping()
        ack = await control.send_message("still serving?")
        frames = await collect_run(control, ack["run_id"])
    await wait_until(lambda: not gateway.manager.connection_count, 10, "the control socket")
    return frames[-1]["type"] == "agent_completed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--round", type=int, default=20_000, dest="round_frames")
    parser.add_argument("--seed", type=int, default=61_455)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    coroutine = soak(args.frames, args.round_frames, args.seed, args.concurrency)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


if __name__ == "__main__":
    sys.exit(main())
