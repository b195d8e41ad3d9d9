"""Every class of the project: its kind, its ancestry and its public interface.

Contract: :class:`ClassIndex` is built from a :class:`~ssotcheck.index.ProjectIndex`
and never reads files.  :meth:`ClassIndex.kind` is ``"class"`` or one of
:data:`~ssotcheck.config.KINDS`, decided from the bases as they resolve through
imports (``enum.Enum`` and its project subclasses, a direct ``typing.Protocol``
base or an ``abc`` interface whose every method is abstract or a stub,
``TypedDict``, ``NamedTuple``/``namedtuple()``, built-in or ``*Error`` /
``*Exception`` bases).  :meth:`ClassIndex.overlap` compares two interfaces
with every member weighted by its rarity across the project (inverse document
frequency), so that ``user_id`` or ``close`` count less than ``send_to_thread``.
"""

from __future__ import annotations

import builtins
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ssotcheck.config import Concept
from ssotcheck.index import ModuleInfo, ProjectIndex
from ssotcheck.summary import ClassRecord

ENUM_BASES = frozenset(
    {"enum.Enum", "enum.IntEnum", "enum.StrEnum", "enum.Flag", "enum.IntFlag", "enum.ReprEnum"}
)
ENUM_METACLASSES = frozenset({"enum.EnumMeta", "enum.EnumType"})
PROTOCOL_BASES = frozenset({"typing.Protocol", "typing_extensions.Protocol"})
TYPEDDICT_BASES = frozenset({"typing.TypedDict", "typing_extensions.TypedDict"})
NAMEDTUPLE_BASES = frozenset(
    {"typing.NamedTuple", "typing_extensions.NamedTuple", "collections.namedtuple()"}
)
ABC_BASES = frozenset({"abc.ABC"})
ABC_METACLASSES = frozenset({"abc.ABCMeta"})
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), Exception)
)
_EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning")


@dataclass(frozen=True, slots=True)
class ClassEntry:
    """One class: where it is defined and its summary record."""

    info: ModuleInfo
    record: ClassRecord

    @property
    def dotted(self) -> str:
        """``module.Qualname``."""
        return f"{self.info.name}.{self.record.qualname}"


@dataclass(frozen=True, slots=True)
class Overlap:
    """How much of two interfaces is shared (see :meth:`ClassIndex.overlap`)."""

    score: float
    shared: frozenset[str]
    shared_methods: int


class ClassIndex:
    """Classes by dotted name, with kinds, ancestry and member weights."""

    def __init__(self, index: ProjectIndex) -> None:
        self.index = index
        self.entries: list[ClassEntry] = []
        self.by_dotted: dict[str, ClassEntry] = {}
        for info in index.infos:
            for record in info.summary.classes:
                entry = ClassEntry(info, record)
                self.entries.append(entry)
                self.by_dotted.setdefault(entry.dotted, entry)
        self._kinds: dict[str, str] = {}
        self._bases: dict[str, tuple[str, ...]] = {}
        df: Counter[str] = Counter()
        counted = 0
        for entry in self.entries:
            members = entry.record.members
            if members:
                counted += 1
                df.update(members)
        self._df = df
        self._n = counted

    # -- ancestry --------------------------------------------------------
    def resolve(self, info: ModuleInfo, dotted: str) -> str:
        """Absolute, re-export-free name of ``dotted`` as written in ``info``."""
        call = dotted.endswith("()")
        name = dotted[:-2] if call else dotted
        resolved = self.index.resolve_in(info, name)
        full = self.index.canon(resolved) if resolved is not None else name
        return full + "()" if call else full

    def bases(self, entry: ClassEntry) -> tuple[str, ...]:
        """The resolved dotted names of ``entry``'s direct bases."""
        cached = self._bases.get(entry.dotted)
        if cached is None:
            cached = tuple(self.resolve(entry.info, b) for b in entry.record.bases)
            self._bases[entry.dotted] = cached
        return cached

    def ancestors(self, entry: ClassEntry) -> set[str]:
        """Dotted names of every base, transitively through project classes."""
        seen: set[str] = set()
        todo = list(self.bases(entry))
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            parent = self.by_dotted.get(name)
            if parent is not None:
                todo.extend(self.bases(parent))
        return seen

    def related(self, entry: ClassEntry, other: ClassEntry) -> bool:
        """Whether one of the two classes inherits from the other."""
        return other.dotted in self.ancestors(entry) or entry.dotted in self.ancestors(other)

    # -- kinds -----------------------------------------------------------
    def kind(self, entry: ClassEntry) -> str:
        """``"class"`` or the kind in :data:`~ssotcheck.config.KINDS` (see contract)."""
        cached = self._kinds.get(entry.dotted)
        if cached is None:
            self._kinds[entry.dotted] = "class"  # cycle guard
            cached = self._kind(entry)
            self._kinds[entry.dotted] = cached
        return cached

    def _kind(self, entry: ClassEntry) -> str:
        record = entry.record
        bases = self.bases(entry)
        metaclass = (
            self.resolve(entry.info, record.metaclass) if record.metaclass is not None else None
        )
        if metaclass in ENUM_METACLASSES:
            return "enum"
        inherited = [self.kind(p) for p in (self.by_dotted.get(b) for b in bases) if p is not None]
        for base in bases:
            if base in ENUM_BASES:
                return "enum"
            if base in TYPEDDICT_BASES:
                return "typeddict"
            if base in NAMEDTUPLE_BASES:
                return "namedtuple"
            if base in PROTOCOL_BASES:
                return "protocol"
        for kind in ("enum", "typeddict", "namedtuple", "exception"):
            if kind in inherited:
                return kind
        for base in bases:
            if base in self.by_dotted:
                continue
            if base in BUILTIN_EXCEPTIONS or base.rsplit(".", 1)[-1].endswith(_EXCEPTION_SUFFIXES):
                return "exception"
        if self._is_interface(record, bases, metaclass):
            return "protocol"
        return "class"

    @staticmethod
    def _is_interface(record: ClassRecord, bases: tuple[str, ...], metaclass: str | None) -> bool:
        """An ``abc`` interface: every method abstract or a stub, at least one abstract."""
        if not record.methods:
            return False
        marked = (
            any(b in ABC_BASES for b in bases)
            or metaclass in ABC_METACLASSES
            or any(m.abstract for m in record.methods)
        )
        return marked and all(m.abstract or m.stub for m in record.methods)

    # -- interfaces ------------------------------------------------------
    def weight(self, member: str) -> float:
        """Smoothed inverse document frequency of ``member`` among all classes."""
        return math.log((1 + self._n) / (1 + self._df[member])) + 1.0

    def interface(self, entry: ClassEntry, *, inherited: bool = False) -> frozenset[str]:
        """Public members of ``entry`` (plus those of its project ancestors)."""
        members = entry.record.members
        if not inherited:
            return members
        out = set(members)
        for name in self.ancestors(entry):
            parent = self.by_dotted.get(name)
            if parent is not None:
                out |= parent.record.members
        return frozenset(out)

    def overlap(
        self, ours: frozenset[str], theirs: frozenset[str], methods: frozenset[str]
    ) -> Overlap:
        """Weighted overlap coefficient: W(shared) / min(W(ours), W(theirs)).

        ``methods`` names which members are methods (to count shared methods).
        """
        shared = ours & theirs
        if not shared:
            return Overlap(0.0, frozenset(), 0)
        w = self.weight
        smaller = min(sum(w(m) for m in ours), sum(w(m) for m in theirs))
        score = sum(w(m) for m in shared) / smaller if smaller else 0.0
        return Overlap(score, shared, len(shared & methods))

    def refers_to(self, entry: ClassEntry, concept: Concept) -> bool:
        """Whether ``entry``'s body names the concept (annotations included)."""
        return any(self.index.concept_in(entry.info, ref) == concept for ref in entry.record.refs)

    def refers_to_class(self, entry: ClassEntry, dotted: str) -> bool:
        """Whether ``entry``'s body names the class ``dotted`` (however imported)."""
        for ref in entry.record.refs:
            resolved = self.index.resolve_in(entry.info, ref)
            if resolved is not None and self.index.canon(resolved) == dotted:
                return True
        return False

    def in_modules(self, infos: Iterable[ModuleInfo]) -> Iterator[ClassEntry]:
        """The classes defined in ``infos``, in file order."""
        for info in infos:
            for record in info.summary.classes:
                yield ClassEntry(info, record)


def role_suffix(name: str, roles: Iterable[str]) -> str | None:
    """The role suffix ``name`` ends with (``WebSocketManagerFactory`` -> ``Factory``)."""
    bare = name.lstrip("_")
    for role in roles:
        if bare.endswith(role) and len(bare) > len(role):
            return role
    return None
