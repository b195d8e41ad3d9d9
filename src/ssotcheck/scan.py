"""Per-file summary extraction: parse once, walk once, keep only facts.

Contract: :func:`summarize` maps source bytes to a :class:`FileSummary` that
depends on nothing but those bytes.  A file that does not parse yields a summary
with ``error`` set and no other facts.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from typing import Any

from ssotcheck.normalize import fingerprint
from ssotcheck.summary import (
    MODULE_SCOPE,
    AliasRecord,
    CallRecord,
    ClassRecord,
    EnvRecord,
    ExportRecord,
    FileSummary,
    ImportRecord,
    LiteralRecord,
    LiteralValue,
    MethodRecord,
    ParseError,
)

ENV_ATTRS = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})
"""Attributes of :mod:`os` that read or write the process environment."""

_FuncDef = ast.FunctionDef | ast.AsyncFunctionDef


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def literal_value(node: ast.expr) -> LiteralValue | None:
    """The value of a str/int/float literal (``-30`` included), bools excluded."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
        if not isinstance(node, ast.Constant) or isinstance(node.value, str):
            return None
    if not isinstance(node, ast.Constant):
        return None
    value = node.value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return sign * value
    if isinstance(value, str):
        return value
    return None


def _is_trivial(value: LiteralValue) -> bool:
    """Literals too small to ever be worth recording (see SSOT008)."""
    if isinstance(value, str):
        return len(value) < 4
    return abs(value) < 10


def _field_default(value: ast.expr) -> LiteralValue | None:
    """Default of ``x: T = <lit>`` or ``x: T = Field(<lit>)``/``Field(default=<lit>)``."""
    lit = literal_value(value)
    if lit is not None:
        return lit
    if isinstance(value, ast.Call):
        name = dotted_name(value.func)
        if name is not None and name.rsplit(".", 1)[-1] in {"Field", "field"}:
            for kw in value.keywords:
                if kw.arg == "default":
                    return literal_value(kw.value)
            if value.args:
                return literal_value(value.args[0])
    return None


def _is_type_checking(test: ast.expr) -> bool:
    name = dotted_name(test)
    return name is not None and name.rsplit(".", 1)[-1] == "TYPE_CHECKING"


class _Walker:
    """Single recursive pass collecting raw facts."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.in_function = 0
        self.type_checking = 0
        self.imports: list[ImportRecord] = []
        self.classes: list[ClassRecord] = []
        self.functions: list[str] = []
        self.calls: list[CallRecord] = []
        self.aliases: list[AliasRecord] = []
        self.env_candidates: list[tuple[str, str, int, int, str]] = []
        self.literals: list[LiteralRecord] = []
        self.exports: list[ExportRecord] = []

    # -- helpers ---------------------------------------------------------
    @property
    def scope_name(self) -> str:
        return ".".join(self.scope) if self.scope else MODULE_SCOPE

    def visit_all(self, nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            self.visit(node)

    def visit(self, node: ast.AST) -> None:
        method = _DISPATCH.get(type(node))
        if method is not None:
            method(self, node)
        else:
            self.visit_all(ast.iter_child_nodes(node))

    # -- statements ------------------------------------------------------
    def visit_import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(
                ImportRecord(
                    alias.name,
                    None,
                    alias.asname,
                    0,
                    node.lineno,
                    node.col_offset + 1,
                    self.scope_name,
                    self.type_checking > 0,
                    self.in_function > 0,
                )
            )

    def visit_import_from(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module == "__future__":
            return
        for alias in node.names:
            self.imports.append(
                ImportRecord(
                    module,
                    alias.name,
                    alias.asname,
                    node.level,
                    node.lineno,
                    node.col_offset + 1,
                    self.scope_name,
                    self.type_checking > 0,
                    self.in_function > 0,
                )
            )

    def visit_function(self, node: _FuncDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.scope.append(node.name)
        self.functions.append(self.scope_name)
        self.in_function += 1
        self.visit_all(node.body)
        self.in_function -= 1
        self.scope.pop()

    def visit_class(self, node: ast.ClassDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        self.scope.append(node.name)
        methods: list[MethodRecord] = []
        defaults: list[tuple[str, LiteralValue]] = []
        for stmt in node.body:
            if isinstance(stmt, _FuncDef):
                digest, size = fingerprint(stmt)
                methods.append(MethodRecord(stmt.name, digest, size))
            elif (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.value is not None
            ):
                lit = _field_default(stmt.value)
                if lit is not None:
                    defaults.append((stmt.target.id, lit))
            elif (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                lit = _field_default(stmt.value)
                if lit is not None:
                    defaults.append((stmt.targets[0].id, lit))
        self.classes.append(
            ClassRecord(
                node.name,
                self.scope_name,
                node.lineno,
                node.col_offset + 1,
                tuple(methods),
                tuple(defaults),
            )
        )
        self.visit_all(node.body)
        self.scope.pop()

    def visit_if(self, node: ast.If) -> None:
        self.visit(node.test)
        if _is_type_checking(node.test):
            self.type_checking += 1
            self.visit_all(node.body)
            self.type_checking -= 1
        else:
            self.visit_all(node.body)
        self.visit_all(node.orelse)

    def visit_expr_stmt(self, node: ast.Expr) -> None:
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return  # docstrings and bare string statements are not code
        self.visit(value)

    def _record_alias(self, target: ast.expr, value: ast.expr) -> None:
        if not isinstance(target, ast.Name):
            return
        dotted = dotted_name(value)
        if dotted is not None:
            self.aliases.append(
                AliasRecord(
                    target.id, dotted, target.lineno, target.col_offset + 1, self.scope_name
                )
            )

    def _record_exports(self, value: ast.expr) -> None:
        if isinstance(value, ast.List | ast.Tuple):
            for elt in value.elts:
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    self.exports.append(ExportRecord(elt.value, elt.lineno, elt.col_offset + 1))

    def visit_assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._record_alias(target, node.value)
            if isinstance(target, ast.Name) and target.id == "__all__" and not self.scope:
                self._record_exports(node.value)
        self.visit_all(node.targets)
        self.visit(node.value)

    def visit_ann_assign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._record_alias(node.target, node.value)
            self.visit(node.value)
        self.visit(node.target)
        self.visit(node.annotation)

    def visit_aug_assign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name) and target.id == "__all__" and not self.scope:
            self._record_exports(node.value)
        self.visit(target)
        self.visit(node.value)

    # -- expressions -----------------------------------------------------
    def visit_call(self, node: ast.Call) -> None:
        dotted = dotted_name(node.func)
        if dotted is not None:
            self.calls.append(CallRecord(dotted, node.lineno, node.col_offset + 1, self.scope_name))
        self.visit(node.func)
        self.visit_all(node.args)
        self.visit_all(node.keywords)

    def visit_attribute(self, node: ast.Attribute) -> None:
        if node.attr in ENV_ATTRS and isinstance(node.value, ast.Name):
            self.env_candidates.append(
                (node.value.id, node.attr, node.lineno, node.col_offset + 1, self.scope_name)
            )
        self.visit(node.value)

    def visit_constant(self, node: ast.Constant) -> None:
        lit = literal_value(node)
        if lit is not None and not _is_trivial(lit):
            self.literals.append(
                LiteralRecord(lit, node.lineno, node.col_offset + 1, self.scope_name)
            )

    def visit_unary(self, node: ast.UnaryOp) -> None:
        lit = literal_value(node)
        if lit is None:
            self.visit(node.operand)
        elif not _is_trivial(lit):
            self.literals.append(
                LiteralRecord(lit, node.lineno, node.col_offset + 1, self.scope_name)
            )

    def visit_joined_str(self, node: ast.JoinedStr) -> None:
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value.value)


_DISPATCH: dict[type[ast.AST], Callable[[_Walker, Any], None]] = {
    ast.Import: _Walker.visit_import,
    ast.ImportFrom: _Walker.visit_import_from,
    ast.FunctionDef: _Walker.visit_function,
    ast.AsyncFunctionDef: _Walker.visit_function,
    ast.ClassDef: _Walker.visit_class,
    ast.If: _Walker.visit_if,
    ast.Expr: _Walker.visit_expr_stmt,
    ast.Assign: _Walker.visit_assign,
    ast.AnnAssign: _Walker.visit_ann_assign,
    ast.AugAssign: _Walker.visit_aug_assign,
    ast.Call: _Walker.visit_call,
    ast.Attribute: _Walker.visit_attribute,
    ast.Constant: _Walker.visit_constant,
    ast.UnaryOp: _Walker.visit_unary,
    ast.JoinedStr: _Walker.visit_joined_str,
}


def _binding_name(record: ImportRecord) -> str:
    if record.name is not None:
        return record.asname or record.name
    return record.asname or record.module.split(".", 1)[0]


def _finish(walker: _Walker, lines: int) -> FileSummary:
    bound: set[str] = {_binding_name(i) for i in walker.imports}
    bound.update(a.target for a in walker.aliases)
    bound.update(c.name for c in walker.classes)
    calls = tuple(c for c in walker.calls if c.func.split(".", 1)[0] in bound)

    os_names = {
        i.asname or "os"
        for i in walker.imports
        if i.name is None
        and i.level == 0
        and (i.module == "os" or (i.asname is None and i.module.startswith("os.")))
    }
    env: list[EnvRecord] = [
        EnvRecord(f"os.{attr}", line, col, scope)
        for name, attr, line, col, scope in walker.env_candidates
        if name in os_names
    ]
    env.extend(
        EnvRecord(f"from os import {i.name}", i.line, i.col, i.scope)
        for i in walker.imports
        if i.module == "os" and i.level == 0 and i.name in ENV_ATTRS
    )
    env.sort(key=lambda e: (e.line, e.col))
    return FileSummary(
        lines=lines,
        imports=tuple(walker.imports),
        classes=tuple(walker.classes),
        functions=tuple(walker.functions),
        calls=calls,
        aliases=tuple(walker.aliases),
        env=tuple(env),
        literals=tuple(walker.literals),
        exports=tuple(walker.exports),
    )


def count_lines(source: bytes) -> int:
    """Number of lines in ``source`` (a final line without newline counts)."""
    if not source:
        return 0
    return source.count(b"\n") + (0 if source.endswith(b"\n") else 1)


def summarize(source: bytes) -> FileSummary:
    """Parse ``source`` once and extract its :class:`FileSummary`."""
    lines = count_lines(source)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return FileSummary(
            lines=lines,
            error=ParseError(exc.msg or "invalid syntax", exc.lineno or 1, exc.offset or 1),
        )
    except ValueError as exc:  # e.g. null bytes
        return FileSummary(lines=lines, error=ParseError(str(exc), 1, 1))
    walker = _Walker()
    walker.visit_all(tree.body)
    return _finish(walker, lines)
