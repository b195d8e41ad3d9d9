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
    """A method's normalised structure hash and its size in AST nodes."""

    name: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class ClassRecord:
    """A class definition; ``defaults`` holds literal field defaults."""

    name: str
    qualname: str
    line: int
    col: int
    methods: tuple[MethodRecord, ...]
    defaults: tuple[tuple[str, LiteralValue], ...]


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
                    [[m.name, m.digest, m.size] for m in c.methods],
                    [[k, v] for k, v in c.defaults],
                ]
                for c in self.classes
            ],
            "functions": list(self.functions),
            "calls": [[c.func, c.line, c.col, c.scope] for c in self.calls],
            "aliases": [[a.target, a.value, a.line, a.col, a.scope] for a in self.aliases],
            "env": [[e.what, e.line, e.col, e.scope] for e in self.env],
            "literals": [[x.value, x.line, x.col, x.scope] for x in self.literals],
            "exports": [[x.name, x.line, x.col] for x in self.exports],
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
                )
                for row in data["classes"]
            ),
            functions=tuple(data["functions"]),
            calls=tuple(CallRecord(*row) for row in data["calls"]),
            aliases=tuple(AliasRecord(*row) for row in data["aliases"]),
            env=tuple(EnvRecord(*row) for row in data["env"]),
            literals=tuple(LiteralRecord(*row) for row in data["literals"]),
            exports=tuple(ExportRecord(*row) for row in data["exports"]),
            error=None if err is None else ParseError(*err),
        )
