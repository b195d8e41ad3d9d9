"""Structural fingerprints of functions (for near-duplicate detection).

Contract: two functions get the same digest iff their ASTs are equal after
(1) dropping the function's own name and docstring, (2) consistently renaming
every identifier (names, arguments, attribute names, keywords) in order of first
appearance, and (3) replacing string/number constants by a type tag.  The size
is the number of AST nodes.  :func:`class_digests` re-parses a file and
returns the digests of the methods of the classes asked for; the scanner only
keeps cheap *shapes*, so this is done for the few candidate classes only.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Collection

_SKIP_FIELDS = frozenset({"type_comment", "kind"})


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


class _Serializer:
    __slots__ = ("names", "out", "size")

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.out: list[str] = []
        self.size = 0

    def ident(self, value: str) -> None:
        token = self.names.get(value)
        if token is None:
            token = f"v{len(self.names)}"
            self.names[value] = token
        self.out.append(token)

    def node(self, node: ast.AST) -> None:
        self.size += 1
        out = self.out
        out.append(type(node).__name__)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or value is None or value is Ellipsis:
                out.append(repr(value))
            else:
                out.append(type(value).__name__)
            return
        for field in node._fields:
            if field in _SKIP_FIELDS:
                continue
            value = getattr(node, field, None)
            if isinstance(value, list):
                out.append("[")
                for item in value:
                    if isinstance(item, ast.AST):
                        self.node(item)
                    elif isinstance(item, str):
                        self.ident(item)
                    else:
                        out.append(repr(item))
                out.append("]")
            elif isinstance(value, ast.AST):
                self.node(value)
            elif isinstance(value, str):
                self.ident(value)
            else:
                out.append(repr(value))


def fingerprint(func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, int]:
    """Return ``(digest, size)`` for ``func`` (see module contract)."""
    ser = _Serializer()
    ser.out.append(type(func).__name__)
    for deco in func.decorator_list:
        ser.node(deco)
    ser.node(func.args)
    if func.returns is not None:
        ser.node(func.returns)
    body = func.body[1:] if func.body and _is_docstring(func.body[0]) else func.body
    ser.out.append("[")
    for stmt in body:
        ser.node(stmt)
    ser.out.append("]")
    digest = hashlib.blake2b(" ".join(ser.out).encode(), digest_size=12).hexdigest()
    return digest, ser.size + 1


def class_digests(
    source: bytes, qualnames: Collection[str] | None = None
) -> dict[str, dict[str, str]]:
    """``{class qualname: {method name: digest}}`` for the ``qualnames`` in ``source``.

    ``None`` means every class.  A file that no longer parses yields ``{}``.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}
    wanted = set(qualnames) if qualnames is not None else None
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}.{child.name}" if prefix else child.name
                if isinstance(child, ast.ClassDef) and (wanted is None or qualname in wanted):
                    out[qualname] = {
                        stmt.name: fingerprint(stmt)[0]
                        for stmt in child.body
                        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
                    }
                stack.append((child, qualname))
            elif isinstance(child, ast.stmt):
                stack.append((child, prefix))
    return out
