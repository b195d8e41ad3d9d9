"""SSOT001 duplicate-definition and SSOT002 near-duplicate.

SSOT001 fires for a class whose name equals a concept's class name or matches
one of its ``patterns`` (fnmatch, case-sensitive) anywhere but the canonical
location.  SSOT002 fires for any other class when at least
:data:`NEAR_DUP_MIN` and at least :data:`NEAR_DUP_SHARE` of its non-trivial
methods have the same normalised structure as a method of a concept class.
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase

from ssotcheck.config import Concept, Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ModuleInfo, ProjectIndex
from ssotcheck.summary import ClassRecord

MIN_METHOD_SIZE = 10
"""Methods with fewer AST nodes are too trivial to count as copied."""
NEAR_DUP_SHARE = 0.8
NEAR_DUP_MIN = 2


def _is_canonical(info: ModuleInfo, cls: ClassRecord, concept: Concept) -> bool:
    return info.name == concept.canonical.module and cls.qualname == concept.canonical.attr


def _name_matches(cls: ClassRecord, concept: Concept) -> bool:
    return cls.name == concept.class_name or any(
        fnmatchcase(cls.name, pat) for pat in concept.patterns
    )


def _concept_digests(index: ProjectIndex, concept: Concept) -> frozenset[str]:
    cls = index.class_record(concept.canonical.module, concept.canonical.attr)
    if cls is None:
        return frozenset()
    return frozenset(m.digest for m in cls.methods if m.size >= MIN_METHOD_SIZE)


def _near_duplicate(cls: ClassRecord, digests: frozenset[str]) -> tuple[int, int] | None:
    significant = [m for m in cls.methods if m.size >= MIN_METHOD_SIZE]
    matched = sum(1 for m in significant if m.digest in digests)
    if matched >= NEAR_DUP_MIN and matched >= NEAR_DUP_SHARE * len(significant):
        return matched, len(significant)
    return None


def check_definitions(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT001 and SSOT002 findings."""
    digests = {c.name: _concept_digests(index, c) for c in config.concepts}
    for info in index.infos:
        if not info.file.report:
            continue
        for cls in info.summary.classes:
            yield from _check_class(info, cls, config.concepts, digests)


def _check_class(
    info: ModuleInfo,
    cls: ClassRecord,
    concepts: tuple[Concept, ...],
    digests: dict[str, frozenset[str]],
) -> Iterator[Finding]:
    path = info.file.relpath
    for concept in concepts:
        if _is_canonical(info, cls, concept):
            return
    for concept in concepts:
        if _name_matches(cls, concept):
            yield make_finding(
                "SSOT001",
                path,
                cls.line,
                cls.col,
                f"class {cls.qualname!r} duplicates concept {concept.name!r} "
                f"(canonical: {concept.canonical})",
                cls.qualname,
                f"delete it; use `from {concept.public} import {concept.class_name}`",
            )
            return
    for concept in concepts:
        hit = _near_duplicate(cls, digests[concept.name])
        if hit is not None:
            yield make_finding(
                "SSOT002",
                path,
                cls.line,
                cls.col,
                f"class {cls.qualname!r} copies {hit[0]} of its {hit[1]} methods from "
                f"concept {concept.name!r} ({concept.canonical})",
                f"{cls.qualname}~{concept.name}",
                f"reuse `{concept.public}.{concept.class_name}` instead of copying it",
            )
            return
