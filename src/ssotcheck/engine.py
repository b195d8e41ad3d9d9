"""Orchestration: discover -> summarise (cache / process pool) -> rules ->
inline suppressions -> baseline or ``--diff`` base revision.

Contract: :func:`check` raises :class:`~ssotcheck.config.ConfigError` for a bad
configuration (or a baseline file that cannot be read, or a ``diff`` revision
git cannot show) and otherwise returns a :class:`~ssotcheck.findings.Report`;
unparsable files end up in ``Report.errors``.  Results do not depend on
``jobs`` or on the cache.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ssotcheck.baseline import Key, apply_baseline, counts, load_baseline
from ssotcheck.cache import SummaryCache, content_key, store
from ssotcheck.config import Config, load_config
from ssotcheck.discovery import SourceFile, discover
from ssotcheck.findings import FileError, Finding, Notice, Report, Stats
from ssotcheck.gitdiff import checkout
from ssotcheck.index import ProjectIndex, validate_targets
from ssotcheck.rules import run_rules
from ssotcheck.scan import count_lines, summarize
from ssotcheck.summary import FileSummary, ParseError
from ssotcheck.suppress import apply_suppressions

POOL_THRESHOLD = 200
"""Cache misses above this count are parsed in a process pool."""

DEFAULT_CACHE_DIR = ".ssotcheck_cache"


def _work(job: tuple[bytes, str, str | None]) -> FileSummary:
    """Pool worker: summarise one file and store it in the cache directory."""
    source, key, cache_dir = job
    summary = summarize(source)
    if cache_dir is not None:
        store(Path(cache_dir), key, summary)
    return summary


def summarize_files(
    files: list[SourceFile],
    cache: SummaryCache | None,
    jobs: int | None = None,
    pool_threshold: int = POOL_THRESHOLD,
) -> tuple[list[FileSummary], int]:
    """Summaries of ``files`` (same order) and the number of files parsed."""
    out: list[FileSummary | None] = [None] * len(files)
    misses: list[tuple[int, bytes, str]] = []
    for i, source_file in enumerate(files):
        try:
            source = source_file.path.read_bytes()
        except OSError as exc:
            out[i] = FileSummary(0, error=ParseError(f"cannot read: {exc.strerror}", 1, 1))
            continue
        key = content_key(source)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            out[i] = hit
        else:
            misses.append((i, source, key))
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    cache_dir = str(cache.directory) if cache is not None else None
    if len(misses) > pool_threshold and workers > 1:
        chunk = max(1, len(misses) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            jobs_iter = ((src, key, cache_dir) for _, src, key in misses)
            for (i, _, _), summary in zip(
                misses, pool.map(_work, jobs_iter, chunksize=chunk), strict=True
            ):
                out[i] = summary
    else:
        for i, source, key in misses:
            out[i] = _work((source, key, cache_dir))
    done = [s if s is not None else FileSummary(count_lines(b"")) for s in out]
    return done, len(misses)


@dataclass(slots=True)
class Project:
    """A scanned tree: its files, their summaries and the cross-file index."""

    files: list[SourceFile]
    summaries: list[FileSummary]
    index: ProjectIndex
    errors: list[FileError]
    parsed: int
    cache_hits: int

    @property
    def lines(self) -> int:
        """Lines in every scanned file."""
        return sum(s.lines for s in self.summaries)


def load_project(
    config: Config,
    paths: list[Path] | None = None,
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    pool_threshold: int = POOL_THRESHOLD,
) -> Project:
    """Discover and summarise the files of ``config`` and index them."""
    files = discover(config, paths)
    cache = None
    if use_cache:
        cache = SummaryCache(config.cache_dir or config.root / DEFAULT_CACHE_DIR)
    summaries, parsed = summarize_files(files, cache, jobs, pool_threshold)
    errors = [
        FileError(f.relpath, s.error.line, s.error.col, s.error.message)
        for f, s in zip(files, summaries, strict=True)
        if s.error is not None
    ]
    index = ProjectIndex(list(zip(files, summaries, strict=True)), config)
    hits = cache.hits if cache is not None else 0
    return Project(files, summaries, index, errors, parsed, hits)


@dataclass(slots=True)
class Analysis:
    """Findings of one tree after inline suppressions, before any baseline."""

    project: Project
    findings: list[Finding]
    inline: int
    notices: list[Notice]


def analyse(
    config: Config,
    paths: list[Path] | None = None,
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    pool_threshold: int = POOL_THRESHOLD,
    validate: bool = True,
) -> Analysis:
    """Summarise, resolve, run every rule and apply inline suppressions.

    ``validate=False`` tolerates configured targets that do not exist (the
    tree at a base revision may predate them).
    """
    with collector_paused():
        project = load_project(
            config, paths, use_cache=use_cache, jobs=jobs, pool_threshold=pool_threshold
        )
        if validate:
            validate_targets(config, project.index)
        findings, inline, notices = apply_suppressions(
            run_rules(project.index, config), project.index
        )
    return Analysis(project, findings, inline, notices)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off inside the block.

    Summaries and the index are acyclic; collecting while hundreds of thousands
    of records are alive only costs time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_config(
    config: Config,
    paths: list[Path] | None = None,
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    baseline: Counter[Key] | None = None,
    pool_threshold: int = POOL_THRESHOLD,
    diff: str | None = None,
) -> Report:
    """Run every rule for an already-loaded ``config`` (see module contract).

    With ``diff`` (a git revision), only findings that the same configuration
    does not report at that revision are new; ``baseline`` is then ignored.
    """
    start = time.perf_counter()
    current = analyse(config, paths, use_cache=use_cache, jobs=jobs, pool_threshold=pool_threshold)
    fixed = 0
    if diff is not None:
        base = _base_findings(config, diff, use_cache=use_cache, jobs=jobs)
        findings, suppressed, stale = apply_baseline(current.findings, counts(base))
        fixed = sum(s.recorded - s.current for s in stale)
        stale = []
    else:
        findings, suppressed, stale = apply_baseline(current.findings, baseline or Counter())
    project = current.project
    stats = Stats(
        files=len(project.files),
        lines=project.lines,
        parsed=project.parsed,
        cache_hits=project.cache_hits,
        seconds=time.perf_counter() - start,
    )
    return Report(
        findings,
        current.findings,
        project.errors,
        stale,
        suppressed,
        stats,
        notices=current.notices,
        inline=current.inline,
        fixed=fixed,
        base=diff,
    )


def _base_findings(config: Config, rev: str, *, use_cache: bool, jobs: int | None) -> list[Finding]:
    """Findings of ``config``'s paths as they are at git revision ``rev``."""
    cache_dir = config.cache_dir or config.root / DEFAULT_CACHE_DIR
    with tempfile.TemporaryDirectory(prefix="ssotcheck-diff-") as tmp:
        old = checkout(config, rev, Path(tmp), cache_dir)
        return analyse(old, use_cache=use_cache, jobs=jobs, validate=False).findings


def check(
    config_path: Path,
    paths: list[Path] | None = None,
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    baseline: Path | None = None,
    pool_threshold: int = POOL_THRESHOLD,
    diff: str | None = None,
) -> Report:
    """Check the project configured in ``config_path`` (optionally only ``paths``).

    Raises :class:`~ssotcheck.config.ConfigError` on bad configuration.
    """
    config = load_config(config_path)
    accepted = load_baseline(baseline) if baseline is not None else None
    return check_config(
        config,
        paths,
        use_cache=use_cache,
        jobs=jobs,
        baseline=accepted,
        pool_threshold=pool_threshold,
        diff=diff,
    )
