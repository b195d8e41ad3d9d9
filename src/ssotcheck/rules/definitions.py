"""SSOT001 duplicate-definition and SSOT002 near-duplicate.

SSOT001 fires for a class whose name equals a concept's class name, or matches
one of its ``patterns`` (fnmatch, case-sensitive), anywhere but the canonical
location -- except, for pattern matches, *roles* and *unrelated* classes:

* kinds: enums, protocols (and ``abc`` interfaces), typed dicts, named tuples
  and exceptions, unless the canonical class has that kind or the concept's
  ``include`` lists it;
* role suffixes (``roles``, e.g. ``WebSocketManagerFactory``), unless the
  concept's class name or one of its patterns ends with that suffix, or
  ``include`` lists it;
* unrelated classes: at least :data:`MIN_SHARED_METHODS` public methods of
  their own, an interface overlap below half the similarity threshold, and no
  reference to the concept anywhere in the class (``DatabaseConnectionManager``
  against a WebSocket manager).

SSOT002 fires for any other class that copies the concept's code (at least
:data:`NEAR_DUP_MIN` and :data:`NEAR_DUP_SHARE` of its non-trivial methods have
the normalised structure of a concept method) or its interface (at least
:data:`MIN_SHARED_METHODS` shared public methods and a weighted overlap of the
public members of at least ``similarity``), whatever its name.  The interface
check applies to concrete canonical classes only (implementations of a
protocol share its interface by design) and leaves out the kinds above, the
canonical class's ancestors and subclasses, and wrappers: classes that refer
to the concept (reusing it is the fix this rule asks for).
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from ssotcheck.classes import ClassEntry, ClassIndex, Overlap, role_suffix
from ssotcheck.config import Concept, Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ProjectIndex
from ssotcheck.normalize import class_digests
from ssotcheck.summary import ClassRecord

MIN_METHOD_SIZE = 8
"""Methods with fewer AST nodes are too trivial to count as copied."""
NEAR_DUP_SHARE = 0.8
NEAR_DUP_MIN = 2
MIN_SHARED_METHODS = 3
"""Shared public methods needed before two interfaces are compared at all."""
SHOWN_MEMBERS = 8
"""How many shared member names a message lists."""


def name_matches(name: str, concept: Concept) -> bool:
    """Whether a class called ``name`` is named like ``concept``."""
    return name == concept.class_name or any(fnmatchcase(name, pat) for pat in concept.patterns)


class ConceptFacts:
    """A concept with the facts the two rules need, computed once per run."""

    def __init__(
        self, concept: Concept, classes: ClassIndex, config: Config, digests: Digests
    ) -> None:
        self.concept = concept
        self.digest_cache = digests
        self.classes = classes
        self.similarity = config.similarity_of(concept)
        self.entry = classes.by_dotted.get(concept.canonical.dotted)
        self.kind = classes.kind(self.entry) if self.entry is not None else "class"
        self.interface = (
            classes.interface(self.entry, inherited=True) if self.entry else frozenset()
        )
        methods: set[str] = set()
        if self.entry is not None:
            for name in [self.entry.dotted, *classes.ancestors(self.entry)]:
                parent = classes.by_dotted.get(name)
                if parent is not None:
                    methods |= parent.record.public_methods
        self.methods = frozenset(methods)
        record = self.entry.record if self.entry is not None else None
        self.shapes = frozenset(
            m.shape for m in (record.methods if record else ()) if m.size >= MIN_METHOD_SIZE
        )
        self._digests: frozenset[str] | None = None
        own_roles = {
            role
            for role in config.roles
            if concept.class_name.endswith(role) or any(p.endswith(role) for p in concept.patterns)
        }
        self.roles = tuple(r for r in config.roles if r not in own_roles | concept.include)

    def digests(self) -> frozenset[str]:
        """Exact digests of the canonical class's non-trivial methods."""
        if self._digests is None:
            self._digests = frozenset()
            if self.entry is not None:
                record = self.entry.record
                sizes = {m.name: m.size for m in record.methods}
                found = self.digest_cache.of(self.entry)
                self._digests = frozenset(
                    d for name, d in found.items() if sizes.get(name, 0) >= MIN_METHOD_SIZE
                )
        return self._digests

    def is_canonical(self, entry: ClassEntry) -> bool:
        return self.entry is not None and entry.dotted == self.entry.dotted

    def kind_left_out(self, kind: str) -> bool:
        return kind != "class" and kind != self.kind and kind not in self.concept.include

    def compare(self, entry: ClassEntry) -> Overlap:
        return self.classes.overlap(entry.record.members, self.interface, self.methods)

    def exemption(self, entry: ClassEntry) -> str | None:
        """Why a pattern-matched class is a role or unrelated (None: it is a copy)."""
        kind = self.classes.kind(entry)
        if self.kind_left_out(kind):
            return kind
        role = role_suffix(entry.record.name, self.roles)
        if role is not None:
            return f"role {role}"
        own_methods = entry.record.public_methods
        if len(own_methods) >= MIN_SHARED_METHODS and self.entry is not None:
            if self.compare(entry).score < self.similarity / 2 and not self.classes.refers_to(
                entry, self.concept
            ):
                return "unrelated"
        return None

    def structural(self, entry: ClassEntry) -> Overlap | None:
        """The interface overlap if ``entry`` is a structural copy, else None."""
        if self.entry is None or len(entry.record.public_methods & self.methods) < (
            MIN_SHARED_METHODS
        ):
            return None
        if self.kind != "class" or self.kind_left_out(self.classes.kind(entry)):
            return None  # implementations of a protocol share its interface by design
        if self.classes.related(entry, self.entry) or self.classes.refers_to(entry, self.concept):
            return None  # a subclass or a wrapper reuses the concept
        found = self.compare(entry)
        if found.shared_methods >= MIN_SHARED_METHODS and found.score >= self.similarity:
            return found
        return None


class Digests:
    """Exact method digests, computed on demand: each file is re-parsed at most once."""

    def __init__(self) -> None:
        self._files: dict[Path, dict[str, dict[str, str]]] = {}

    def of(self, entry: ClassEntry) -> dict[str, str]:
        """``{method name: digest}`` of ``entry`` (empty if its file is gone)."""
        path = entry.info.file.path
        found = self._files.get(path)
        if found is None:
            try:
                source = path.read_bytes()
            except OSError:
                source = b""
            found = class_digests(source)
            self._files[path] = found
        return found.get(entry.record.qualname, {})


def _copied_methods(record: ClassRecord, entry: ClassEntry, ctx: ConceptFacts) -> tuple[int, int]:
    """``(copied, significant)`` methods of ``record`` that copy the concept's code."""
    significant = [m for m in record.methods if m.size >= MIN_METHOD_SIZE]
    candidates = sum(1 for m in significant if m.shape in ctx.shapes)
    if candidates < NEAR_DUP_MIN or candidates < NEAR_DUP_SHARE * len(significant):
        return 0, len(significant)
    digests = ctx.digests()
    found = ctx.digest_cache.of(entry)
    copied = sum(1 for m in significant if found.get(m.name) in digests)
    return copied, len(significant)


def _names(shared: frozenset[str]) -> str:
    names = sorted(shared)
    shown = ", ".join(names[:SHOWN_MEMBERS])
    return shown + (f", ... (+{len(names) - SHOWN_MEMBERS})" if len(names) > SHOWN_MEMBERS else "")


def check_definitions(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT001 and SSOT002 findings."""
    if config.concepts:
        yield from find_definitions(index, config, ClassIndex(index), Digests())


def find_definitions(
    index: ProjectIndex, config: Config, classes: ClassIndex, digests: Digests
) -> Iterator[Finding]:
    """:func:`check_definitions` with a class index and digests shared between calls."""
    concepts = [ConceptFacts(c, classes, config, digests) for c in config.concepts]
    reported = [info for info in index.infos if info.file.report]
    for entry in classes.in_modules(reported):
        if any(ctx.is_canonical(entry) for ctx in concepts):
            continue
        yield from _check_class(entry, concepts)


def _check_class(entry: ClassEntry, concepts: list[ConceptFacts]) -> Iterator[Finding]:
    cls = entry.record
    path = entry.info.file.relpath
    for ctx in concepts:
        concept = ctx.concept
        if not name_matches(cls.name, concept):
            continue
        if cls.name != concept.class_name and ctx.exemption(entry) is not None:
            continue
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
    for ctx in concepts:
        concept = ctx.concept
        copied, significant = _copied_methods(cls, entry, ctx)
        if copied >= NEAR_DUP_MIN and copied >= NEAR_DUP_SHARE * significant:
            yield make_finding(
                "SSOT002",
                path,
                cls.line,
                cls.col,
                f"class {cls.qualname!r} copies {copied} of its {significant} methods from "
                f"concept {concept.name!r} ({concept.canonical})",
                f"{cls.qualname}~{concept.name}",
                f"reuse `{concept.public}.{concept.class_name}` instead of copying it",
            )
            return
        overlap = ctx.structural(entry)
        if overlap is not None:
            yield make_finding(
                "SSOT002",
                path,
                cls.line,
                cls.col,
                f"class {cls.qualname!r} has the interface of concept {concept.name!r} "
                f"({concept.canonical}): {len(overlap.shared)} shared public members, "
                f"overlap {overlap.score:.2f} >= {ctx.similarity:.2f} "
                f"({_names(overlap.shared)})",
                f"{cls.qualname}~{concept.name}",
                f"make it the canonical `{concept.class_name}` (or wrap it), "
                f"imported from `{concept.public}`",
            )
            return
