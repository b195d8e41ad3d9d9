"""No second manager, ever: one definition per concept and canonical imports everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.ssot._support import (
    DOCS,
    PACKAGE,
    REPO,
    TESTS,
    assert_none,
    broken_tree,
    concept_import_violations,
    docs_import_violations,
    python_files,
    repo_findings,
    ssot_findings,
)

# -- one definition per concept ------------------------------------------------------


def test_prevent_future_websocket_manager_duplication(tmp_path: Path) -> None:
    assert_none(repo_findings(tmp_path, ["SSOT001", "SSOT002"], [PACKAGE]))


def test_duplication_check_fails_on_a_renamed_copy_of_the_manager(tmp_path: Path) -> None:
    manager_source = (PACKAGE / "manager.py").read_text(encoding="utf-8")
    copy = manager_source.replace("WebSocketManager", "ClientHub").replace(
        "create_manager", "create_hub"
    )
    config = broken_tree(
        tmp_path,
        {
            "src/runwire/hub.py": copy,
            "src/runwire/legacy.py": "class LegacyWebSocketManager:\n    pass\n",
        },
    )
    assert ssot_findings(config, ["SSOT001", "SSOT002"]) == [
        "SSOT001 src/runwire/legacy.py:1 LegacyWebSocketManager",
        f"SSOT002 src/runwire/hub.py:{_line_of(copy, 'class ClientHub')} ClientHub~manager",
    ]


def _line_of(source: str, text: str) -> int:
    return source[: source.index(text)].count("\n") + 1


# -- canonical imports in code, tests and docs --------------------------------------


def import_pattern_violations(src: Path, tests: Path, docs: list[Path]) -> list[str]:
    found = []
    for label, tree in python_files(src):
        found += concept_import_violations(label, tree, inside_package=True)
    for label, tree in python_files(tests):
        found += concept_import_violations(label, tree, inside_package=False)
    for document in docs:
        found += docs_import_violations(document.name, document.read_text(encoding="utf-8"))
    return found


def documents() -> list[Path]:
    return [p for p in [REPO / "README.md", *sorted(DOCS.glob("*.md"))] if p.is_file()]


def test_import_pattern_violation_detection(tmp_path: Path) -> None:
    docs = documents()
    assert REPO / "README.md" in docs
    assert_none(import_pattern_violations(PACKAGE, TESTS, docs))
    assert_none(repo_findings(tmp_path, ["SSOT004"], [PACKAGE, TESTS]))


def test_import_pattern_check_fails_on_non_canonical_imports(tmp_path: Path) -> None:
    broken_tree(
        tmp_path,
        {
            "tests/test_legacy.py": (
                "from runwire import WebSocketManager\n"
                "from runwire.config import Settings\n"
                "from runwire.engines.base import Engine\n"
            ),
            "docs/guide.md": (
                "Embed it:\n\n```python\nfrom runwire.manager import WebSocketManager\n```\n\n"
                "Or:\n\n```python\n>>> from runwire import Settings\n```\n"
            ),
        },
    )
    found = import_pattern_violations(
        tmp_path / "src" / "runwire", tmp_path / "tests", [tmp_path / "docs" / "guide.md"]
    )
    assert found == [
        "tests/test_legacy.py:2 from runwire.config import Settings"
        " (use: from runwire import Settings)",
        "tests/test_legacy.py:3 from runwire.engines.base import Engine"
        " (use: from runwire.engines import Engine)",
        "guide.md:4 from runwire.manager import WebSocketManager"
        " (use: from runwire import WebSocketManager)",
    ]
    assert ast.parse("from runwire import WebSocketManager")  # the canonical form is silent
