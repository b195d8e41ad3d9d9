"""Two real, deterministic tools for the demo agent: arithmetic and text statistics."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any

from runwire.agents.base import ToolError, tool

__all__ = ["calculator", "evaluate", "text_stats"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_MAX_EXPRESSION = 200
_MAX_EXPONENT = 64


def evaluate(expression: str) -> int | float:
    """Evaluate arithmetic (``+ - * / // % **``, parentheses, numbers) safely.

    Raises:
        ToolError: anything else, division by zero, or an exponent over 64.
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError("expression too long")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: int | float = node.value  # type: ignore[assignment]
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolError("exponent too large")
        try:
            return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
    raise ToolError("only numbers and + - * / // % ** are allowed")


@tool
async def calculator(expression: str) -> int | float:
    """Tool ``calculator``: the value of an arithmetic expression."""
    return evaluate(expression)


_WORD = re.compile(r"[\w']+")


@tool
async def text_stats(text: str) -> dict[str, int]:
    """Tool ``text_stats``: characters, words, sentences and distinct words of a text."""
    words = _WORD.findall(text.lower())
    return {
        "characters": len(text),
        "words": len(words),
        "sentences": max(1, len(re.findall(r"[.!?]+", text))) if text.strip() else 0,
        "distinct_words": len(set(words)),
    }
