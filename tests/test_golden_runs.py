"""One run model, two implementations: the server's RunStore and the page's runstore.js
fold the same golden event sequences to the same snapshots; runwire.js's protocol
constants are Python's."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runwire.auth import BEARER_PROTOCOL_PREFIX, SUBPROTOCOL
from runwire.events import EVENT_TYPES, TERMINAL_EVENT_TYPES, Event, EventData
from runwire.exceptions import _RECONNECT, should_reconnect
from runwire.ids import UserId
from runwire.runs import RunStore
from runwire.tokens import EXPIRED_REASON

GOLDEN = Path(__file__).parent / "golden" / "runs.json"
CASES: list[dict[str, Any]] = json.loads(GOLDEN.read_text())["cases"]
_PAYLOADS: dict[str, type[Any]] = {name: cls for cls, name in EVENT_TYPES.items()}


def _event(envelope: dict[str, Any]) -> Event:
    data: EventData = msgspec.convert(envelope["data"], _PAYLOADS[envelope["type"]])
    return Event.of(
        data,
        run_id=envelope["run_id"],
        thread_id=envelope["thread_id"],
        seq=envelope["seq"],
        ts=envelope["ts"],
    )


def _compared(run: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """``run`` restricted to the fields golden snapshots pin (tool calls included)."""
    picked = {key: run[key] for key in expected}
    if "tools" in expected:
        fields = expected["tools"][0].keys() if expected["tools"] else ()
        picked["tools"] = [{key: call[key] for key in fields} for call in run["tools"]]
    return picked


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_server_store_folds_each_sequence_to_its_snapshot(case: dict[str, Any]) -> None:
    store = RunStore(runs_per_user=10, max_users=10)
    user = UserId("golden")
    for envelope in case["events"]:
        store.observe(user, envelope["offset"], _event(envelope))
    (snapshot,) = store.runs(user)
    folded = msgspec.to_builtins(snapshot)
    assert _compared(folded, case["expected"]) == case["expected"]


@cache
def _node_fold() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the page's JavaScript cannot be checked")
    web = Path(str(resources.files("runwire.web")))
    script = Path(__file__).parent / "web" / "fold_golden.mjs"
    result = subprocess.run(
        [node, str(script), str(web), str(GOLDEN)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    folded: dict[str, Any] = json.loads(result.stdout)
    return folded


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case["name"] for case in CASES])
def test_the_page_folds_each_sequence_to_the_same_snapshot(index: int) -> None:
    case = CASES[index]
    run = _node_fold()["runs"][index]
    assert _compared(run, case["expected"]) == case["expected"]


def test_the_page_lists_the_threads_of_its_runs_as_the_server_does() -> None:
    """The sidebar's thread list and counts come from the runs the page holds
    (runstore.js threadsOf), folded as RunStore.threads() folds them."""
    store = RunStore(runs_per_user=len(CASES), max_users=1)
    user = UserId("golden")
    for index, case in enumerate(CASES):  # as fold_golden.mjs spreads them
        for envelope in case["events"]:
            shifted = {
                **envelope,
                "run_id": f"{envelope['run_id']}_{index}",
                "thread_id": f"{envelope['thread_id']}_{index % 2}",
                "offset": envelope["offset"] + index * 1000,
                "ts": envelope["ts"] + index * 10_000,
            }
            store.observe(user, shifted["offset"], _event(shifted))
    expected = [msgspec.to_builtins(summary) for summary in store.threads(user)]
    assert len(expected) == 2 and sum(thread["runs"] for thread in expected) == len(CASES)
    assert _node_fold()["threads"] == expected


def test_runwire_js_constants_are_pythons() -> None:
    constants = _node_fold()["constants"]
    assert constants["PROTOCOL"] == SUBPROTOCOL
    assert constants["BEARER_PREFIX"] == BEARER_PROTOCOL_PREFIX
    assert constants["EVENT_TYPES"] == list(EVENT_TYPES.values())
    assert set(constants["TERMINAL_EVENT_TYPES"]) == TERMINAL_EVENT_TYPES
    assert constants["TOKEN_EXPIRED_REASON"] == EXPIRED_REASON
    fatal = {code for code in _RECONNECT if not should_reconnect(code)}
    assert set(constants["FATAL_CLOSE_CODES"]) == fatal
