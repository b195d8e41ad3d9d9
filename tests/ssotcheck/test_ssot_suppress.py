"""Inline suppressions: a reason is required, stale ones are reported."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ssotcheck.cache import SummaryCache, content_key
from ssotcheck.cli import main
from ssotcheck.comments import find_suppressions, parse_comment
from ssotcheck.scan import summarize
from ssotcheck.testing import make_project, run

ALIAS = "from wire import WebSocketManager\n\nMgr = WebSocketManager{comment}\n"


def _project(tmp_path: Path, comment: str, extra: dict[str, str] | None = None) -> Path:
    files = {"src/app/alias.py": ALIAS.format(comment=comment), **(extra or {})}
    return make_project(tmp_path, files)


def test_a_reasoned_suppression_removes_the_finding(tmp_path: Path) -> None:
    config = _project(tmp_path, "  # ssotcheck: ignore[SSOT003] -- kept for plugin API v1")
    report = run(config)
    assert report.findings == [] and report.all_findings == []
    assert report.inline == 1 and report.notices == []
    assert report.exit_code == 0


def test_text_summary_counts_inline_suppressions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _project(tmp_path, "  # ssotcheck: ignore[SSOT003] -- kept for plugin API v1")
    assert main(["--config", str(config), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No findings in 4 files") and out.endswith("; 1 suppressed inline.\n")


def test_a_comment_alone_on_its_line_covers_the_next_code_line(tmp_path: Path) -> None:
    source = """\
        from wire import WebSocketManager

        # ssotcheck: ignore[SSOT003] -- the old name stays until 2.0
        # (a second comment line)

        Mgr = WebSocketManager
        Other = WebSocketManager
        """
    report = run(make_project(tmp_path, {"src/app/alias.py": source}))
    assert [(f.rule, f.line) for f in report.findings] == [("SSOT003", 7)]
    assert report.inline == 1


def test_a_suppression_without_reason_suppresses_nothing_and_warns(tmp_path: Path) -> None:
    report = run(_project(tmp_path, "  # ssotcheck: ignore[SSOT003]"))
    assert [f.rule for f in report.findings] == ["SSOT003"]
    [notice] = report.notices
    assert (notice.path, notice.line) == ("src/app/alias.py", 3)
    assert "gives no reason" in notice.message
    assert report.exit_code == 1


def test_a_suppression_without_rules_suppresses_nothing_and_warns(tmp_path: Path) -> None:
    report = run(_project(tmp_path, "  # ssotcheck: ignore -- whatever"))
    assert [f.rule for f in report.findings] == ["SSOT003"]
    assert "names no rule" in report.notices[0].message


def test_unused_and_unknown_rules_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comment = "  # ssotcheck: ignore[SSOT003, SSOT005, SSOT042] -- migrating"
    extra = {"src/app/clean.py": "X = 1  # ssotcheck: ignore[SSOT007] -- was os.getenv once\n"}
    config = _project(tmp_path, comment, extra)
    report = run(config)
    assert report.findings == [] and report.inline == 1
    messages = [(n.path, n.line, n.message) for n in report.notices]
    assert messages == [
        ("src/app/alias.py", 3, "suppression names unknown rule 'SSOT042'"),
        (
            "src/app/alias.py",
            3,
            "unused suppression: no SSOT005 finding on line 3 any more; remove it",
        ),
        (
            "src/app/clean.py",
            1,
            "unused suppression: no SSOT007 finding on line 1 any more; remove it",
        ),
    ]
    assert main(["--config", str(config), "--no-cache"]) == 0  # warnings never fail
    err = capsys.readouterr().err
    assert "src/app/clean.py:1:8: warning: unused suppression" in err


def test_warnings_are_sarif_notifications(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _project(tmp_path, "  # ssotcheck: ignore[SSOT004] -- wrong rule")
    assert main(["--config", str(config), "--no-cache", "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    [note] = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "warning" and "no SSOT004 finding" in note["message"]["text"]
    region = note["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 3


def test_the_baseline_never_records_inline_suppressed_findings(tmp_path: Path) -> None:
    config = _project(tmp_path, "  # ssotcheck: ignore[SSOT003] -- kept")
    baseline = tmp_path / "b.json"
    assert main(["--config", str(config), "--no-cache", "--write-baseline", str(baseline)]) == 0
    assert json.loads(baseline.read_text())["entries"] == []


def test_only_reported_files_are_checked_for_stale_suppressions(tmp_path: Path) -> None:
    extra = {"src/app/clean.py": "X = 1  # ssotcheck: ignore[SSOT007] -- stale\n"}
    config = _project(tmp_path, "", extra)
    report = run(config, [tmp_path / "src/app/alias.py"])
    assert report.notices == []


def test_comment_parsing() -> None:
    assert parse_comment("# ssotcheck: ignore[SSOT003] -- why") == (("SSOT003",), "why", "")
    assert parse_comment("#ssotcheck:ignore[ssot003,SSOT004]--why not") == (
        ("SSOT003", "SSOT004"),
        "why not",
        "",
    )
    assert parse_comment("# noqa: E501") is None
    parsed = parse_comment("# ssotcheck: skip this")
    assert parsed is not None and "unknown directive" in parsed[2]


def test_only_real_comments_count() -> None:
    source = textwrap.dedent('''\
        TEXT = "# ssotcheck: ignore[SSOT003] -- in a string"
        DOC = """
        # ssotcheck: ignore[SSOT003] -- in a docstring
        """
        x = 1  # ssotcheck: ignore[SSOT008] -- real
        ''').encode()
    [rec] = find_suppressions(source)
    assert (rec.line, rec.target, rec.rules, rec.reason) == (5, 5, ("SSOT008",), "real")


def test_suppressions_survive_the_cache(tmp_path: Path) -> None:
    source = b"x = 1  # ssotcheck: ignore[SSOT008] -- real\n# ssotcheck: ignore[SSOT003]\ny = 2\n"
    summary = summarize(source)
    assert len(summary.suppressions) == 2
    cache = SummaryCache(tmp_path)
    cache.put(content_key(source), summary)
    assert cache.get(content_key(source)) == summary
