"""Exit codes and the command line entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ssotcheck.cli import main
from ssotcheck.testing import make_project, write

FIXTURES = Path(__file__).resolve().parent / "fixtures"

SRC = Path(__file__).resolve().parents[2] / "src"


def test_exit_0_when_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(FIXTURES / "clean" / "pyproject.toml"), "--no-cache"]) == 0
    assert capsys.readouterr().out.startswith("No findings")


def test_exit_1_with_findings(capsys: pytest.CaptureFixture[str]) -> None:
    config = FIXTURES / "violating" / "pyproject.toml"
    assert main(["--config", str(config), "--no-cache"]) == 1
    assert "Found 18 findings" in capsys.readouterr().out


def test_exit_2_for_unparsable_file_names_path_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "src/app/broken.py", "x = 1\n\ndef f(:\n    pass\n")
    config = make_project(tmp_path, {"src/app/dup.py": "class ConnectionManager:\n    pass\n"})
    assert main(["--config", str(config), "--no-cache"]) == 2
    out = capsys.readouterr().out
    assert "src/app/broken.py:3:" in out and "cannot parse" in out
    assert "SSOT001" in out  # the other files are still checked


def test_exit_2_for_unparsable_file_in_json_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "src/app/broken.py", "def f(:\n")
    config = make_project(tmp_path)
    assert main(["--config", str(config), "--no-cache", "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out.strip() == "[]"
    assert "src/app/broken.py:1:" in captured.err


def test_bad_jobs_and_missing_config(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    assert main(["--config", str(config), "--jobs", "0"]) == 2
    assert main(["--config", str(tmp_path / "none.toml")]) == 2


def test_positional_paths_limit_reporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "src/app/one.py": "class ConnectionManager:\n    pass\n",
        "src/app/two.py": "class WebSocketManager:\n    pass\n",
    }
    config = make_project(tmp_path, files)
    rc = main(["--config", str(config), "--no-cache", str(tmp_path / "src/app/two.py")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "two.py" in out and "one.py" not in out


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssotcheck",
            "--no-cache",
            "--config",
            str(FIXTURES / "violating" / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )
    assert proc.returncode == 1
    assert "SSOT006" in proc.stdout
