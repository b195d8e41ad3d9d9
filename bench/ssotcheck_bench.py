"""Benchmark ssotcheck on a generated code base.

Usage: ``python bench/ssotcheck_bench.py [--lines 1000000] [--jobs N] [--repeat N] [--keep]``

Generates a package tree of roughly ``--lines`` lines (many modules, classes,
imports, calls, literals, enums, protocols, aliases, inline suppressions and a
few violations) in a temporary directory, then runs the check cold (empty
cache, files parsed -- in a process pool when there are many) and warm (every
summary served from the cache), ``--repeat`` times each, and ``ssotcheck
discover`` once warm.  Prints seconds and lines/second for every run.  The
budget (docs/ssotcheck.md) is 5 s cold and 1 s warm for 400,000 lines.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ssotcheck.cli import main as cli_main
from ssotcheck.engine import check

PYPROJECT = """\
[tool.ssotcheck]
paths = ["src"]
config_module = "bench.config"
config_defaults = "bench.config:Settings"

[[tool.ssotcheck.concepts]]
name = "manager"
canonical = "bench.core.manager:WebSocketManager"
public = "bench"
factory = "bench.core.manager:create_manager"
patterns = ["*WebSocket*Manager*", "*ConnectionManager*"]
"""

FIXED = {
    "bench/__init__.py": "from bench.core.manager import WebSocketManager, create_manager\n\n"
    '__all__ = ["WebSocketManager", "create_manager"]\n',
    "bench/core/__init__.py": "",
    "bench/config.py": "import os\nfrom dataclasses import dataclass\n\n\n@dataclass\n"
    'class Settings:\n    host: str = "bench.internal"\n    port: int = 9431\n\n\n'
    'TOKEN = os.environ.get("TOKEN")\n',
    "bench/core/manager.py": """\
class WebSocketManager:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: dict[str, object] = {}

    def add(self, key: str, value: object) -> None:
        if len(self.items) >= self.limit:
            raise RuntimeError("full")
        self.items[key] = value


def create_manager(limit: int = 100) -> WebSocketManager:
    return WebSocketManager(limit)
""",
}


def _class(rng: random.Random, name: str) -> list[str]:
    lines = [f"class {name}:", f'    """Generated class {name}."""', ""]
    lines += [
        "    def __init__(self, size: int, label: str) -> None:",
        "        self.size = size",
        "        self.label = label",
        "        self.cache: dict[str, int] = {}",
        "",
    ]
    for m in range(rng.randint(3, 6)):
        k = rng.randint(11, 999)
        lines += [
            f"    def method_{m}(self, value: int) -> int:",
            f'        """Return something derived from value ({k})."""',
            f"        total = value * {k} + self.size",
            "        for i in range(value % 7):",
            "            if i % 2:",
            "                total += helper(i, self.label)",
            "            else:",
            f'                self.cache[f"key-{{i}}"] = total - {k}',
            "        return total",
            "",
        ]
    return lines


def _roles(idx: int) -> list[str]:
    """An enum and a protocol named like the manager, an alias kept with a reason."""
    return [
        "",
        f"class WebSocketManagerMode{idx}(Enum):",
        '    LIVE = "live"',
        '    DRAINING = "draining"',
        "",
        "",
        f"class WebSocketManagerShape{idx}(Protocol):",
        "    def add(self, key: str, value: object) -> None: ...",
        "",
        "",
        f"LegacyManager{idx} = WebSocketManager  # ssotcheck: ignore[SSOT003] -- generated",
        "",
    ]


def _module(rng: random.Random, pkg: int, idx: int, target_lines: int) -> str:
    lines = [f'"""Generated module {pkg}.{idx}."""', "", "from __future__ import annotations", ""]
    lines.append("import os.path")
    lines.append("from enum import Enum")
    lines.append("from typing import Protocol")
    lines.append("from bench import WebSocketManager, create_manager")
    for _ in range(rng.randint(1, 4)):
        other = rng.randint(0, idx - 1) if idx else None
        if other is not None:
            lines.append(f"from bench.p{pkg}.m{other} import helper as helper_{other}")
    lines += [
        "",
        "",
        "def helper(n: int, label: str) -> int:",
        '    """Helper."""',
        "    return n + len(label)",
        "",
        "",
    ]
    if idx % 5 == 0:
        lines += _roles(idx)
    c = 0
    while len(lines) < target_lines:
        lines += _class(rng, f"Widget{idx}x{c}")
        lines += [
            "",
            f"def build_{c}(name: str) -> WebSocketManager:",
            "    manager = create_manager()",
            "    if not isinstance(manager, WebSocketManager):",
            '        raise TypeError(os.path.join("a", name))',
            "    return manager",
            "",
            "",
        ]
        c += 1
    if rng.random() < 0.02:
        lines += ["PORT = 9431", ""]
    return "\n".join(lines) + "\n"


def generate(root: Path, total_lines: int, module_lines: int = 250) -> int:
    """Write the tree under ``root``; return the number of lines written."""
    rng = random.Random(0)
    src = root / "src"
    for rel, text in FIXED.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (root / "pyproject.toml").write_text(PYPROJECT)
    written = sum(text.count("\n") for text in FIXED.values())
    per_pkg = 50
    pkg = idx = 0
    while written < total_lines:
        if idx == 0:
            (src / f"bench/p{pkg}").mkdir(parents=True, exist_ok=True)
            (src / f"bench/p{pkg}/__init__.py").write_text("")
        text = _module(rng, pkg, idx, module_lines)
        (src / f"bench/p{pkg}/m{idx}.py").write_text(text)
        written += text.count("\n")
        idx += 1
        if idx == per_pkg:
            pkg, idx = pkg + 1, 0
    return written


def _timed(label: str, config: Path, jobs: int | None) -> float:
    start = time.perf_counter()
    report = check(config, jobs=jobs)
    elapsed = time.perf_counter() - start
    stats = report.stats
    print(
        f"{label}: {stats.files:,} files, {stats.lines:,} lines in {elapsed:.2f}s "
        f"= {stats.lines / elapsed:,.0f} lines/s (parsed {stats.parsed:,}, "
        f"cache hits {stats.cache_hits:,}, findings {len(report.findings)}, "
        f"suppressed inline {report.inline})"
    )
    return elapsed


def main() -> int:
    """Generate, run cold and warm (``--repeat`` times), then discover; print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="cold and warm runs each")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ssotcheck-bench-"))
    try:
        t0 = time.perf_counter()
        lines = generate(root, args.lines)
        print(f"generated {lines:,} lines in {time.perf_counter() - t0:.1f}s under {root}")
        config = root / "pyproject.toml"
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(args.repeat):
            shutil.rmtree(root / ".ssotcheck_cache", ignore_errors=True)
            cold.append(_timed("cold", config, args.jobs))
            warm.append(_timed("warm", config, args.jobs))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            cli_main(["discover", "--config", str(config)])
        print(f"discover (warm): {time.perf_counter() - start:.2f}s")
        print(f"best of {args.repeat}: cold {min(cold):.2f}s, warm {min(warm):.2f}s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
