"""Adoption: the pre-commit hooks and the documented CI recipe, run for real."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from ssotcheck.cli import build_parser
from ssotcheck.testing import make_project, write

yaml: Any = importlib.import_module("yaml")
"""PyYAML (untyped here) comes with the langgraph extra that ``make install`` installs."""

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
HOOKS = REPO / ".pre-commit-hooks.yaml"
DOC = REPO / "docs" / "ssotcheck.md"
NEW = "from wire import WebSocketManager\n\nNew = WebSocketManager\n"


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def _repo(tmp_path: Path) -> Path:
    """A committed demo project with one old finding."""
    make_project(tmp_path, {"src/app/old.py": "import os\n\nX = os.getenv('X')\n"})
    (tmp_path / ".gitignore").write_text(".ssotcheck_cache/\n*.sarif\n")
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def _run(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a documented shell command with ``ssotcheck`` meaning this checkout's."""
    ssotcheck = f"{shlex.quote(sys.executable)} -m ssotcheck"
    script = re.sub(r"(^|\s)ssotcheck(?=\s|$)", lambda m: m.group(1) + ssotcheck, command)
    environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=environ, capture_output=True, text=True, check=False
    )


def _hooks() -> dict[str, dict[str, Any]]:
    hooks = yaml.safe_load(HOOKS.read_text())
    assert isinstance(hooks, list)
    return {h["id"]: h for h in hooks}


def test_hook_manifest_is_well_formed() -> None:
    hooks = _hooks()
    assert set(hooks) == {"ssotcheck", "ssotcheck-new"}
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for hook in hooks.values():
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert hook["types"] == ["python"] and hook["require_serial"] is True
        command, *args = shlex.split(hook["entry"])
        assert scripts[command] == "ssotcheck.cli:main"
        build_parser().parse_args(args)  # the arguments exist
    assert hooks["ssotcheck-new"]["entry"] == "ssotcheck --diff HEAD"


def test_hooks_gate_all_findings_or_only_new_ones(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    hooks = _hooks()
    assert _run(hooks["ssotcheck"]["entry"], root).returncode == 1  # the old finding
    gate = _run(hooks["ssotcheck-new"]["entry"], root)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "No new findings since HEAD" in gate.stdout
    write(root, "src/app/new.py", NEW)
    _git(root, "add", "src/app/new.py")  # staged, as pre-commit sees it
    gate = _run(hooks["ssotcheck-new"]["entry"], root)
    assert gate.returncode == 1
    assert "src/app/new.py:3:1: SSOT003" in gate.stdout and "old.py" not in gate.stdout


def _workflow() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## CI recipe") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    workflow = yaml.safe_load(block.group(1))
    assert isinstance(workflow, dict)
    return workflow


def test_ci_recipe_is_a_complete_workflow() -> None:
    workflow = _workflow()
    assert workflow["permissions"]["security-events"] == "write"
    steps = workflow["jobs"]["ssotcheck"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    upload = steps[-1]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["if"] == "always()" and upload["with"]["sarif_file"] == "ssotcheck.sarif"


def test_ci_recipe_step_gates_and_writes_sarif(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    _git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    _git(root, "checkout", "-q", "-b", "feature")
    write(root, "src/app/new.py", NEW)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "a new alias")
    [step] = [
        s for s in _workflow()["jobs"]["ssotcheck"]["steps"] if "ssotcheck" in s.get("run", "")
    ]
    result = _run(step["run"], root, GITHUB_BASE_REF="main")
    assert result.returncode == 1, result.stderr
    assert "Found 1 new finding since origin/main" in result.stdout
    log = json.loads((root / "ssotcheck.sarif").read_text())
    assert log["version"] == "2.1.0"
    [finding] = log["runs"][0]["results"]
    assert finding["ruleId"] == "SSOT003"
    assert (
        finding["partialFingerprints"]["ssotcheck/v1"]
        == "SSOT003|src/app/new.py|<module>:New=manager"
    )
    _git(root, "checkout", "-q", "main")
    assert _run(step["run"], root, GITHUB_BASE_REF="main").returncode == 0
