"""Finding the Python files to check and naming their modules.

Contract: :func:`discover` returns each ``.py`` file once, in sorted order,
with its module name derived relative to the deepest configured root that
contains it (``src/pkg/mod.py`` under root ``src`` -> ``pkg.mod``; a root that
is itself a package, e.g. ``src/pkg``, is named from its parent); files
outside every configured root are named by walking up through ``__init__.py``
directories.  Files under explicitly requested paths are marked ``report=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from ssotcheck.config import DEFAULT_EXCLUDE, Config


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A discovered file and its module identity."""

    path: Path
    relpath: str
    module: str
    is_package: bool
    report: bool


def display_path(path: Path, root: Path) -> str:
    """Posix path relative to ``root`` when possible, else absolute."""
    text, base = path.as_posix(), root.as_posix().rstrip("/") + "/"
    if text.startswith(base):
        return text[len(base) :]
    return "." if text == base[:-1] else text


def _excluded(name: str, rel: str, patterns: tuple[str, ...]) -> bool:
    if any(fnmatch(name, pat) for pat in DEFAULT_EXCLUDE):
        return True
    return any(fnmatch(rel, pat) or fnmatch(name, pat) for pat in patterns)


def _walk(start: Path, config: Config) -> list[Path]:
    if start.is_file():
        return [start] if start.suffix == ".py" else []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(start):
        base = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if not _excluded(d, display_path(base / d, config.root), config.exclude):
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            if f.endswith(".py") and not _excluded(
                f, display_path(base / f, config.root), config.exclude
            ):
                found.append(base / f)
    return found


def _naming_base(root: Path) -> Path:
    """The directory module names under ``root`` are relative to."""
    base = root
    while (base / "__init__.py").is_file() and base.parent != base:
        base = base.parent  # a configured package directory is named from its parent
    return base


def module_name(
    path: Path, roots: tuple[Path, ...], bases: dict[Path, Path] | None = None
) -> tuple[str, bool]:
    """``(module, is_package)`` for ``path`` (see module contract).

    ``bases`` caches :func:`_naming_base` per root between calls.
    """
    best: Path | None = None
    for root in roots:
        if path.is_relative_to(root) and (best is None or len(root.parts) > len(best.parts)):
            best = root
    if best is not None and best != path:
        if bases is None:
            base = _naming_base(best)
        else:
            base = bases.get(best) or bases.setdefault(best, _naming_base(best))
        parts = list(path.relative_to(base).with_suffix("").parts)
    else:
        parts = [path.stem]
        parent = path.parent
        while (parent / "__init__.py").is_file() and parent.parent != parent:
            parts.insert(0, parent.name)
            parent = parent.parent
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1] or [path.parent.name]
    return ".".join(parts), is_package


def discover(config: Config, requested: list[Path] | None = None) -> list[SourceFile]:
    """All files under the configured roots plus ``requested`` (see contract)."""
    wanted = [p.resolve() for p in requested] if requested else []
    universe: set[Path] = set()
    for root in (*config.paths, *wanted):
        universe.update(_walk(root, config))
    out: list[SourceFile] = []
    bases: dict[Path, Path] = {}
    for path in sorted(universe):
        module, is_package = module_name(path, config.paths, bases)
        report = not wanted or any(path == w or path.is_relative_to(w) for w in wanted)
        out.append(SourceFile(path, display_path(path, config.root), module, is_package, report))
    return out
