"""SSOT003 alias and SSOT004 non-canonical-import.

SSOT003 fires when a concept is bound under a name other than its class name:
``Other = Concept``, ``from m import Concept as Other``, ``import m.Concept as
Other`` or importing an existing alias (``from m import Other``).
``from m import Concept as Concept`` is a same-name re-export, not an alias.

SSOT004 fires for an import of a concept from any module other than its
``public`` module; the canonical module is also accepted, but only inside the
concept's own top-level package.  ``TYPE_CHECKING`` imports count.
"""

from __future__ import annotations

from collections.abc import Iterator

from ssotcheck.config import Concept, Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ModuleInfo, ProjectIndex, import_base, import_target
from ssotcheck.summary import ImportRecord


def _allowed_source(info: ModuleInfo, concept: Concept, source: str) -> bool:
    if source == concept.public:
        return True
    return source == concept.canonical.module and info.name.split(".", 1)[0] == concept.top_package


def _alias_finding(
    info: ModuleInfo,
    concept: Concept,
    local: str,
    line: int,
    col: int,
    scope: str,
    exported: set[str],
    how: str,
) -> Finding:
    extra = " and re-exported via __all__" if local in exported else ""
    return make_finding(
        "SSOT003",
        info.file.relpath,
        line,
        col,
        f"concept {concept.name!r} bound to alias {local!r} ({how}){extra}",
        f"{scope}:{local}={concept.name}",
        f"refer to it as `{concept.class_name}` (from `{concept.public}`)",
    )


def _check_import(
    index: ProjectIndex, info: ModuleInfo, rec: ImportRecord, exported: set[str]
) -> Iterator[Finding]:
    local, target = import_target(info.name, info.file.is_package, rec)
    if rec.name is None:
        full = import_base(info.name, info.file.is_package, rec)
        concept = index.concept_of(full)
        source, _, name = full.rpartition(".")
    else:
        concept = index.concept_of(target)
        source = import_base(info.name, info.file.is_package, rec)
        name = rec.name
    if concept is None:
        return
    path = info.file.relpath
    if not _allowed_source(info, concept, source):
        yield make_finding(
            "SSOT004",
            path,
            rec.line,
            rec.col,
            f"concept {concept.name!r} imported from {source!r} instead of {concept.public!r}",
            f"{source}.{name}",
            f"use `from {concept.public} import {concept.class_name}`",
        )
    binds_name = rec.name is not None or rec.asname is not None
    if binds_name and local != concept.class_name:
        yield _alias_finding(info, concept, local, rec.line, rec.col, rec.scope, exported, "import")


def check_imports(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT003 and SSOT004 findings."""
    if not config.concepts:
        return
    for info in index.infos:
        if not info.file.report:
            continue
        exported = {e.name for e in info.summary.exports}
        for rec in info.summary.imports:
            yield from _check_import(index, info, rec, exported)
        for alias in info.summary.aliases:
            if alias.target == alias.value:
                continue
            concept = index.concept_in(info, alias.value)
            if concept is not None and alias.target != concept.class_name:
                yield _alias_finding(
                    info,
                    concept,
                    alias.target,
                    alias.line,
                    alias.col,
                    alias.scope,
                    exported,
                    "assignment",
                )
