"""Rendering a :class:`~ssotcheck.findings.Report` as text, JSON or SARIF 2.1.0.

Contract: every renderer lists findings in ``Finding.sort_key`` order and
returns a complete document as a string; JSON and SARIF outputs are valid
JSON.  Notes (stale baseline entries, suppression warnings) go to
:func:`render_notes` for every format, and also into the SARIF invocation's
notifications for SARIF, together with parse errors.
"""

from __future__ import annotations

import json
from typing import Any

from ssotcheck import __version__
from ssotcheck.findings import RULES, Finding, Report

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "ssotcheck/v1"


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=Finding.sort_key)


def render_text(report: Report) -> str:
    """``path:line:col: RULE [name] message (hint: ...)`` lines plus a summary."""
    lines = [
        f"{f.path}:{f.line}:{f.col}: {f.rule} [{f.name}] {f.message} (hint: {f.hint})"
        for f in _ordered(report.findings)
    ]
    lines.extend(
        f"{e.path}:{e.line}:{e.col}: error: cannot parse file: {e.message}" for e in report.errors
    )
    count = len(report.findings)
    noun = "new finding" if report.base is not None else "finding"
    summary = f"Found {count} {noun}{'s' if count != 1 else ''}" if count else f"No {noun}s"
    if report.base is not None:
        summary += f" since {report.base}"
    summary += f" in {report.stats.files} files ({report.stats.lines} lines)"
    if report.base is not None:
        summary += f"; {report.suppressed} already there, {report.fixed} fixed"
    elif report.suppressed:
        summary += f"; {report.suppressed} suppressed by baseline"
    if report.inline:
        summary += f"; {report.inline} suppressed inline"
    if report.errors:
        summary += f"; {len(report.errors)} file(s) could not be parsed"
    lines.append(summary + ".")
    return "\n".join(lines) + "\n"


def finding_dict(f: Finding) -> dict[str, Any]:
    """The JSON object for one finding."""
    return {
        "rule": f.rule,
        "name": f.name,
        "path": f.path,
        "line": f.line,
        "col": f.col,
        "message": f.message,
        "hint": f.hint,
        "symbol": f.symbol,
    }


def render_json(report: Report) -> str:
    """A JSON list of finding objects."""
    return json.dumps([finding_dict(f) for f in _ordered(report.findings)], indent=2) + "\n"


def fingerprint(f: Finding) -> str:
    """Line-independent identity of a finding (the baseline key)."""
    return f"{f.rule}|{f.path}|{f.symbol}"


def render_sarif(report: Report) -> str:
    """A SARIF 2.1.0 log with one run."""
    rule_ids = list(RULES)
    rules = [
        {
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.short},
            "fullDescription": {"text": r.short},
            "help": {"text": f"Fix: {r.hint}."},
            "defaultConfiguration": {"level": "error"},
        }
        for r in RULES.values()
    ]
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": rule_ids.index(f.rule),
            "level": "error",
            "message": {"text": f"{f.message} (hint: {f.hint})"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.path},
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint(f)},
        }
        for f in _ordered(report.findings)
    ]
    notifications: list[dict[str, Any]] = [
        {
            "level": "error",
            "message": {"text": f"cannot parse file: {e.message}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": e.path},
                        "region": {"startLine": e.line, "startColumn": max(e.col, 1)},
                    }
                }
            ],
        }
        for e in report.errors
    ]
    notifications.extend(
        {
            "level": "note",
            "message": {"text": stale_text(s.rule, s.path, s.symbol, s.recorded, s.current)},
        }
        for s in report.stale
    )
    notifications.extend(
        {
            "level": "warning",
            "message": {"text": n.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": n.path},
                        "region": {"startLine": n.line, "startColumn": n.col},
                    }
                }
            ],
        }
        for n in report.notices
    )
    log = {
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ssotcheck",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def stale_text(rule: str, path: str, symbol: str, recorded: int, current: int) -> str:
    """Message for a baseline entry that no longer (fully) occurs."""
    return (
        f"stale baseline entry {rule} {path} {symbol!r}: recorded {recorded}, "
        f"now {current}; shrink the baseline with --write-baseline"
    )


def render_notes(report: Report) -> list[str]:
    """Human-readable notes (stale baseline entries, suppression warnings) for stderr."""
    notes = [
        "note: " + stale_text(s.rule, s.path, s.symbol, s.recorded, s.current) for s in report.stale
    ]
    notes.extend(f"{n.path}:{n.line}:{n.col}: warning: {n.message}" for n in report.notices)
    return notes


RENDERERS = {"text": render_text, "json": render_json, "sarif": render_sarif}
