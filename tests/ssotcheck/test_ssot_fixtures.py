"""The fixture trees: every rule fires in ``violating/``, nothing in ``clean/``."""

from __future__ import annotations

from pathlib import Path

from ssotcheck.findings import RULES
from ssotcheck.testing import run

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _expected() -> set[tuple[str, str, int]]:
    out: set[tuple[str, str, int]] = set()
    for line in (FIXTURES / "violating" / "expected.txt").read_text().splitlines():
        if line.strip():
            rule, location = line.split()
            path, _, lineno = location.rpartition(":")
            out.add((rule, path, int(lineno)))
    return out


def test_violating_tree_matches_expected_exactly() -> None:
    report = run(FIXTURES / "violating" / "pyproject.toml")
    got = [(f.rule, f.path, f.line) for f in report.findings]
    assert len(got) == len(set(got)), "a finding was reported twice"
    assert set(got) == _expected()
    assert report.exit_code == 1


def test_violating_tree_exercises_every_rule() -> None:
    assert {rule for rule, _, _ in _expected()} == set(RULES)


def test_clean_tree_is_silent() -> None:
    report = run(FIXTURES / "clean" / "pyproject.toml")
    assert report.findings == []
    assert report.errors == []
    assert report.exit_code == 0
    assert report.stats.files == 9


def test_clean_twin_declares_the_same_concepts() -> None:
    violating = (FIXTURES / "violating" / "pyproject.toml").read_text()
    assert (FIXTURES / "clean" / "pyproject.toml").read_text() == violating
