"""``ssotcheck discover``: propose the concepts of a code base from the code itself.

Contract: :func:`propose` looks at every class of a scanned project and returns
at most ``top`` :class:`Proposal` objects, best evidence first.  A proposal is a
*canonical* class plus its *copies*: classes of an ordinary kind that share a
run of at least two name tokens ending with its last word with it
(``EmergencyWebSocketManager`` and ``UnifiedWebSocketManager`` share
``WebSocketManager``) and either half the similarity threshold of interface
overlap or a reference to it, or -- whatever their names -- an interface
overlap that SSOT002 would report.  Subclasses and classes sharing a base with
it never count; neither do interface-only matches whose shared members are
mostly (80 %) declared by one project protocol (two implementations of one
port share them by design; a class *named* like it is a copy all the same).  Private classes,
classes with fewer than :data:`MIN_MEMBERS` public members and proposals with
less than :data:`MIN_EVIDENCE` are never proposed.  The canonical class of a
cluster is the member with the most evidence; evidence is what the concept
would make ssotcheck report::

    3 x copies + aliases + imports from elsewhere + constructions outside the factory

where a copy counts its interface overlap (1 for a class of the same name).
The public module is the re-exporting module the class is imported from most
often (it must expose the class under its own name), the factory the most
called function named like one (a verb such as ``create``/``make``/``get``/
``load``, or ``factory``, plus the last word of the class name) in a module
that constructs it.  :func:`render` prints a ready ``[tool.ssotcheck]`` block;
every proposal in it passes :func:`~ssotcheck.index.validate_targets`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ssotcheck.classes import ClassEntry, ClassIndex, role_suffix
from ssotcheck.config import Concept, Config, ConfigError, Target
from ssotcheck.discovery import display_path
from ssotcheck.findings import Finding
from ssotcheck.index import ProjectIndex, import_base, import_target, validate_targets
from ssotcheck.rules.construction import check_construction
from ssotcheck.rules.definitions import (
    MIN_SHARED_METHODS,
    ConceptFacts,
    Digests,
    find_definitions,
    name_matches,
)
from ssotcheck.rules.imports import check_imports

_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")
_FACTORY = re.compile(r"(^|_)(create|make|build|new|get|load|open)(_|$)|factory", re.IGNORECASE)
_CONFIG_PARTS = frozenset({"config", "configuration", "settings", "conf"})
GENERIC_SHARE = 0.02
"""Members held by more than this share of all classes do not seed interface matches."""
SHOWN = 6
MIN_MEMBERS = 5
"""A canonical class needs this many public members (a concept has an interface)."""
MIN_EVIDENCE = 3
"""Weaker proposals (less than one full copy's worth) are not shown."""
_NEUTRAL_BASES = frozenset(
    {"object", "typing.Generic", "abc.ABC", "typing.Protocol", "pydantic.BaseModel"}
)


def tokens(name: str) -> tuple[str, ...]:
    """CamelCase / snake_case words of a class name (``WebSocketManager`` -> 3)."""
    return tuple(_TOKEN.findall(name.lstrip("_")))


def common_run(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The longest run of tokens that ``a`` and ``b`` share (first one on ties)."""
    best: tuple[str, ...] = ()
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            if k > len(best):
                best = a[i : i + k]
    return best


@dataclass(slots=True)
class Usage:
    """How the rest of the project uses one class."""

    imports: list[tuple[str, str]] = field(default_factory=list)
    """``(importing module, source module)`` per import statement."""
    aliases: list[str] = field(default_factory=list)
    constructions: list[tuple[str, str]] = field(default_factory=list)
    """``(module, scope)`` per call of the class."""


@dataclass(frozen=True, slots=True)
class Copy:
    """A class counted as a copy of a proposal's canonical class."""

    entry: ClassEntry
    how: str
    overlap: float


@dataclass(slots=True)
class Proposal:
    """One proposed concept and the evidence behind it."""

    name: str
    entry: ClassEntry
    copies: list[Copy]
    patterns: tuple[str, ...]
    public: str
    public_imports: int
    factory: Target | None
    factory_callers: int
    usage: Usage
    score: int
    imports_elsewhere: int
    constructions_outside: int
    left_out: list[tuple[str, str]] = field(default_factory=list)
    expected: Counter[str] = field(default_factory=Counter)

    def concept(self) -> Concept:
        """The ``[[tool.ssotcheck.concepts]]`` entry this proposal stands for."""
        canonical = Target(self.entry.info.name, self.entry.record.qualname)
        return Concept(self.name, canonical, self.public, self.factory, self.patterns)


class _Usages:
    """Imports, aliases and constructions of every class, and calls of functions."""

    def __init__(self, index: ProjectIndex, classes: ClassIndex) -> None:
        self.of: dict[str, Usage] = defaultdict(Usage)
        self.callers: Counter[str] = Counter()
        known = classes.by_dotted
        for info in index.infos:
            for rec in info.summary.imports:
                if rec.name is None:
                    continue
                local, target = import_target(info.name, info.file.is_package, rec)
                dotted = index.canon(target)
                if dotted in known:
                    usage = self.of[dotted]
                    source = import_base(info.name, info.file.is_package, rec)
                    usage.imports.append((info.name, source))
                    if local != known[dotted].record.name:
                        usage.aliases.append(f"{info.name}.{local}")
            for alias in info.summary.aliases:
                resolved = index.resolve_in(info, alias.value)
                if resolved is None:
                    continue
                value = index.canon(resolved)
                if value in known and alias.target != known[value].record.name:
                    self.of[value].aliases.append(f"{info.name}.{alias.target}")
            for call in info.summary.calls:
                resolved = index.resolve_in(info, call.func)
                if resolved is None:
                    continue
                dotted = index.canon(resolved)
                if dotted in known:
                    self.of[dotted].constructions.append((info.name, call.scope))
                else:
                    self.callers[dotted] += 1


class _Finder:
    """Copies of a candidate canonical class, by name and by interface."""

    def __init__(self, classes: ClassIndex, similarity: float, roles: tuple[str, ...]) -> None:
        self.classes = classes
        self.similarity = similarity
        self.plain = [
            e
            for e in classes.entries
            if classes.kind(e) == "class" and role_suffix(e.record.name, roles) is None
        ]
        self.by_pair: dict[tuple[str, str], list[ClassEntry]] = defaultdict(list)
        self.by_name: dict[str, list[ClassEntry]] = defaultdict(list)
        self.by_method: dict[str, list[ClassEntry]] = defaultdict(list)
        for entry in self.plain:
            words = tokens(entry.record.name)
            self.by_name[entry.record.name].append(entry)
            for pair in set(zip(words, words[1:], strict=False)):
                self.by_pair[pair].append(entry)
            for method in entry.record.public_methods:
                self.by_method[method].append(entry)
        limit = max(50, int(GENERIC_SHARE * len(self.plain)))
        self.generic = {m for m, owners in self.by_method.items() if len(owners) > limit}
        self.protocols = [
            e.record
            for e in classes.entries
            if classes.kind(e) == "protocol" and len(e.record.public_methods) >= 2
        ]

    def by_design(self, shared: frozenset[str]) -> bool:
        """Whether one project protocol declares most (80 %) of ``shared``."""
        return any(len(shared & p.members) >= 0.8 * len(shared) for p in self.protocols)

    def siblings(self, entry: ClassEntry, other: ClassEntry) -> bool:
        """Whether both classes derive from the same base (their overlap is inherited)."""
        mine = set(self.classes.bases(entry)) - _NEUTRAL_BASES
        return bool(mine & set(self.classes.bases(other)))

    def copies(self, entry: ClassEntry) -> tuple[list[Copy], list[tuple[str, ...]]]:
        """Copies of ``entry`` and, per name copy, the name tokens both share."""
        classes = self.classes
        mine = classes.interface(entry, inherited=True)
        methods = entry.record.public_methods
        words = tokens(entry.record.name)
        found: dict[str, Copy] = {}
        cores: list[tuple[str, ...]] = []
        named: set[str] = set()
        for pair in set(zip(words, words[1:], strict=False)):
            named.update(e.dotted for e in self.by_pair[pair])
        named.update(e.dotted for e in self.by_name[entry.record.name])
        for dotted in sorted(named - {entry.dotted}):
            other = classes.by_dotted[dotted]
            if classes.related(entry, other) or self.siblings(entry, other):
                continue
            run = common_run(words, tokens(other.record.name))
            same = other.record.name == entry.record.name
            if not same and run != words and (len(run) < 2 or run[-1] != words[-1]):
                continue  # they share a word, not the name: the run must end with the head
            overlap = classes.overlap(other.record.members, mine, methods).score
            if (
                same
                or overlap >= self.similarity / 2
                or classes.refers_to_class(other, entry.dotted)
            ):
                found[dotted] = Copy(other, "same name" if same else "name", overlap)
                cores.append(run)
        shared: Counter[str] = Counter()
        for method in methods - self.generic:
            shared.update(e.dotted for e in self.by_method[method])
        for dotted, n in shared.items():
            if n < MIN_SHARED_METHODS or dotted in found or dotted == entry.dotted:
                continue
            other = classes.by_dotted[dotted]
            if (
                classes.related(entry, other)
                or self.siblings(entry, other)
                or classes.refers_to_class(other, entry.dotted)
            ):
                continue
            result = classes.overlap(other.record.members, mine, methods)
            if self.by_design(result.shared):
                continue  # two implementations of one protocol
            if result.shared_methods >= MIN_SHARED_METHODS and result.score >= self.similarity:
                found[dotted] = Copy(other, "interface", result.score)
        return sorted(found.values(), key=lambda c: (-c.overlap, c.entry.dotted)), cores


def _snake(words: Iterable[str]) -> str:
    return "_".join(w.lower() for w in words) or "concept"


def _public(entry: ClassEntry, usage: Usage, index: ProjectIndex) -> tuple[str, int]:
    sources = Counter(src for _, src in usage.imports if src != entry.info.name)
    for source, n in sorted(sources.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0])):
        if index.canon(f"{source}.{entry.record.name}") == entry.dotted:
            return source, n
    return entry.info.name, 0


def _factory(
    entry: ClassEntry, usage: Usage, callers: Counter[str], index: ProjectIndex
) -> tuple[Target | None, int]:
    """The most called function named like a factory of this class, near its constructor.

    Candidates are the functions of the modules that construct the class whose
    name has a factory verb (or ``factory``) and the head word of the class name
    (``create_websocket_manager`` for ``UnifiedWebSocketManager``); they must be
    called at least once.  Ties go to the name sharing more words.
    """
    words = {w.lower() for w in tokens(entry.record.name)}
    head = tokens(entry.record.name)[-1].lower()
    best: tuple[int, int, str, str] | None = None
    for module in sorted({m for m, _ in usage.constructions}):
        info = index.modules.get(module)
        if info is None:
            continue
        for scope in info.summary.functions:
            name = scope.rsplit(".", 1)[-1].lower()
            if not _FACTORY.search(name):
                continue
            affinity = sum(1 for w in words if w in name)
            called = callers[f"{module}.{scope}"]
            if head not in name or not called:
                continue
            key = (called, affinity, module, scope)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return None, 0
    return Target(best[2], best[3]), best[0]


def propose(
    index: ProjectIndex, config: Config, top: int = 5, *, skip: Iterable[str] = ()
) -> list[Proposal]:
    """The best ``top`` concept proposals for the project in ``index``."""
    classes = ClassIndex(index)
    usages = _Usages(index, classes)
    finder = _Finder(classes, config.similarity, config.roles)
    skipped = set(skip)
    candidates: list[Proposal] = []
    copies_of: dict[str, set[str]] = {}
    for entry in finder.plain:
        record = entry.record
        if record.qualname != record.name or record.name.startswith("_"):
            continue
        if len(record.members) < MIN_MEMBERS:
            continue
        if entry.dotted in skipped:
            continue
        copies, cores = finder.copies(entry)
        if not copies:
            continue
        usage = usages.of[entry.dotted]
        public, public_imports = _public(entry, usage, index)
        factory, callers = _factory(entry, usage, usages.callers, index)
        elsewhere = sum(
            1
            for importer, source in usage.imports
            if source != public
            and not (
                source == entry.info.name
                and importer.split(".", 1)[0] == entry.info.name.split(".", 1)[0]
            )
        )
        outside = sum(
            1
            for module, scope in usage.constructions
            if factory is None
            or not (
                module == factory.module
                and (scope == factory.attr or scope.startswith(factory.attr + "."))
            )
        )
        core = max(cores, key=lambda c: (cores.count(c), len(c)), default=())
        patterns = (f"*{''.join(core)}*",) if core else ()
        weight = sum(1.0 if c.how == "same name" else c.overlap for c in copies)
        score = round(3 * weight + len(usage.aliases) + elsewhere + (outside if factory else 0))
        if score < MIN_EVIDENCE:
            continue
        candidates.append(
            Proposal(
                name=_snake(core or tokens(record.name)),
                entry=entry,
                copies=copies,
                patterns=patterns,
                public=public,
                public_imports=public_imports,
                factory=factory,
                factory_callers=callers,
                usage=usage,
                score=score,
                imports_elsewhere=elsewhere,
                constructions_outside=outside,
            )
        )
        copies_of[entry.dotted] = {c.entry.dotted for c in copies}
    candidates.sort(key=lambda p: (-p.score, p.entry.dotted))
    accepted: list[Proposal] = []
    claimed: set[str] = set()
    names: set[str] = set()
    for proposal in candidates:
        dotted = proposal.entry.dotted
        mine = copies_of[dotted]
        if dotted in claimed or mine & {p.entry.dotted for p in accepted}:
            continue
        if 2 * len(mine & claimed) >= len(mine):
            continue  # mostly a cluster already proposed
        while proposal.name in names:
            proposal.name += "_2"
        names.add(proposal.name)
        accepted.append(proposal)
        claimed |= copies_of[dotted] | {dotted}
        if len(accepted) == top:
            break
    digests = Digests()
    for proposal in accepted:
        _finish(proposal, index, classes, config, digests)
    return accepted


def _finish(
    proposal: Proposal, index: ProjectIndex, classes: ClassIndex, config: Config, digests: Digests
) -> None:
    """Make the proposal valid, then list what it leaves out and what it would report."""
    for attempt in range(3):
        trial = replace(config, concepts=(proposal.concept(),))
        index.use_config(trial)
        try:
            validate_targets(trial, index)
            break
        except ConfigError:
            if attempt == 0 and proposal.factory is not None:
                proposal.factory = None
            else:
                proposal.public = proposal.entry.info.name
    concept = proposal.concept()
    facts = ConceptFacts(concept, classes, trial, digests)
    for entry in classes.entries:
        if facts.is_canonical(entry) or not name_matches(entry.record.name, concept):
            continue
        if entry.record.name != concept.class_name:
            reason = facts.exemption(entry)
            if reason is not None:
                proposal.left_out.append((entry.record.qualname, reason))
    findings: list[Finding] = []
    findings.extend(find_definitions(index, trial, classes, digests))
    for rule in (check_imports, check_construction):
        findings.extend(rule(index, trial))
    proposal.expected = Counter(f.rule for f in findings)
    index.use_config(config)


def config_module(index: ProjectIndex) -> tuple[str | None, int, int, int]:
    """The config-named module or package most used by the project.

    Returns ``(module, importing modules, its environment reads, all reads)``;
    a module counts by its shortest config-named prefix (``app.config.base`` ->
    ``app.config``), and ranks by importing modules plus environment reads.
    """

    def prefix(module: str) -> str | None:
        parts = module.split(".")
        for i, part in enumerate(parts):
            if part.lower() in _CONFIG_PARTS:
                return ".".join(parts[: i + 1])
        return None

    reads: Counter[str] = Counter()
    importers: dict[str, set[str]] = defaultdict(set)
    total = 0
    for info in index.infos:
        total += len(info.summary.env)
        own = prefix(info.name)
        if own is not None and own in index.modules:
            reads[own] += len(info.summary.env)
            importers.setdefault(own, set())
        for rec in info.summary.imports:
            target = import_base(info.name, info.file.is_package, rec)
            found = prefix(target)
            if found is not None and found in index.modules and found != own:
                importers[found].add(info.name)
    if not importers:
        return None, 0, 0, total
    best = max(importers, key=lambda m: (len(importers[m]) + reads[m], -len(m), m))
    return best, len(importers[best]), reads[best], total


def _names(items: Iterable[str]) -> str:
    names = list(items)
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... (+{len(names) - SHOWN})" if len(names) > SHOWN else "")


def render(
    proposals: list[Proposal], index: ProjectIndex, config: Config, files: int, lines: int
) -> str:
    """A ready ``[tool.ssotcheck]`` block, evidence as comments (see module contract)."""
    out = [
        f"# ssotcheck discover: {len(proposals)} concept(s) proposed for {files} files "
        f"({lines} lines), strongest evidence first.",
        "# Evidence = 3 x copies (weighted by interface overlap) + aliases + imports from",
        "# elsewhere + constructions outside the factory. Keep the blocks that are real",
        "# concepts, then run `ssotcheck`.",
        "[tool.ssotcheck]",
        "paths = ["
        + ", ".join(json.dumps(display_path(p, config.root)) for p in config.paths)
        + "]",
    ]
    if config.exclude:
        out.append("exclude = [" + ", ".join(json.dumps(e) for e in config.exclude) + "]")
    module, users, reads, total = config_module(index)
    if config.config_module is not None:
        out.append(f"config_module = {json.dumps(config.config_module)}")
    elif module is not None:
        out.append(
            f"config_module = {json.dumps(module)}  # imported by {users} modules; "
            f"{reads} of the {total} environment reads are in it"
        )
    for rank, p in enumerate(proposals, 1):
        record = p.entry.record
        name_copies = [c for c in p.copies if c.how != "interface"]
        structural = [c for c in p.copies if c.how == "interface"]
        out += [
            "",
            f"# {rank}. {p.name} -- evidence {p.score}: {len(p.copies)} copies, "
            f"{len(p.usage.aliases)} aliases, {p.imports_elsewhere} imports from elsewhere, "
            f"{p.constructions_outside if p.factory else 0} constructions outside the factory",
            f"#    canonical  {record.name}: {len(record.members)} public members, imported "
            f"{len(p.usage.imports)} times, constructed {len(p.usage.constructions)} times",
        ]
        if name_copies:
            out.append(
                "#    copies     "
                + _names(
                    f"{c.entry.record.qualname} ({c.how}, overlap {c.overlap:.2f})"
                    for c in name_copies
                )
            )
        if structural:
            out.append(
                "#    by shape   "
                + _names(f"{c.entry.record.qualname} (overlap {c.overlap:.2f})" for c in structural)
            )
        if p.left_out:
            out.append("#    left out   " + _names(f"{q} ({why})" for q, why in p.left_out))
        out.append(
            f"#    public     {p.public} (imported from {p.public_imports} times)"
            if p.public_imports
            else f"#    public     {p.public} (the defining module: nothing re-exports it)"
        )
        if p.factory is not None:
            out.append(f"#    factory    {p.factory} (called {p.factory_callers} times)")
        else:
            out.append("#    factory    none found (SSOT005 stays off for this concept)")
        if p.expected:
            out.append(
                "#    would report "
                + ", ".join(f"{rule} x{n}" for rule, n in sorted(p.expected.items()))
            )
        out += [
            "[[tool.ssotcheck.concepts]]",
            f"name = {json.dumps(p.name)}",
            f"canonical = {json.dumps(str(p.concept().canonical))}",
            f"public = {json.dumps(p.public)}",
        ]
        if p.factory is not None:
            out.append(f"factory = {json.dumps(str(p.factory))}")
        if p.patterns:
            out.append("patterns = [" + ", ".join(json.dumps(x) for x in p.patterns) + "]")
    if not proposals:
        out += ["", "# No concept found: no class has a copy by name or by interface."]
    return "\n".join(out) + "\n"
