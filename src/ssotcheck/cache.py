"""Content-addressed cache of file summaries.

Contract: an entry is keyed by the sha256 of the file's bytes plus
:data:`SCHEMA_VERSION`; a hit returns exactly the summary that was stored.
Corrupt or unreadable entries count as misses.  Writes are atomic
(write-to-temp then rename), so concurrent writers are safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ssotcheck.summary import FileSummary

SCHEMA_VERSION = 2
"""Bump whenever :mod:`ssotcheck.scan` output changes meaning."""


def content_key(source: bytes) -> str:
    """sha256 hex digest of ``source``."""
    return hashlib.sha256(source).hexdigest()


class SummaryCache:
    """A directory of ``<key>.json`` summaries."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / f"v{SCHEMA_VERSION}"
        self.hits = 0
        self.misses = 0

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> FileSummary | None:
        """The stored summary for ``key``, or None (counted as hit/miss)."""
        try:
            data = json.loads(self._entry(key).read_bytes())
            summary = FileSummary.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            self.misses += 1
            return None
        self.hits += 1
        return summary

    def put(self, key: str, summary: FileSummary) -> None:
        """Store ``summary`` under ``key`` (best effort: I/O errors are ignored)."""
        store(self.directory, key, summary)


def store(directory: Path, key: str, summary: FileSummary) -> None:
    """Atomically write ``summary`` as ``directory/<key[:2]>/<key>.json``.

    The document is encoded in one go and written to a temporary name unique to
    this process, then renamed over the target.
    """
    target = directory / key[:2] / f"{key}.json"
    data = json.dumps(summary.to_json(), separators=(",", ":")).encode()
    tmp = target.with_name(f"{key}.{os.getpid()}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
