"""The rule set.

Contract: each rule is a function ``(index, config) -> Iterable[Finding]`` that
only emits findings for files marked ``report``; :func:`run_rules` runs them
all and returns the findings sorted by path, line, column and rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ssotcheck.config import Config
from ssotcheck.findings import Finding
from ssotcheck.index import ProjectIndex
from ssotcheck.rules.construction import check_construction
from ssotcheck.rules.cycles import check_cycles
from ssotcheck.rules.defaults import check_config_defaults
from ssotcheck.rules.definitions import check_definitions
from ssotcheck.rules.environment import check_environment
from ssotcheck.rules.imports import check_imports

RuleFunc = Callable[[ProjectIndex, Config], Iterable[Finding]]

ALL_RULES: tuple[RuleFunc, ...] = (
    check_definitions,
    check_imports,
    check_construction,
    check_cycles,
    check_environment,
    check_config_defaults,
)


def run_rules(index: ProjectIndex, config: Config) -> list[Finding]:
    """Run every rule over ``index``; findings sorted deterministically."""
    findings: list[Finding] = []
    for rule in ALL_RULES:
        findings.extend(rule(index, config))
    findings.sort(key=Finding.sort_key)
    return findings


__all__ = ["ALL_RULES", "RuleFunc", "run_rules"]
