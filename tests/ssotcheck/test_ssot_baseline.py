"""Baselines: keyed without line numbers, suppress, report stale, only shrink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssotcheck import ConfigError
from ssotcheck.cli import main
from ssotcheck.testing import make_project, run, write

APP = """\
import os

from wire import WebSocketManager

TOKEN = os.getenv("TOKEN")


def build() -> object:
    return WebSocketManager(1), WebSocketManager(2)
"""


def _cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--no-cache", *args])


def test_written_baseline_has_no_line_numbers(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/app/main.py": APP})
    base = tmp_path / "baseline.json"
    assert _cli(config, "--write-baseline", str(base)) == 0
    data = json.loads(base.read_text())
    assert {tuple(sorted(e)) for e in data["entries"]} == {("count", "path", "rule", "symbol")}
    by_rule = {e["rule"]: e for e in data["entries"]}
    assert by_rule["SSOT005"]["count"] == 2
    assert by_rule["SSOT005"]["symbol"] == "build:manager"
    assert all("9" not in e["symbol"] for e in data["entries"])


def test_baseline_suppresses_even_after_code_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_project(tmp_path, {"src/app/main.py": APP})
    base = tmp_path / "baseline.json"
    assert _cli(config, "--write-baseline", str(base)) == 0
    assert _cli(config, "--baseline", str(base)) == 0
    write(tmp_path, "src/app/main.py", '"""Moved."""\n\n\n# padding\n' + APP)
    capsys.readouterr()
    assert _cli(config, "--baseline", str(base)) == 0
    assert "3 suppressed by baseline" in capsys.readouterr().out
    report = run(config, baseline=base)
    assert report.findings == [] and report.suppressed == 3 and report.stale == []


def test_new_finding_is_not_hidden_by_baseline(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"src/app/main.py": APP})
    base = tmp_path / "baseline.json"
    _cli(config, "--write-baseline", str(base))
    write(tmp_path, "src/app/main.py", APP + "\n\nTHIRD = WebSocketManager(3)\n")
    report = run(config, baseline=base)
    assert [(f.rule, f.symbol) for f in report.findings] == [("SSOT005", "<module>:manager")]
    assert _cli(config, "--baseline", str(base)) == 1


def test_stale_entries_are_reported_and_baseline_only_shrinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_project(tmp_path, {"src/app/main.py": APP})
    base = tmp_path / "baseline.json"
    _cli(config, "--write-baseline", str(base))
    fixed = APP.replace('TOKEN = os.getenv("TOKEN")', "TOKEN = None")
    fixed += "\n\nclass ConnectionManager:\n    pass\n"
    write(tmp_path, "src/app/main.py", fixed)
    capsys.readouterr()
    assert _cli(config, "--baseline", str(base)) == 1  # the new class is a new finding
    err = capsys.readouterr().err
    assert "stale baseline entry SSOT007 src/app/main.py '<module>:os.getenv'" in err
    report = run(config, baseline=base)
    assert [(s.rule, s.recorded, s.current) for s in report.stale] == [("SSOT007", 1, 0)]

    shrunk = tmp_path / "shrunk.json"
    assert _cli(config, "--baseline", str(base), "--write-baseline", str(shrunk)) == 1
    rules = sorted(e["rule"] for e in json.loads(shrunk.read_text())["entries"])
    assert rules == ["SSOT005"]  # SSOT007 dropped, SSOT001 (new) not added


def test_malformed_baseline_is_a_config_error(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    base = write(tmp_path, "baseline.json", '{"entries": [{"rule": "SSOT001"}]}')
    with pytest.raises(ConfigError, match="baseline"):
        run(config, baseline=base)
    assert _cli(config, "--baseline", str(base)) == 2
