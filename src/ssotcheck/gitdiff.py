"""The migration gate: the findings of the same project at a git revision.

Contract: :func:`checkout` writes the configured paths as they are at ``rev``
(``git archive``, so the work tree and index are never touched) under a
directory and returns the :class:`~ssotcheck.config.Config` that checks them
with the same concepts and the same cache: unchanged files are cache hits.
Paths inside the copy mirror the real ones, so findings of both trees share
their baseline keys.  Every git failure (no repository, unknown revision)
raises :class:`~ssotcheck.config.ConfigError` naming ``--diff``.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

from ssotcheck.config import Config, ConfigError


def git(cwd: Path, *args: str) -> bytes:
    """Run ``git args`` in ``cwd``; stdout, or :class:`ConfigError` with git's message."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except OSError as exc:
        raise ConfigError(f"--diff: cannot run git: {exc}") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"--diff: git {args[0]} failed: {message[-1] if message else 'error'}")
    return proc.stdout


def _extract(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        safe = [  # Python < 3.11.4: no extraction filters; keep plain files and dirs
            m
            for m in tar.getmembers()
            if (m.isfile() or m.isdir())
            and not Path(m.name).is_absolute()
            and ".." not in Path(m.name).parts
        ]
        tar.extractall(dest, members=safe)


def checkout(config: Config, rev: str, dest: Path, cache_dir: Path) -> Config:
    """Materialise ``config``'s paths at ``rev`` under ``dest`` (see module contract)."""
    top = Path(git(config.root, "rev-parse", "--show-toplevel").decode().strip()).resolve()
    try:
        commit = git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except ConfigError:
        raise ConfigError(f"--diff: unknown revision {rev!r}") from None
    if not config.root.is_relative_to(top):
        raise ConfigError(f"--diff: {config.root} is not inside the repository {top}")
    relative = [p.relative_to(top).as_posix() for p in config.paths if p.is_relative_to(top)]
    present = [r for r in relative if _exists(top, commit, r)]
    if present:
        _extract(git(top, "archive", "--format=tar", commit, "--", *present), dest)
    return replace(
        config,
        root=dest / config.root.relative_to(top),
        paths=tuple(dest / p.relative_to(top) for p in config.paths if p.is_relative_to(top)),
        cache_dir=cache_dir,
    )


def _exists(top: Path, commit: str, path: str) -> bool:
    if path in ("", "."):
        return True
    proc = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}:{path}"], cwd=top, capture_output=True, check=False
    )
    return proc.returncode == 0
