"""Text, JSON and SARIF renderings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ssotcheck.cli import main
from ssotcheck.findings import RULES
from ssotcheck.report import render_json, render_sarif, render_text
from ssotcheck.testing import run

FIXTURES = Path(__file__).resolve().parent / "fixtures"

VIOLATING = FIXTURES / "violating" / "pyproject.toml"
LINE = re.compile(r"^(\S+):(\d+):(\d+): (SSOT00\d) \[([a-z-]+)\] .+ \(hint: .+\)$")


def test_text_lines_are_sorted_and_well_formed() -> None:
    lines = render_text(run(VIOLATING)).splitlines()
    *body, summary = lines
    parsed = []
    for line in body:
        m = LINE.match(line)
        assert m, line
        assert RULES[m.group(4)].name == m.group(5)
        parsed.append((m.group(1), int(m.group(2)), int(m.group(3))))
    assert parsed == sorted(parsed)
    assert summary.startswith("Found 18 findings in 10 files")


def test_json_is_a_list_of_complete_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(VIOLATING), "--no-cache", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, list) and len(data) == 18
    keys = {"rule", "name", "path", "line", "col", "message", "hint", "symbol"}
    for item in data:
        assert set(item) == keys
        assert isinstance(item["line"], int) and item["line"] >= 1
        assert isinstance(item["col"], int) and item["col"] >= 1
        assert item["hint"] and str(item["line"]) not in item["symbol"].split(":")
    assert json.loads(render_json(run(FIXTURES / "clean" / "pyproject.toml"))) == []


def test_sarif_has_required_structure() -> None:
    report = run(VIOLATING)
    log = json.loads(render_sarif(report))
    assert log["version"] == "2.1.0"
    assert "sarif-2.1.0" in log["$schema"]
    [run_] = log["runs"]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "ssotcheck"
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    for rule in driver["rules"]:
        assert rule["name"] and rule["shortDescription"]["text"] and rule["help"]["text"]
    assert len(run_["results"]) == len(report.findings)
    for result, finding in zip(run_["results"], report.findings, strict=True):
        assert result["ruleId"] == finding.rule
        assert driver["rules"][result["ruleIndex"]]["id"] == finding.rule
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == finding.path
        assert loc["region"]["startLine"] == finding.line
        assert loc["region"]["startColumn"] == finding.col
        assert result["partialFingerprints"]["ssotcheck/v1"] == "|".join(finding.key)
    assert run_["invocations"][0]["executionSuccessful"] is True
