"""Test helpers: build a tiny demo project, run the checker, collect hits.

Contract: :func:`make_project` writes a small, *clean* ``wire`` package (a
canonical ``WebSocketManager`` with factory, a ``Settings`` config class and a
public ``wire`` package) plus any extra files, and returns its pyproject path;
the helpers never touch the cache unless asked.  Used by ssotcheck's own tests
and handy for tests of projects that adopt ssotcheck (:func:`assert_clean`).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ssotcheck.comments import find_suppressions
from ssotcheck.engine import check
from ssotcheck.findings import RULES, Finding, Report

CONFIG = """\
[tool.ssotcheck]
paths = ["src"]
config_module = "wire.config"
config_defaults = "wire.config:Settings"
{extra}
[[tool.ssotcheck.concepts]]
name = "manager"
canonical = "wire.manager:WebSocketManager"
public = "wire"
factory = "wire.manager:create_manager"
patterns = ["*WebSocket*Manager*", "*ConnectionManager*"]
{concept}"""

MANAGER = '''\
"""Canonical manager."""


class WebSocketManager:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.connections: dict[str, object] = {}

    def add(self, key: str, conn: object) -> None:
        if len(self.connections) >= self.limit:
            raise RuntimeError("too many connections")
        self.connections[key] = conn

    def remove(self, key: str) -> object | None:
        conn = self.connections.pop(key, None)
        if conn is None:
            return None
        return conn


def create_manager(limit: int = 100) -> WebSocketManager:
    return WebSocketManager(limit)
'''

BASE_FILES = {
    "src/wire/__init__.py": (
        "from wire.manager import WebSocketManager, create_manager\n\n"
        '__all__ = ["WebSocketManager", "create_manager"]\n'
    ),
    "src/wire/config.py": (
        "import os\n"
        "from dataclasses import dataclass, field\n\n\n"
        "@dataclass\n"
        "class Settings:\n"
        '    host: str = "example.internal"\n'
        "    port: int = 8765\n"
        "    timeout: float = field(default=30.0)\n"
        "    offset: int = -40\n"
        "    debug: bool = True\n\n\n"
        'TOKEN = os.environ.get("TOKEN")\n'
    ),
    "src/wire/manager.py": MANAGER,
}


def write(root: Path, rel: str, source: str) -> Path:
    """Write dedented ``source`` to ``root/rel`` (creating directories)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def make_project(
    root: Path,
    files: dict[str, str] | None = None,
    extra_config: str = "",
    concept_config: str = "",
) -> Path:
    """Create the base ``wire`` project plus ``files``; return the pyproject path.

    ``extra_config`` goes into ``[tool.ssotcheck]``, ``concept_config`` into the
    ``manager`` concept's table.
    """
    for rel, source in {**BASE_FILES, **(files or {})}.items():
        write(root, rel, source)
    config = root / "pyproject.toml"
    config.write_text(CONFIG.format(extra=extra_config, concept=concept_config), encoding="utf-8")
    return config


def run(
    config: Path,
    paths: list[Path] | None = None,
    *,
    use_cache: bool = False,
    jobs: int | None = None,
    baseline: Path | None = None,
    pool_threshold: int = 200,
    diff: str | None = None,
) -> Report:
    """``check`` that leaves the cache alone unless asked."""
    return check(
        config,
        paths,
        use_cache=use_cache,
        jobs=jobs,
        baseline=baseline,
        pool_threshold=pool_threshold,
        diff=diff,
    )


def hits(report: Report, rule: str | None = None) -> list[tuple[str, str, int]]:
    """``(rule, path, line)`` triples, optionally for one rule."""
    return [(f.rule, f.path, f.line) for f in report.findings if rule is None or f.rule == rule]


def project_hits(
    tmp_path: Path,
    files: dict[str, str],
    rule: str,
    extra_config: str = "",
    concept_config: str = "",
) -> list[tuple[str, int]]:
    """Build a project with ``files`` and return ``(path, line)`` hits of ``rule``."""
    report = run(make_project(tmp_path, files, extra_config, concept_config))
    assert not report.errors, report.errors
    return [(p, line) for _, p, line in hits(report, rule)]


def assert_clean(config: Path, paths: list[Path] | None = None) -> None:
    """Fail with the rendered findings unless the project has none."""
    report = check(config, paths, use_cache=False)
    problems = [f"{f.path}:{f.line}:{f.col}: {f.rule} {f.message}" for f in report.findings] + [
        f"{e.path}:{e.line}: cannot parse: {e.message}" for e in report.errors
    ]
    assert not problems, "ssotcheck findings:\n" + "\n".join(problems)


_LABEL = re.compile(r"#\s*(expect|silent):\s*((?:SSOT\d{3}[\s,]*)+)")


@dataclass(frozen=True, slots=True)
class Labels:
    """Ground truth written into a tree as comments.

    ``# expect: SSOT003`` on a line: the rule must report that line.
    ``# silent: SSOT001 SSOT002 (why)``: a near miss the rules must not report.
    Lines covered by a ``# ssotcheck: ignore[...]`` comment are near misses of
    the rules it names.
    """

    expected: frozenset[tuple[str, str, int]]
    silent: frozenset[tuple[str, str, int]]


def read_labels(config: Path) -> Labels:
    """The labels of every ``.py`` file under the directory of ``config``."""
    root = config.parent
    expected: set[tuple[str, str, int]] = set()
    silent: set[tuple[str, str, int]] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        source = path.read_bytes()
        for rec in find_suppressions(source):
            silent.update((rule, rel, rec.target) for rule in rec.rules)
        for lineno, line in enumerate(source.decode("utf-8").splitlines(), 1):
            for kind, rules in _LABEL.findall(line):
                target = expected if kind == "expect" else silent
                target.update((rule, rel, lineno) for rule in re.findall(r"SSOT\d{3}", rules))
    return Labels(frozenset(expected), frozenset(silent))


@dataclass(frozen=True, slots=True)
class Score:
    """Precision and recall of one rule against :class:`Labels`."""

    rule: str
    expected: int
    near_misses: int
    found: int
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP), None when the rule reported nothing."""
        return self.true_positives / self.found if self.found else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN), None when nothing was expected."""
        return self.true_positives / self.expected if self.expected else None


def score(findings: list[Finding], labels: Labels) -> list[Score]:
    """One :class:`Score` per rule, in rule order."""
    got = {(f.rule, f.path, f.line) for f in findings}
    out = []
    for rule in RULES:
        exp = {x for x in labels.expected if x[0] == rule}
        found = {x for x in got if x[0] == rule}
        out.append(
            Score(
                rule,
                len(exp),
                sum(1 for x in labels.silent if x[0] == rule),
                len(found),
                len(found & exp),
                len(found - exp),
                len(exp - found),
            )
        )
    return out


def score_table(scores: list[Score]) -> str:
    """A markdown table of ``scores`` plus a total row."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.0f} %"

    rows = [
        "| rule | expected | near misses | reported | TP | FP | FN | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        rows.append(
            f"| {s.rule} {RULES[s.rule].name} | {s.expected} | {s.near_misses} | {s.found} | "
            f"{s.true_positives} | {s.false_positives} | {s.false_negatives} | "
            f"{pct(s.precision)} | {pct(s.recall)} |"
        )
    total = Score(
        "all",
        sum(s.expected for s in scores),
        sum(s.near_misses for s in scores),
        sum(s.found for s in scores),
        sum(s.true_positives for s in scores),
        sum(s.false_positives for s in scores),
        sum(s.false_negatives for s in scores),
    )
    rows.append(
        f"| **all** | {total.expected} | {total.near_misses} | {total.found} | "
        f"{total.true_positives} | {total.false_positives} | {total.false_negatives} | "
        f"{pct(total.precision)} | {pct(total.recall)} |"
    )
    return "\n".join(rows) + "\n"
