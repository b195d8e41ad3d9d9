"""The demo tools: bounded arithmetic and a linear expression search."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings, strategies as st

from runwire.agents.base import ToolError
from runwire.agents.demo import find_expression
from runwire.agents.tools import MAX_RESULT_DIGITS, evaluate

# The expression pattern of cd924f8: correct, but quadratic on long runs of "(".
_OLD_PATTERN = re.compile(r"[-+(]*\d[\d\s.+\-*/%()]*[\d)]")


def _old_find(message: str) -> str | None:
    match = _OLD_PATTERN.search(message)
    if match and any(op in match.group() for op in "+-*/%"):
        return match.group().strip()
    return None


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("17 * 23", 391),
        ("2 ** 64", 2**64),
        ("9**64 * 9**64", 9**128),
        ("-(3 + 4) * 2", -14),
        ("7 // 2 + 7 % 2", 4),
        ("2 ** -1", 0.5),
    ],
)
def test_arithmetic_within_bounds(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("((9**64)**64)**64", f"result over {MAX_RESULT_DIGITS} digits"),
        ("(((9**64)**64)**64)**64 % 7", f"result over {MAX_RESULT_DIGITS} digits"),
        ("10**64**64", "exponent too large"),
        ("(10**60)**60 * (10**60)**60", f"result over {MAX_RESULT_DIGITS} digits"),
        ("1e308 * 10", "result out of range"),
        ("(-8) ** 0.5", "result is not a real number"),
        ("1e300 ** 2", "result out of range"),
        ("1 / 0", "division by zero"),
        ("__import__('os')", "only numbers"),
        ("1" * 201, "expression too long"),
    ],
)
def test_every_operation_is_bounded_before_it_runs(expression: str, error: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError, match=re.escape(error)):
        evaluate(expression)
    assert time.perf_counter() - started < 1.0  # cd924f8 computed for 13 s


def test_the_largest_allowed_result_is_computed_exactly() -> None:
    value = evaluate("(10**50)**19 * 10**49")
    assert isinstance(value, int) and len(str(value)) == MAX_RESULT_DIGITS


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789 +-*/%().ab?(", max_size=40))
def test_the_linear_search_finds_what_the_old_pattern_found(message: str) -> None:
    """Where the old pattern found an expression with an operator, so does the new
    search, and the same one."""
    old = _old_find(message)
    if old is not None:
        assert find_expression(message) == old


@pytest.mark.parametrize(
    ("message", "expression"),
    [
        ("what is 17 * 23?", "17 * 23"),
        ("what is ((9**64)**64)**64?", "((9**64)**64)**64"),
        ("I have 2 cats", None),
        ("(" * 16_000, None),
        ("(" * 15_990 + "1+1", "(" * 15_990 + "1+1"),
    ],
)
def test_find_expression(message: str, expression: str | None) -> None:
    assert find_expression(message) == expression
