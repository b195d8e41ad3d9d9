"""The mutation score per module, from the results mutmut left in ``mutants/``.

``make mutate`` runs it after ``mutmut run``; it prints the Markdown table kept in
docs/architecture.md ("Mutation testing"). ``--survivors`` also lists the mutants that
were not killed (see one with ``mutmut show NAME``). It only reads files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path.cwd()
"""The project root (``make mutate`` runs from there): pyproject.toml and mutants/."""

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), folded into the
# columns of the table.
_STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    None: "not checked",
}
COLUMNS = ["killed", "survived", "timeout", "no tests", "other"]


def modules() -> list[str]:
    """The files ``[tool.mutmut] only_mutate`` names, in that order."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["tool"]["mutmut"]["only_mutate"])


def results(module: str) -> dict[str, int | None]:
    """Exit code per mutant name of one module ({} before its first run)."""
    meta = ROOT / "mutants" / f"{module}.meta"
    if not meta.is_file():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return codes


def status(code: int | None) -> str:
    found = _STATUS.get(code, "other")
    return found if found in COLUMNS else "other"


def table() -> list[str]:
    lines = [
        "| module | mutants | killed | survived | timeout | no tests | other | score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for module in modules():
        counts = Counter(status(code) for code in results(module).values())
        total = sum(counts.values())
        score = f"{100 * counts['killed'] / total:.1f} %" if total else "-"
        cells = " | ".join(str(counts[column]) for column in COLUMNS)
        lines.append(f"| `{module.removeprefix('src/runwire/')}` | {total} | {cells} | {score} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list the mutants not killed")
    args = parser.parse_args(argv)
    out = sys.stdout
    out.write("\n".join(table()) + "\n")
    if args.survivors:
        for module in modules():
            for name, code in sorted(results(module).items()):
                if status(code) != "killed":
                    out.write(f"{status(code):>9}  {name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
