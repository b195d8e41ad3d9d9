"""Inline suppression comments: ``# ssotcheck: ignore[SSOT003] -- reason``.

Contract: :func:`find_suppressions` returns one
:class:`~ssotcheck.summary.SuppressionRecord` per comment that starts with
``ssotcheck:`` (real comments only: text in strings is never read).  A
comment at the end of a line of code applies to that line; a comment alone on
its line applies to the next line holding code.  Malformed comments are kept,
with ``problem`` saying what is wrong, so the engine can warn about them.
"""

from __future__ import annotations

import io
import re
import tokenize

from ssotcheck.summary import SuppressionRecord

_MARKER = re.compile(r"#\s*ssotcheck\s*:\s*(?P<rest>.*)$")
_IGNORE = re.compile(r"ignore(?:\[(?P<rules>[^\]]*)\])?\s*(?:--\s*(?P<reason>.*))?$")
_NON_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
)


def parse_comment(text: str) -> tuple[tuple[str, ...], str, str] | None:
    """``(rules, reason, problem)`` for a ``# ssotcheck: ...`` comment, else None."""
    marker = _MARKER.match(text.strip())
    if marker is None:
        return None
    rest = marker.group("rest").strip()
    match = _IGNORE.match(rest)
    if match is None:
        return (), "", f"unknown directive {rest!r}; expected 'ignore[RULE] -- reason'"
    raw_rules = match.group("rules")
    rules = tuple(r.strip().upper() for r in (raw_rules or "").split(",") if r.strip())
    reason = (match.group("reason") or "").strip()
    if not rules:
        return rules, reason, "names no rule; write ignore[SSOT00N] -- reason"
    if not reason:
        return rules, reason, "gives no reason; write ignore[...] -- why this is accepted"
    return rules, reason, ""


def find_suppressions(source: bytes) -> tuple[SuppressionRecord, ...]:
    """Every ``ssotcheck:`` comment of ``source`` (see module contract)."""
    pending: list[tuple[int, int, tuple[str, ...], str, str]] = []
    out: list[SuppressionRecord] = []
    code_lines: set[int] = set()
    try:
        tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return ()
    for tok in tokens:
        if tok.type not in _NON_CODE:
            if pending:
                for line, col, rules, reason, problem in pending:
                    out.append(SuppressionRecord(line, col, tok.start[0], rules, reason, problem))
                pending.clear()
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
            continue
        if tok.type != tokenize.COMMENT:
            continue
        parsed = parse_comment(tok.string)
        if parsed is None:
            continue
        line, col = tok.start[0], tok.start[1] + 1
        if line in code_lines:
            out.append(SuppressionRecord(line, col, line, *parsed))
        else:
            pending.append((line, col, *parsed))
    for line, col, rules, reason, problem in pending:
        out.append(SuppressionRecord(line, col, line, rules, reason, problem))
    out.sort(key=lambda s: (s.line, s.col))
    return tuple(out)
