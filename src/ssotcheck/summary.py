"""Per-file summary records.

Contract: a :class:`FileSummary` depends only on the file's *content* (never on
its path or module name), so it can be cached by content hash.  Everything the
cross-file rules need is in here; the AST is never kept.  ``to_json`` /
``from_json`` round-trip exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODULE_SCOPE = "<module>"
"""Scope name used for code that is not inside a function or class."""

LiteralValue = int | float | str


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One imported name.

    ``import a.b as c`` -> module="a.b", name=None, asname="c", level=0.
    ``from ..a import b as c`` -> module="a", name="b", asname="c", level=2.
    """

    module: str
    name: str | None
    asname: str | None
    level: int
    line: int
    col: int
    scope: str
    type_checking: bool
    in_function: bool


@dataclass(frozen=True, slots=True)
class MethodRecord:
    """A method: its *shape* and size, and whether it is abstract or a stub.

    ``shape`` is a cheap structural signature (node, call and attribute counts):
    two methods with the same normalised structure always have the same shape,
    so shapes pre-filter the exact comparison of :mod:`ssotcheck.normalize`.
    ``stub`` means the body is only a docstring, ``pass``, ``...`` or
    ``raise NotImplementedError``; ``abstract`` means ``@abstractmethod``.
    """

    name: str
    shape: str
    size: int
    stub: bool = False
    abstract: bool = False


@dataclass(frozen=True, slots=True)
class ClassRecord:
    """A class definition.

    ``defaults`` holds literal field defaults; ``bases`` the dotted base classes
    as written (``Protocol[T]`` -> ``Protocol``); ``attrs`` the public attribute
    names it defines (class level and ``self.x = ...`` in its methods);
    ``refs`` the dotted names its body refers to that are rooted in a name the
    file binds (imports, classes, aliases), string annotations included.
    """

    name: str
    qualname: str
    line: int
    col: int
    methods: tuple[MethodRecord, ...]
    defaults: tuple[tuple[str, LiteralValue], ...]
    bases: tuple[str, ...] = ()
    metaclass: str | None = None
    attrs: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()

    @property
    def public_methods(self) -> frozenset[str]:
        """Names of the methods that do not start with an underscore."""
        return frozenset(m.name for m in self.methods if not m.name.startswith("_"))

    @property
    def members(self) -> frozenset[str]:
        """The public interface: public methods plus public attributes."""
        return self.public_methods | frozenset(self.attrs)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call whose callee is a dotted name rooted in a bound name."""

    func: str
    line: int
    col: int
    scope: str


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """``target = value`` where value is a dotted name (a potential alias)."""

    target: str
    value: str
    line: int
    col: int
    scope: str


@dataclass(frozen=True, slots=True)
class EnvRecord:
    """An environment access, e.g. what="os.environ"."""

    what: str
    line: int
    col: int
    scope: str


@dataclass(frozen=True, slots=True)
class LiteralRecord:
    """A non-trivial literal in code (docstrings excluded)."""

    value: LiteralValue
    line: int
    col: int
    scope: str


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One string entry of a module-level ``__all__``."""

    name: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """A ``# ssotcheck: ignore[RULE,...] -- reason`` comment.

    ``target`` is the line it applies to: its own line, or for a comment alone
    on its line the next line holding code.  ``problem`` is empty for a
    well-formed comment, else what is wrong with it (no rule list, no reason).
    """

    line: int
    col: int
    target: int
    rules: tuple[str, ...]
    reason: str
    problem: str = ""


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a file could not be parsed."""

    message: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class FileSummary:
    """Everything the rules need to know about one file."""

    lines: int
    imports: tuple[ImportRecord, ...] = ()
    classes: tuple[ClassRecord, ...] = ()
    functions: tuple[str, ...] = ()
    calls: tuple[CallRecord, ...] = ()
    aliases: tuple[AliasRecord, ...] = ()
    env: tuple[EnvRecord, ...] = ()
    literals: tuple[LiteralRecord, ...] = ()
    exports: tuple[ExportRecord, ...] = ()
    suppressions: tuple[SuppressionRecord, ...] = ()
    error: ParseError | None = None

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-able form (records become positional lists)."""
        return {
            "lines": self.lines,
            "imports": [
                [
                    i.module,
                    i.name,
                    i.asname,
                    i.level,
                    i.line,
                    i.col,
                    i.scope,
                    i.type_checking,
                    i.in_function,
                ]
                for i in self.imports
            ],
            "classes": [
                [
                    c.name,
                    c.qualname,
                    c.line,
                    c.col,
                    [[m.name, m.shape, m.size, m.stub, m.abstract] for m in c.methods],
                    [[k, v] for k, v in c.defaults],
                    list(c.bases),
                    c.metaclass,
                    list(c.attrs),
                    list(c.refs),
                ]
                for c in self.classes
            ],
            "functions": list(self.functions),
            "calls": [[c.func, c.line, c.col, c.scope] for c in self.calls],
            "aliases": [[a.target, a.value, a.line, a.col, a.scope] for a in self.aliases],
            "env": [[e.what, e.line, e.col, e.scope] for e in self.env],
            "literals": [[x.value, x.line, x.col, x.scope] for x in self.literals],
            "exports": [[x.name, x.line, x.col] for x in self.exports],
            "suppressions": [
                [x.line, x.col, x.target, list(x.rules), x.reason, x.problem]
                for x in self.suppressions
            ],
            "error": None
            if self.error is None
            else [self.error.message, self.error.line, self.error.col],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileSummary:
        """Inverse of :meth:`to_json`."""
        err = data["error"]
        return cls(
            lines=data["lines"],
            imports=tuple(ImportRecord(*row) for row in data["imports"]),
            classes=tuple(
                ClassRecord(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    tuple(MethodRecord(*m) for m in row[4]),
                    tuple((k, v) for k, v in row[5]),
                    tuple(row[6]),
                    row[7],
                    tuple(row[8]),
                    tuple(row[9]),
                )
                for row in data["classes"]
            ),
            functions=tuple(data["functions"]),
            calls=tuple(CallRecord(*row) for row in data["calls"]),
            aliases=tuple(AliasRecord(*row) for row in data["aliases"]),
            env=tuple(EnvRecord(*row) for row in data["env"]),
            literals=tuple(LiteralRecord(*row) for row in data["literals"]),
            exports=tuple(ExportRecord(*row) for row in data["exports"]),
            suppressions=tuple(
                SuppressionRecord(r[0], r[1], r[2], tuple(r[3]), r[4], r[5])
                for r in data["suppressions"]
            ),
            error=None if err is None else ParseError(*err),
        )
