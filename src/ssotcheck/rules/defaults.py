"""SSOT008 duplicated-config-default.

Fires for a literal in code (not docstrings) outside the config module that
equals a literal field default of the ``config_defaults`` class.  Only numbers
with absolute value >= 10 and strings of >= 4 characters count, minus the
``ignore_literals`` set; ints and floats compare by value, bools never match.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ssotcheck.config import Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ProjectIndex
from ssotcheck.rules.environment import in_module
from ssotcheck.summary import LiteralValue

LiteralKey = tuple[str, int | float | str]


def literal_key(value: LiteralValue) -> LiteralKey | None:
    """Comparison key (``30 == 30.0``); None for values never worth flagging."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return ("s", value) if len(value) >= 4 else None
    if abs(value) < 10:
        return None
    if isinstance(value, float) and value.is_integer():
        return ("n", int(value))
    return ("n", value)


def _keys(values: Iterable[int | float | str]) -> set[LiteralKey]:
    return {k for k in (literal_key(v) for v in values) if k is not None}


def check_config_defaults(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT008 findings."""
    target = config.config_defaults
    owner = config.defaults_module
    if target is None or owner is None:
        return
    cls = index.class_record(target.module, target.attr)
    if cls is None:
        return
    ignored = _keys(config.ignore_literals)
    fields: dict[LiteralKey, str] = {}
    for name, value in cls.defaults:
        key = literal_key(value)
        if key is not None and key not in ignored:
            fields.setdefault(key, name)
    if not fields:
        return
    for info in index.infos:
        if not info.file.report or in_module(info.name, owner):
            continue
        for lit in info.summary.literals:
            key = literal_key(lit.value)
            field = fields.get(key) if key is not None else None
            if field is None:
                continue
            yield make_finding(
                "SSOT008",
                info.file.relpath,
                lit.line,
                lit.col,
                f"literal {lit.value!r} duplicates the default of {target}.{field}",
                f"{lit.scope}:{lit.value!r}",
                f"use the `{field}` setting from `{target.module}` instead",
            )
