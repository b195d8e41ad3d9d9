"""Command line interface.

Contract: :func:`main` never raises for user errors; it returns the exit code:
0 = clean, 1 = findings not covered by the baseline, 2 = bad configuration,
bad baseline file or an unparsable Python file.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ssotcheck import __version__
from ssotcheck.baseline import Key, apply_baseline, counts, load_baseline, shrink, write_baseline
from ssotcheck.config import ConfigError, load_config
from ssotcheck.engine import check_config
from ssotcheck.findings import Report
from ssotcheck.report import RENDERERS, render_notes, render_text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="ssotcheck",
        description="Guard a code base's single sources of truth.",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="files/directories to report on (default: config paths)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("pyproject.toml"),
        help="pyproject.toml holding [tool.ssotcheck]",
    )
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text")
    parser.add_argument("--baseline", type=Path, help="suppress findings listed in FILE")
    parser.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="write the current findings (only shrinking --baseline) to FILE",
    )
    parser.add_argument(
        "--diff",
        metavar="REV",
        help="report only findings that are not there at git revision REV (the migration gate)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the report to FILE, not stdout"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read/write the cache")
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes for parsing (default: CPU count)"
    )
    parser.add_argument("--version", action="version", version=f"ssotcheck {__version__}")
    return parser


def _rebaseline(report: Report, written: Counter[Key]) -> Report:
    new, suppressed, stale = apply_baseline(report.all_findings, written)
    return replace(report, findings=new, stale=stale, suppressed=suppressed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print("ssotcheck: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    if args.diff is not None and (args.baseline or args.write_baseline):
        print("ssotcheck: error: --diff cannot be combined with a baseline", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        old = load_baseline(args.baseline) if args.baseline else None
        report = check_config(
            config,
            list(args.paths) or None,
            use_cache=not args.no_cache,
            jobs=args.jobs,
            baseline=old,
            diff=args.diff,
        )
    except ConfigError as exc:
        print(f"ssotcheck: config error: {exc}", file=sys.stderr)
        return 2
    if args.write_baseline is not None:
        current = counts(report.all_findings)
        written = shrink(current, old) if old is not None else current
        write_baseline(args.write_baseline, written)
        dropped = sum(old.values()) - sum(written.values()) if old is not None else 0
        print(
            f"ssotcheck: wrote {sum(written.values())} baseline entries to "
            f"{args.write_baseline}" + (f" ({dropped} stale removed)" if dropped else ""),
            file=sys.stderr,
        )
        report = _rebaseline(report, written)
    rendered = RENDERERS[args.format](report)
    if args.output is not None:
        try:
            args.output.write_text(rendered, encoding="utf-8")
        except OSError as exc:
            print(f"ssotcheck: error: --output {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
        if args.format != "text":
            sys.stdout.write(render_text(report))
    else:
        sys.stdout.write(rendered)
    for note in render_notes(report):
        print(note, file=sys.stderr)
    if args.format != "text":
        for err in report.errors:
            print(
                f"{err.path}:{err.line}:{err.col}: error: cannot parse file: {err.message}",
                file=sys.stderr,
            )
    return report.exit_code
