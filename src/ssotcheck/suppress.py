"""Inline suppressions: ``# ssotcheck: ignore[SSOT003] -- reason``.

Contract: :func:`apply_suppressions` removes every finding whose line is the
target of a well-formed suppression naming its rule, and returns a
:class:`~ssotcheck.findings.Notice` for every suppression comment in a
reported file that is malformed (no rule list, no reason: it suppresses
nothing), names an unknown rule, or names a rule with no finding on its line
any more.  Notices never change the exit code.
"""

from __future__ import annotations

from collections import defaultdict

from ssotcheck.findings import RULES, Finding, Notice
from ssotcheck.index import ProjectIndex
from ssotcheck.summary import SuppressionRecord


def apply_suppressions(
    findings: list[Finding], index: ProjectIndex
) -> tuple[list[Finding], int, list[Notice]]:
    """``(kept, suppressed_count, notices)`` (see module contract)."""
    by_line: dict[tuple[str, int], list[SuppressionRecord]] = defaultdict(list)
    notices: list[Notice] = []
    comments: list[tuple[str, SuppressionRecord]] = []
    for info in index.infos:
        if not info.file.report:
            continue
        for rec in info.summary.suppressions:
            path = info.file.relpath
            if rec.problem:
                notices.append(
                    Notice(path, rec.line, rec.col, f"suppression ignored: it {rec.problem}")
                )
                continue
            comments.append((path, rec))
            by_line[(path, rec.target)].append(rec)
    used: set[tuple[str, int, int, str]] = set()
    kept: list[Finding] = []
    for finding in findings:
        match = next(
            (r for r in by_line.get((finding.path, finding.line), ()) if finding.rule in r.rules),
            None,
        )
        if match is None:
            kept.append(finding)
        else:
            used.add((finding.path, match.line, match.col, finding.rule))
    for path, rec in comments:
        for rule in rec.rules:
            if rule not in RULES:
                notices.append(
                    Notice(path, rec.line, rec.col, f"suppression names unknown rule {rule!r}")
                )
            elif (path, rec.line, rec.col, rule) not in used:
                notices.append(
                    Notice(
                        path,
                        rec.line,
                        rec.col,
                        f"unused suppression: no {rule} finding on line {rec.target} any more; "
                        "remove it",
                    )
                )
    notices.sort(key=lambda n: (n.path, n.line, n.col, n.message))
    return kept, len(findings) - len(kept), notices
