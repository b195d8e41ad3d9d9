"""``--diff REV``: the migration gate reports only findings introduced since REV."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import ssotcheck.engine
from ssotcheck.cli import main
from ssotcheck.summary import FileSummary
from ssotcheck.testing import make_project, run, write

OLD_ALIAS = "from wire import WebSocketManager\n\nOld = WebSocketManager\n"


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity."""
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def repo(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository with the demo project (plus ``files``) committed; its config."""
    config = make_project(tmp_path, {"src/app/old.py": OLD_ALIAS, **(files or {})})
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / ".gitignore").write_text(".ssotcheck_cache/\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    return config


def test_only_new_findings_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = repo(tmp_path)
    write(
        tmp_path, "src/app/new.py", "from wire import WebSocketManager\n\nNew = WebSocketManager\n"
    )
    assert main(["--config", str(config), "--no-cache"]) == 1
    capsys.readouterr()
    assert main(["--config", str(config), "--no-cache", "--diff", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert "src/app/new.py:3:1: SSOT003" in out and "old.py" not in out
    assert "Found 1 new finding since HEAD in 5 files" in out
    assert "; 1 already there, 0 fixed." in out


def test_old_findings_alone_pass_the_gate(tmp_path: Path) -> None:
    config = repo(tmp_path)
    write(tmp_path, "src/app/old.py", "# a comment pushing the alias down\n\n" + OLD_ALIAS)
    report = run(config, diff="HEAD")
    assert report.findings == [] and report.exit_code == 0
    assert [f.line for f in report.all_findings] == [5]


def test_fixed_findings_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = repo(tmp_path)
    write(tmp_path, "src/app/old.py", "X = 1\n")
    assert main(["--config", str(config), "--no-cache", "--diff", "main"]) == 0
    assert "No new findings since main in 4 files (40 lines); 0 already there, 1 fixed." in (
        capsys.readouterr().out
    )


def test_a_second_copy_of_an_existing_finding_is_new(tmp_path: Path) -> None:
    config = repo(tmp_path)
    write(
        tmp_path, "src/app/old.py", OLD_ALIAS + "\n\ndef f():\n    pass\n\nOld = WebSocketManager\n"
    )
    report = run(config, diff="HEAD")
    assert [(f.rule, f.line) for f in report.findings] == [("SSOT003", 9)]


def test_a_base_that_predates_the_concept_still_works(tmp_path: Path) -> None:
    config = repo(tmp_path)
    git(tmp_path, "checkout", "-q", "-b", "feature")
    write(tmp_path, "src/app/older.py", "X = 2\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "more")
    # a base revision without src/ at all: every current finding is new
    empty = git(tmp_path, "commit-tree", "-m", "empty", "4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    report = run(config, diff=empty.strip())
    assert [f.path for f in report.findings] == ["src/app/old.py"]
    assert run(config, diff="main").findings == []


def test_the_base_tree_is_served_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = repo(tmp_path)
    run(config, use_cache=True)
    write(tmp_path, "src/app/new.py", "Y = 3\n")
    parsed: list[bytes] = []
    real = ssotcheck.engine._work

    def spy(job: tuple[bytes, str, str | None]) -> FileSummary:
        parsed.append(job[0])
        return real(job)

    monkeypatch.setattr(ssotcheck.engine, "_work", spy)
    report = run(config, use_cache=True, diff="HEAD")
    assert report.findings == []
    assert parsed == [b"Y = 3\n"]  # the base tree's files were all cache hits


def test_sarif_of_the_gate_lists_only_new_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = repo(tmp_path)
    write(tmp_path, "src/app/new.py", "import os\n\nX = os.getenv('X')\n")
    out = tmp_path / "ssotcheck.sarif"
    rc = main(["--config", str(config), "--diff", "HEAD", "--format", "sarif", "-o", str(out)])
    assert rc == 1
    results = json.loads(out.read_text())["runs"][0]["results"]
    assert [
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for r in results
    ] == [("SSOT007", "src/app/new.py")]
    assert "Found 1 new finding since HEAD" in capsys.readouterr().out  # the summary stays


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--diff", "no-such-rev"], "--diff: unknown revision 'no-such-rev'"),
        (["--diff", "HEAD", "--baseline", "b.json"], "--diff cannot be combined with a baseline"),
    ],
)
def test_gate_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    config = repo(tmp_path)
    assert main(["--config", str(config), "--no-cache", *argv]) == 2
    assert message in capsys.readouterr().err


def test_outside_a_repository_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_project(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert main(["--config", str(config), "--no-cache", "--diff", "HEAD"]) == 2
    assert "--diff: git rev-parse failed: fatal: not a git repository" in capsys.readouterr().err
