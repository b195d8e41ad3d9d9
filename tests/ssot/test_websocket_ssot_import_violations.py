"""One import path per concept, no cycles, no aliases: statically and at runtime."""

from __future__ import annotations

import importlib
import pkgutil
import types
from pathlib import Path

import runwire
from runwire import WebSocketManager
from tests.ssot._support import (
    PACKAGE,
    TESTS,
    after_future_import,
    aliases,
    assert_none,
    broken_tree,
    concepts,
    exposures,
    import_alone_failures,
    module_from_source,
    repo_findings,
    ssot_findings,
)

MANAGER_HOMES = {"runwire": ["WebSocketManager"], "runwire.manager": ["WebSocketManager"]}


def runwire_module_names() -> list[str]:
    """Every module of the runwire package except ``__main__`` (a script: it runs the CLI)."""
    found = [info.name for info in pkgutil.walk_packages(runwire.__path__, "runwire.")]
    return ["runwire", *sorted(name for name in found if not name.endswith(".__main__"))]


def runwire_modules() -> list[types.ModuleType]:
    return [importlib.import_module(name) for name in runwire_module_names()]


def concept_classes() -> list[type]:
    classes = []
    for concept in concepts():
        cls = getattr(importlib.import_module(concept.module), concept.cls)
        assert isinstance(cls, type), concept
        classes.append(cls)
    return classes


# -- one public path ------------------------------------------------------------


def test_only_one_websocket_manager_import_path_allowed(tmp_path: Path) -> None:
    assert runwire.WebSocketManager is importlib.import_module("runwire.manager").WebSocketManager
    modules = runwire_modules()
    assert len(modules) > 10  # the walk really saw the package
    assert exposures(modules, WebSocketManager) == MANAGER_HOMES
    assert_none(repo_findings(tmp_path, ["SSOT004"], [PACKAGE, TESTS]))


def test_only_one_import_path_check_fails_on_a_second_path(tmp_path: Path) -> None:
    compat = module_from_source(
        "runwire_compat",
        "from runwire import WebSocketManager\n__all__ = ['WebSocketManager']\n",
    )
    assert exposures([*runwire_modules(), compat], WebSocketManager) == {
        **MANAGER_HOMES,
        "runwire_compat": ["WebSocketManager"],
    }
    config = broken_tree(
        tmp_path,
        {"tests/test_legacy.py": "from runwire.manager import WebSocketManager\n"},
    )
    assert ssot_findings(config, ["SSOT004"]) == [
        "SSOT004 tests/test_legacy.py:1 runwire.manager.WebSocketManager"
    ]


# -- no import cycles --------------------------------------------------------------


def test_circular_import_prevention(tmp_path: Path) -> None:
    assert_none(repo_findings(tmp_path, ["SSOT006"], [PACKAGE]))
    names = runwire_module_names()
    assert len(names) > 10
    assert import_alone_failures(names) == {}


def test_circular_import_checks_fail_on_a_cycle(tmp_path: Path) -> None:
    # events <-> manager: events now imports the manager, which imports events.
    config = broken_tree(
        tmp_path,
        {"src/runwire/events.py": after_future_import("from runwire.manager import Connection")},
    )
    [cycle] = ssot_findings(config, ["SSOT006"])
    assert cycle.startswith("SSOT006 src/runwire/") and "runwire.events" in cycle
    assert "runwire.manager" in cycle
    modules = ["runwire.events", "runwire.manager", "runwire.ids"]
    failures = import_alone_failures(modules, [tmp_path / "src"])
    # Both ends of the cycle fail to import alone; a module outside it still imports.
    assert set(failures) == {"runwire.events", "runwire.manager"}
    assert all("ImportError" in error for error in failures.values()), failures


# -- no aliases --------------------------------------------------------------------


def test_alias_confusion_detection(tmp_path: Path) -> None:
    assert_none(repo_findings(tmp_path, ["SSOT003"], [PACKAGE, TESTS]))
    classes = concept_classes()
    assert len(classes) == len(concepts()) >= 5
    assert_none(aliases(runwire_modules(), classes))


def test_alias_checks_fail_on_an_alias(tmp_path: Path) -> None:
    legacy = module_from_source(
        "runwire_legacy", "from runwire import WebSocketManager as ConnectionHub\n"
    )
    assert aliases([*runwire_modules(), legacy], concept_classes()) == [
        "runwire_legacy.ConnectionHub -> WebSocketManager"
    ]
    config = broken_tree(
        tmp_path,
        {
            "src/runwire/compat.py": (
                "from runwire.manager import WebSocketManager\n\nConnectionHub = WebSocketManager\n"
            )
        },
    )
    assert ssot_findings(config, ["SSOT003"]) == [
        "SSOT003 src/runwire/compat.py:3 <module>:ConnectionHub=manager"
    ]
