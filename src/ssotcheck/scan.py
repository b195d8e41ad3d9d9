"""Per-file summary extraction: parse once, walk once, keep only facts.

Contract: :func:`summarize` maps source bytes to a :class:`FileSummary` that
depends on nothing but those bytes.  A file that does not parse yields a summary
with ``error`` set and no other facts.  The walk visits every AST node once
(``ctx`` and operator leaves are skipped); method bodies are not serialised
here -- their exact structural digests are computed on demand by
:mod:`ssotcheck.normalize` for the few classes that need them.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ssotcheck.comments import find_suppressions
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

_SCALAR_FIELDS = frozenset(
    {
        "name",
        "id",
        "attr",
        "arg",
        "ctx",
        "op",
        "ops",
        "module",
        "level",
        "simple",
        "type_comment",
        "kind",
        "conversion",
        "is_async",
        "names",
        "kwd_attrs",
        "rest",
        "asname",
        "tag",
        "lineno",
    }
)
"""Fields that never hold a node worth visiting (identifiers, ctx, operators)."""


def _child_fields() -> dict[type[ast.AST], tuple[str, ...]]:
    table: dict[type[ast.AST], tuple[str, ...]] = {}
    for name in dir(ast):
        cls = getattr(ast, name)
        if isinstance(cls, type) and issubclass(cls, ast.AST):
            table[cls] = tuple(f for f in cls._fields if f not in _SCALAR_FIELDS)
    table[ast.MatchSingleton] = ()  # its ``value`` is a plain constant
    return table


_CHILDREN = _child_fields()


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if type(node) is ast.Name:
        return node.id
    parts: list[str] = []
    while type(node) is ast.Attribute:
        parts.append(node.attr)
        node = node.value
    if type(node) is not ast.Name:
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


def _base_name(node: ast.expr) -> str | None:
    """Dotted name of a base class expression: ``Protocol[T]`` -> ``Protocol``."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Call):
        name = dotted_name(node.func)
        return f"{name}()" if name is not None else None
    return dotted_name(node)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_stub(func: _FuncDef) -> bool:
    """Body is only a docstring, ``pass``, ``...`` or ``raise NotImplementedError``."""
    body = func.body[1:] if func.body and _is_docstring(func.body[0]) else func.body
    if not body:
        return True
    if len(body) > 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        name = dotted_name(exc)
        return name is not None and name.rsplit(".", 1)[-1] == "NotImplementedError"
    return False


def _is_abstract(func: _FuncDef) -> bool:
    for deco in func.decorator_list:
        name = dotted_name(deco)
        if name is not None and name.rsplit(".", 1)[-1].startswith("abstract"):
            return True
    return False


def _self_name(func: _FuncDef) -> str | None:
    """Name of the instance argument of a method (None for static methods)."""
    for deco in func.decorator_list:
        if dotted_name(deco) in {"staticmethod", "classmethod"}:
            return None
    args = func.args.posonlyargs or func.args.args
    return args[0].arg if args else None


class _ClassFacts:
    """Mutable facts of one class while its body is being walked."""

    __slots__ = ("attrs", "methods", "refs")

    def __init__(self) -> None:
        self.attrs: set[str] = set()
        self.refs: set[str] = set()
        self.methods: list[MethodRecord] = []


_PLAIN_ANNOTATIONS = frozenset({ast.Name, ast.Attribute})
"""Annotations that cannot hold a string (most of them): no need to look inside."""

_NESTED = (ast.stmt, ast.excepthandler, ast.match_case)
"""Nodes that hold statements: visited recursively, everything else by :meth:`_Walker.expr`."""


class _Walker:
    """One pass collecting raw facts: statements recursively, expressions iteratively."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.scope_name = MODULE_SCOPE
        """``".".join(scope)`` (kept up to date: it is read for every record)."""
        self.kinds: list[bool] = []
        """Parallel to ``scope``: True for a class, False for a function."""
        self.class_stack: list[_ClassFacts] = []
        self.self_names: list[str | None] = []
        self.in_function = 0
        self.type_checking = 0
        self.count = 0
        self.ncalls = 0
        self.nattrs = 0
        self.imports: list[ImportRecord] = []
        self.classes: list[ClassRecord] = []
        self.functions: list[str] = []
        self.calls: list[CallRecord] = []
        self.aliases: list[AliasRecord] = []
        self.env_candidates: list[tuple[str, str, int, int, str]] = []
        self.literals: list[LiteralRecord] = []
        self.exports: list[ExportRecord] = []

    # -- helpers ---------------------------------------------------------
    def push_scope(self, name: str, is_class: bool) -> None:
        self.scope.append(name)
        self.kinds.append(is_class)
        self.scope_name = ".".join(self.scope)

    def pop_scope(self) -> None:
        self.scope.pop()
        self.kinds.pop()
        self.scope_name = ".".join(self.scope) if self.scope else MODULE_SCOPE

    def visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        for node in nodes:
            if node is None:
                continue
            if isinstance(node, _NESTED):
                self.visit(node)
            else:
                self.expr(node)

    def visit(self, node: ast.AST) -> None:
        """A statement (or a handler/case holding statements)."""
        self.count += 1
        method = _DISPATCH.get(type(node))
        if method is not None:
            method(self, node)
            return
        for name in _CHILDREN[type(node)]:
            value = getattr(node, name, None)
            if value is None:
                continue
            if type(value) is list:
                self.visit_all(value)
            elif isinstance(value, _NESTED):
                self.visit(value)
            else:
                self.expr(value)

    def expr(self, root: ast.AST) -> None:
        """Every node of an expression subtree (no statements inside), iteratively."""
        stack: list[Any] = [root]  # nodes of many types: checked by ``type`` below
        pop, push = stack.pop, stack.append
        facts = self.class_stack[-1] if self.class_stack else None
        self_name = self.self_names[-1] if self.self_names else None
        scope = self.scope_name
        count = ncalls = nattrs = 0
        while stack:
            node = pop()
            count += 1
            kind = type(node)
            if kind is ast.Name:
                if facts is not None:
                    facts.refs.add(node.id)
                continue
            if kind is ast.Attribute:
                nattrs += 1
                value = node.value
                if type(value) is ast.Name:
                    attr = node.attr
                    if attr in ENV_ATTRS:
                        self.env_candidates.append(
                            (value.id, attr, node.lineno, node.col_offset + 1, scope)
                        )
                    if facts is not None:
                        facts.refs.add(f"{value.id}.{attr}")
                        if (
                            type(node.ctx) is ast.Store
                            and value.id == self_name
                            and not attr.startswith("_")
                        ):
                            facts.attrs.add(attr)
                push(value)
                continue
            if kind is ast.Constant:
                value = node.value
                if type(value) is str:
                    keep = len(value) >= 4
                elif type(value) is int or type(value) is float:
                    keep = abs(value) >= 10
                else:
                    keep = False
                if keep:
                    literals = self.literals
                    literals.append(LiteralRecord(value, node.lineno, node.col_offset + 1, scope))
                continue
            if kind is ast.Call:
                ncalls += 1
                func = node.func
                dotted = dotted_name(func)
                if dotted is not None:
                    self.calls.append(CallRecord(dotted, node.lineno, node.col_offset + 1, scope))
                push(func)
                stack.extend(node.args)
                stack.extend(node.keywords)
                continue
            if kind is ast.UnaryOp:
                lit = literal_value(node)
                if lit is None:
                    push(node.operand)
                elif not _is_trivial(lit):
                    self.literals.append(
                        LiteralRecord(lit, node.lineno, node.col_offset + 1, scope)
                    )
                continue
            if kind is ast.JoinedStr:
                for part in node.values:
                    if type(part) is ast.FormattedValue:
                        push(part.value)
                continue
            for name in _CHILDREN[kind]:
                value = getattr(node, name, None)
                if value is None:
                    continue
                if type(value) is list:
                    for item in value:
                        if item is not None:
                            push(item)
                else:
                    push(value)
        self.count += count
        self.ncalls += ncalls
        self.nattrs += nattrs

    def _annotation_refs(self, node: ast.expr | None) -> None:
        """Record names inside string annotations (``'Manager'``) as class refs."""
        if node is None or not self.class_stack or type(node) in _PLAIN_ANNOTATIONS:
            return
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                try:
                    parsed = ast.parse(sub.value, mode="eval")
                except (SyntaxError, ValueError):
                    continue
                refs = self.class_stack[-1].refs
                for inner in ast.walk(parsed):
                    if isinstance(inner, ast.Name):
                        refs.add(inner.id)
                    elif isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name):
                        refs.add(f"{inner.value.id}.{inner.attr}")

    def _annotation(self, node: ast.expr | None) -> None:
        if node is not None:
            self.expr(node)
            self._annotation_refs(node)

    def _arguments(self, args: ast.arguments) -> None:
        self.count += 1
        for arg in (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg):
            if arg is not None:
                self.count += 1
                self._annotation(arg.annotation)
        self.visit_all(args.defaults)
        self.visit_all(args.kw_defaults)

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
        is_method = bool(self.kinds) and self.kinds[-1]
        start = (self.count, self.ncalls, self.nattrs)
        self.visit_all(node.decorator_list)
        self._arguments(node.args)
        self._annotation(node.returns)
        self.push_scope(node.name, False)
        self.functions.append(self.scope_name)
        self.in_function += 1
        if is_method:
            self.self_names.append(_self_name(node))
        self.visit_all(node.body)
        if is_method:
            self.self_names.pop()
        self.in_function -= 1
        self.pop_scope()
        if is_method:
            size = self.count - start[0]
            shape = f"{size}.{self.ncalls - start[1]}.{self.nattrs - start[2]}"
            self.class_stack[-1].methods.append(
                MethodRecord(node.name, shape, size, _is_stub(node), _is_abstract(node))
            )

    def visit_class(self, node: ast.ClassDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        bases = tuple(b for b in (_base_name(x) for x in node.bases) if b is not None)
        metaclass = next(
            (dotted_name(k.value) for k in node.keywords if k.arg == "metaclass"), None
        )
        facts = _ClassFacts()
        facts.refs.update(b.removesuffix("()") for b in bases)
        if metaclass is not None:
            facts.refs.add(metaclass)
        defaults: list[tuple[str, LiteralValue]] = []
        for stmt in node.body:
            target: ast.expr | None = None
            value: ast.expr | None = None
            if isinstance(stmt, ast.AnnAssign):
                target, value = stmt.target, stmt.value
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            if not isinstance(target, ast.Name):
                continue
            if not target.id.startswith("_"):
                facts.attrs.add(target.id)
            if value is not None:
                lit = _field_default(value)
                if lit is not None:
                    defaults.append((target.id, lit))
        self.push_scope(node.name, True)
        self.class_stack.append(facts)
        self.visit_all(node.body)
        self.class_stack.pop()
        qualname = self.scope_name
        self.pop_scope()
        method_names = {m.name for m in facts.methods}
        self.classes.append(
            ClassRecord(
                node.name,
                qualname,
                node.lineno,
                node.col_offset + 1,
                tuple(facts.methods),
                tuple(defaults),
                bases,
                metaclass,
                tuple(sorted(facts.attrs - method_names)),
                tuple(sorted(facts.refs)),
            )
        )

    def visit_if(self, node: ast.If) -> None:
        self.expr(node.test)
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
            self.count -= 1  # docstrings and bare string statements are not code
            return
        self.expr(value)

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
            self.expr(target)
        self.expr(node.value)

    def visit_ann_assign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._record_alias(node.target, node.value)
            self.expr(node.value)
        self.expr(node.target)
        self._annotation(node.annotation)

    def visit_aug_assign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name) and target.id == "__all__" and not self.scope:
            self._record_exports(node.value)
        self.expr(target)
        self.expr(node.value)


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
    classes = tuple(
        replace(c, refs=tuple(r for r in c.refs if r.split(".", 1)[0] in bound)) if c.refs else c
        for c in walker.classes
    )

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
        classes=classes,
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
    summary = _finish(walker, lines)
    if b"ssotcheck" in source:
        suppressions = find_suppressions(source)
        if suppressions:
            summary = replace(summary, suppressions=suppressions)
    return summary
