"""Finding records and the rule table.

Contract: every rule emits :class:`Finding` objects whose ``symbol`` is stable
under line moves (it never contains a line number), so ``(rule, path, symbol)``
can key a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rule:
    """Static description of one rule (used by reports and SARIF)."""

    id: str
    name: str
    short: str
    hint: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation.

    ``path`` is a posix path relative to the config directory (absolute when the
    file lives outside it); ``line`` and ``col`` are 1-based.
    """

    rule: str
    path: str
    line: int
    col: int
    message: str
    symbol: str
    hint: str = ""

    @property
    def name(self) -> str:
        """The human-readable rule name, e.g. ``duplicate-definition``."""
        return RULES[self.rule].name

    @property
    def key(self) -> tuple[str, str, str]:
        """Baseline key: ``(rule, path, symbol)`` -- no line numbers."""
        return (self.rule, self.path, self.symbol)

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Ordering used by every output format."""
        return (self.path, self.line, self.col, self.rule, self.symbol)


_RULE_LIST = [
    Rule(
        "SSOT001",
        "duplicate-definition",
        "A class looking like a concept is defined outside its canonical location.",
        "delete this class and import the canonical one from its public path",
    ),
    Rule(
        "SSOT002",
        "near-duplicate",
        "A class whose methods structurally copy a concept class.",
        "reuse (or subclass) the canonical class instead of copying its code",
    ),
    Rule(
        "SSOT003",
        "alias",
        "A concept is bound or re-exported under another name.",
        "use the concept under its own name; drop the alias",
    ),
    Rule(
        "SSOT004",
        "non-canonical-import",
        "A concept is imported from a module other than its public path.",
        "import the concept from its public module",
    ),
    Rule(
        "SSOT005",
        "construction-outside-factory",
        "A concept is constructed outside its factory function.",
        "call the factory function instead of the constructor",
    ),
    Rule(
        "SSOT006",
        "import-cycle",
        "Scanned modules import each other at module level.",
        "move the shared code down a layer, or import lazily inside a function",
    ),
    Rule(
        "SSOT007",
        "env-read-outside-config",
        "The environment is accessed outside the configuration module.",
        "read the setting from the configuration module instead",
    ),
    Rule(
        "SSOT008",
        "duplicated-config-default",
        "A configuration default literal is repeated outside the configuration module.",
        "reference the settings field instead of repeating its default value",
    ),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULE_LIST}
"""Rule id -> :class:`Rule`, in rule-id order."""


def make_finding(
    rule: str,
    path: str,
    line: int,
    col: int,
    message: str,
    symbol: str,
    hint: str | None = None,
) -> Finding:
    """Build a finding; ``hint`` defaults to the rule's standard fix hint."""
    return Finding(rule, path, line, col, message, symbol, hint or RULES[rule].hint)


@dataclass(frozen=True, slots=True)
class FileError:
    """A file that could not be read or parsed (forces exit code 2)."""

    path: str
    line: int
    col: int
    message: str


@dataclass(frozen=True, slots=True)
class StaleEntry:
    """A baseline entry that occurs fewer times than recorded (or not at all)."""

    rule: str
    path: str
    symbol: str
    recorded: int
    current: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning that never changes the exit code (e.g. an unused suppression)."""

    path: str
    line: int
    col: int
    message: str


@dataclass(frozen=True, slots=True)
class Stats:
    """Work done by one run (``parsed`` counts cache misses)."""

    files: int
    lines: int
    parsed: int
    cache_hits: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Report:
    """Outcome of one check.

    ``findings`` are the findings not suppressed by the baseline (or, with
    ``--diff``, not present at the base revision); ``all_findings`` includes
    those, but never findings suppressed by an inline comment (``inline``
    counts them).  ``notices`` are warnings (bad or unused suppressions);
    ``fixed`` counts findings of the base revision that are gone.
    """

    findings: list[Finding]
    all_findings: list[Finding]
    errors: list[FileError]
    stale: list[StaleEntry]
    suppressed: int
    stats: Stats
    notices: list[Notice] = field(default_factory=list)
    inline: int = 0
    fixed: int = 0
    base: str | None = None
    """The ``--diff`` revision findings were compared with, if any."""

    @property
    def exit_code(self) -> int:
        """2 if a file could not be parsed, else 1 if findings remain, else 0."""
        if self.errors:
            return 2
        return 1 if self.findings else 0
