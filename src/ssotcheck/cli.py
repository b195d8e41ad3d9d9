"""Command line interface.

Contract: :func:`main` never raises for user errors; it returns the exit code:
0 = clean, 1 = findings not covered by the baseline (or new since ``--diff``),
2 = bad configuration, bad baseline file, bad ``--diff`` revision or an
unparsable Python file.  ``ssotcheck discover ...`` prints proposed concepts
and returns 0 (2 for a bad configuration).
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
from ssotcheck.config import Config, ConfigError, load_config, parse_config, read_table, scan_config
from ssotcheck.engine import check_config, collector_paused, load_project
from ssotcheck.findings import Report
from ssotcheck.propose import propose, render
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


def build_discover_parser() -> argparse.ArgumentParser:
    """The parser of ``ssotcheck discover``."""
    parser = argparse.ArgumentParser(
        prog="ssotcheck discover",
        description="Propose concepts from the code: print a ready [tool.ssotcheck] block.",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="directories to scan (default: the config's paths)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("pyproject.toml"),
        help="pyproject.toml whose [tool.ssotcheck] paths/exclude to use, if it has one",
    )
    parser.add_argument("--top", type=int, default=5, help="at most N proposals (default 5)")
    parser.add_argument("--no-cache", action="store_true", help="do not read/write the cache")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes for parsing")
    return parser


def _discover_config(args: argparse.Namespace) -> Config:
    table = read_table(args.config) if args.config.is_file() else None
    if table is None:
        if not args.paths:
            raise ConfigError(
                f"{args.config} has no [tool.ssotcheck] table: give the paths to scan"
            )
        return scan_config(Path.cwd(), list(args.paths))
    config = parse_config(table, args.config.resolve().parent)
    if args.paths:
        config = replace(config, paths=scan_config(Path.cwd(), list(args.paths)).paths)
    return config


def discover_main(argv: Sequence[str]) -> int:
    """``ssotcheck discover``: print proposals; 0, or 2 for a bad configuration."""
    args = build_discover_parser().parse_args(argv)
    if args.top < 1 or (args.jobs is not None and args.jobs < 1):
        print("ssotcheck: error: --top and --jobs must be >= 1", file=sys.stderr)
        return 2
    try:
        config = _discover_config(args)
        with collector_paused():
            project = load_project(config, use_cache=not args.no_cache, jobs=args.jobs)
            skip = [c.canonical.dotted for c in config.concepts]
            proposals = propose(project.index, config, args.top, skip=skip)
    except ConfigError as exc:
        print(f"ssotcheck: config error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(proposals, project.index, config, len(project.files), project.lines))
    for err in project.errors:
        print(
            f"{err.path}:{err.line}:{err.col}: error: cannot parse file: {err.message}",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["discover"]:
        return discover_main(argv[1:])
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
