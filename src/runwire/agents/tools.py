"""Two real, deterministic tools for the demo agent: arithmetic and text statistics."""

from __future__ import annotations

import ast
import math
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
MAX_RESULT_DIGITS = 1_000
"""Largest integer the calculator computes, in decimal digits (about 3,300 bits)."""
_MAX_RESULT_BITS = int(MAX_RESULT_DIGITS * 3.3219280948873626) + 1


def evaluate(expression: str) -> int | float:
    """Evaluate arithmetic (``+ - * / // % **``, parentheses, numbers) safely.

    Every operation is bounded before it runs, so no expression can hold the
    event loop: at most ``200`` characters, exponents up to ``64``, integers up to
    :data:`MAX_RESULT_DIGITS` digits, finite floats.

    Raises:
        ToolError: anything else, division by zero, or a bound exceeded.
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError("expression too long")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    except RecursionError:
        raise ToolError("expression nests too deeply") from None
    return _eval(tree.body)


def _eval(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: int | float = node.value  # type: ignore[assignment]
        return _bounded(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _check_cost(node.op, left, right)
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("result out of range") from None
    raise ToolError("only numbers and + - * / // % ** are allowed")


def _bits(value: int | float) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_cost(op: ast.operator, left: int | float, right: int | float) -> None:
    """Refuse an operation whose integer result would exceed the bound, before it runs."""
    if isinstance(op, ast.Pow):
        if abs(right) > _MAX_EXPONENT:
            raise ToolError("exponent too large")
        if isinstance(right, int) and right > 0 and _bits(left) * right > _MAX_RESULT_BITS:
            raise ToolError(f"result over {MAX_RESULT_DIGITS} digits")
    elif isinstance(op, ast.Mult) and _bits(left) + _bits(right) > _MAX_RESULT_BITS + 1:
        raise ToolError(f"result over {MAX_RESULT_DIGITS} digits")


def _bounded(value: int | float) -> int | float:
    if isinstance(value, int) and value.bit_length() > _MAX_RESULT_BITS:
        raise ToolError(f"result over {MAX_RESULT_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("result out of range")
    if not isinstance(value, int | float):
        raise ToolError("result is not a real number")
    return value


@tool
def calculator(expression: str) -> int | float:
    """Tool ``calculator``: the value of an arithmetic expression (runs in a thread)."""
    return evaluate(expression)


_WORD = re.compile(r"[\w']+")
_SENTENCE_END = re.compile(r"[.!?]+")


@tool
def text_stats(text: str) -> dict[str, int]:
    """Tool ``text_stats``: characters, words, sentences and distinct words of a text
    (runs in a thread)."""
    words = _WORD.findall(text.lower())
    return {
        "characters": len(text),
        "words": len(words),
        "sentences": max(1, len(_SENTENCE_END.findall(text))) if text.strip() else 0,
        "distinct_words": len(set(words)),
    }
