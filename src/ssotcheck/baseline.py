"""Baselines: accepted findings, keyed without line numbers.

Contract: a baseline maps ``(rule, path, symbol)`` to a count.  Applying it
suppresses up to ``count`` current findings per key (the earliest ones in
file order); keys whose current count is lower than recorded are reported as
:class:`StaleEntry`.  :func:`shrink` never adds keys or raises counts, so a
baseline rewritten from an old one can only shrink.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from ssotcheck.config import ConfigError
from ssotcheck.findings import Finding, StaleEntry

Key = tuple[str, str, str]
BASELINE_VERSION = 1


def counts(findings: Iterable[Finding]) -> Counter[Key]:
    """Per-key counts of ``findings``."""
    return Counter(f.key for f in findings)


def load_baseline(path: Path) -> Counter[Key]:
    """Read a baseline file; raise :class:`ConfigError` if it is malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        out: Counter[Key] = Counter()
        for entry in entries:
            key = (str(entry["rule"]), str(entry["path"]), str(entry["symbol"]))
            count = entry.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"bad count {count!r}")
            out[key] += count
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--baseline {path}: invalid baseline file: {exc}") from exc
    return out


def write_baseline(path: Path, entries: Counter[Key]) -> None:
    """Write ``entries`` as a sorted, diff-friendly JSON baseline."""
    rows = [
        {"rule": rule, "path": p, "symbol": symbol, "count": n}
        for (rule, p, symbol), n in sorted(entries.items())
        if n > 0
    ]
    doc = {"tool": "ssotcheck", "version": BASELINE_VERSION, "entries": rows}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def shrink(current: Counter[Key], old: Counter[Key]) -> Counter[Key]:
    """Entries of ``old`` still occurring, capped at their current count."""
    return Counter({k: min(n, current[k]) for k, n in old.items() if current[k] > 0})


def apply_baseline(
    findings: list[Finding], baseline: Counter[Key]
) -> tuple[list[Finding], int, list[StaleEntry]]:
    """``(new_findings, suppressed_count, stale_entries)`` for sorted ``findings``."""
    budget = Counter(baseline)
    new: list[Finding] = []
    suppressed = 0
    for finding in findings:
        if budget[finding.key] > 0:
            budget[finding.key] -= 1
            suppressed += 1
        else:
            new.append(finding)
    seen = counts(findings)
    stale = [
        StaleEntry(rule, path, symbol, n, seen[(rule, path, symbol)])
        for (rule, path, symbol), n in sorted(baseline.items())
        if seen[(rule, path, symbol)] < n
    ]
    return new, suppressed, stale
