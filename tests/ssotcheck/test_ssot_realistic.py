"""The realistic fixture: a tree shaped like a large agent backend's.

Every rule fires where a ``# expect:`` label says and stays silent on every
``# silent:`` near miss; the precision/recall table in docs/ssotcheck.md is the
one computed here; ``ssotcheck discover`` proposes the WebSocket manager first.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from ssotcheck.cli import main
from ssotcheck.config import parse_config
from ssotcheck.findings import RULES
from ssotcheck.testing import read_labels, run, score, score_table

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "fixtures" / "realistic" / "pyproject.toml"
DOC = HERE.parents[1] / "docs" / "ssotcheck.md"
START, END = "<!-- realistic-table:start -->\n", "<!-- realistic-table:end -->"


def test_every_rule_fires_exactly_where_labelled() -> None:
    report = run(CONFIG)
    labels = read_labels(CONFIG)
    got = {(f.rule, f.path, f.line) for f in report.findings}
    assert len(got) == len(report.findings), "a finding was reported twice"
    assert sorted(got - labels.expected) == [], "false positives"
    assert sorted(labels.expected - got) == [], "false negatives"
    assert sorted(got & labels.silent) == [], "a near miss was reported"
    assert report.errors == [] and report.notices == []
    assert report.inline == 1  # the compat name kept with a reason


def test_the_fixture_exercises_every_rule_both_ways() -> None:
    labels = read_labels(CONFIG)
    assert {rule for rule, _, _ in labels.expected} == set(RULES)
    assert {rule for rule, _, _ in labels.silent} == set(RULES)


def test_the_documented_table_is_the_computed_one() -> None:
    table = score_table(score(run(CONFIG).findings, read_labels(CONFIG)))
    text = DOC.read_text(encoding="utf-8")
    documented = text[text.index(START) + len(START) : text.index(END)]
    assert documented == table, "update docs/ssotcheck.md with:\n" + table


def _without_concepts(tmp_path: Path) -> Path:
    shutil.copytree(CONFIG.parent / "src", tmp_path / "src")
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.ssotcheck]\npaths = ["src"]\n', encoding="utf-8")
    return config


def test_discover_proposes_the_websocket_manager_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _without_concepts(tmp_path)
    assert main(["discover", "--config", str(config), "--no-cache"]) == 0
    out = capsys.readouterr().out
    table = tomllib.loads(out)["tool"]["ssotcheck"]
    first, second = table["concepts"][:2]
    assert first == {
        "name": "web_socket_manager",
        "canonical": "backend.app.websocket_core.unified_manager:UnifiedWebSocketManager",
        "public": "backend.app.websocket_core.websocket_manager",
        "factory": "backend.app.websocket_core.websocket_manager_factory:create_websocket_manager",
        "patterns": ["*WebSocketManager*"],
    }
    assert second["canonical"] == "backend.app.agents.execution_engine:ExecutionEngine"
    assert table["config_module"] == "backend.app.config"
    block = out[out.index("# 1. web_socket_manager") : out.index("# 2.")]
    for evidence in (
        "EmergencyWebSocketManager (name",
        "IsolatedWebSocketManager (name",
        "SessionHub (overlap",
        "WebSocketManagerMode (enum)",
        "WebSocketManagerProtocol (protocol)",
        "WebSocketManagerFactory (role Factory)",
        "WebSocketManagerError (exception)",
        "create_websocket_manager (called 3 times)",
    ):
        assert evidence in block, evidence
    assert "DatabaseConnectionManager" not in out


def test_the_proposed_block_is_ready_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _without_concepts(tmp_path)
    main(["discover", "--config", str(config), "--no-cache", "--top", "1"])
    proposed = capsys.readouterr().out
    parse_config(tomllib.loads(proposed)["tool"]["ssotcheck"], tmp_path)
    config.write_text(proposed, encoding="utf-8")
    report = run(config)
    rules = {f.rule for f in report.findings}
    assert {"SSOT001", "SSOT002", "SSOT003", "SSOT004", "SSOT005"} <= rules
    assert report.exit_code == 1
