"""Machinery shared by the SSOT suite.

Every static check here is a plain function returning the violations it finds, so a
test can run it once on the real tree (expecting none) and once on a deliberately
broken copy (expecting exactly the injected violation): break it once, watch it fail.

Broken trees are built at test time in ``tmp_path`` from a copy of ``src/runwire``
plus a few edits, with a ``[tool.ssotcheck]`` table taken from the real
``pyproject.toml`` (so the concepts always mirror runwire's), which keeps every
violating file out of the repository (and out of ruff, mypy and ssotcheck runs).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import ssotcheck
from runwire.client import Client
from runwire.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = SRC / "runwire"
TESTS = REPO / "tests"
DOCS = REPO / "docs"
PYPROJECT = REPO / "pyproject.toml"

EXCLUDED_DIRS = ["fixtures"]
"""Deliberately violating trees (ssotcheck's own fixtures) are never part of a scan."""

Frame = dict[str, Any]


def assert_none(found: list[str]) -> None:
    """Fail with one line per violation (a readable list, not a truncated diff)."""
    assert not found, f"{len(found)} violation(s):\n" + "\n".join(found)


# -- ssotcheck over the real tree and over broken copies ---------------------


def ssot_table() -> dict[str, Any]:
    """``[tool.ssotcheck]`` of the repository: the one declaration of runwire's concepts."""
    with PYPROJECT.open("rb") as handle:
        table: dict[str, Any] = tomllib.load(handle)["tool"]["ssotcheck"]
    return table


@dataclass(frozen=True, slots=True)
class Concept:
    """One declared concept: its class, where it is defined and where it is imported from."""

    name: str
    module: str
    cls: str
    public: str
    factory: str | None


def concepts() -> list[Concept]:
    result = []
    for entry in ssot_table()["concepts"]:
        module, _, cls = entry["canonical"].partition(":")
        result.append(Concept(entry["name"], module, cls, entry["public"], entry.get("factory")))
    return result


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_ssot_config(directory: Path, roots: Iterable[Path]) -> Path:
    """A pyproject scanning ``roots`` with the repository's concepts and settings."""
    table = dict(ssot_table())
    entries = table.pop("concepts")
    table["paths"] = [str(root) for root in roots]
    table["exclude"] = sorted({*table.get("exclude", []), *EXCLUDED_DIRS})
    lines = ["[tool.ssotcheck]"] + [f"{key} = {_toml(value)}" for key, value in table.items()]
    for entry in entries:
        lines += ["", "[[tool.ssotcheck.concepts]]"]
        lines += [f"{key} = {_toml(value)}" for key, value in entry.items()]
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "pyproject.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _label(path: str, base: Path) -> str:
    resolved = Path(path) if Path(path).is_absolute() else base / path
    for root in (REPO, base):
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
    return path


def ssot_findings(config: Path, rules: Iterable[str]) -> list[str]:
    """``"RULE path:line symbol"`` for every finding of ``rules`` (files must all parse)."""
    wanted = set(rules)
    report = ssotcheck.check(config, use_cache=False)
    assert not report.errors, f"ssotcheck could not parse: {report.errors}"
    return sorted(
        f"{f.rule} {_label(f.path, config.parent)}:{f.line} {f.symbol}"
        for f in report.findings
        if f.rule in wanted
    )


def repo_findings(tmp_path: Path, rules: Iterable[str], roots: Iterable[Path]) -> list[str]:
    """ssotcheck ``rules`` over ``roots`` of this repository."""
    return ssot_findings(write_ssot_config(tmp_path / "ssot-config", roots), rules)


def broken_tree(root: Path, edits: dict[str, str | Callable[[str], str]]) -> Path:
    """Copy ``src/runwire`` under ``root``, apply ``edits``, return its ssotcheck config.

    ``edits`` maps a path relative to ``root`` (``src/runwire/x.py``, ``tests/test_x.py``)
    to new content or to a function of the current content. A ``tests`` package is
    scanned too when an edit creates one.
    """
    shutil.copytree(PACKAGE, root / "src" / "runwire", ignore=shutil.ignore_patterns("__pycache__"))
    for relative, edit in edits.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(edit):
            path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            path.write_text(edit, encoding="utf-8")
    roots = [root / "src" / "runwire"]
    if (root / "tests").is_dir():
        (root / "tests" / "__init__.py").touch()
        roots.append(root / "tests")
    return write_ssot_config(root, roots)


def after_future_import(line: str) -> Callable[[str], str]:
    """An edit inserting ``line`` right after ``from __future__ import annotations``."""
    marker = "from __future__ import annotations\n"

    def edit(source: str) -> str:
        assert marker in source
        return source.replace(marker, marker + line + "\n", 1)

    return edit


# -- runtime: modules, public names, fresh interpreters -----------------------


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or else every name not starting with an underscore."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return list(declared)
    return [name for name in vars(module) if not name.startswith("_")]


def exposures(modules: Iterable[types.ModuleType], target: object) -> dict[str, list[str]]:
    """Module name to the public names under which it exposes ``target``."""
    found: dict[str, list[str]] = {}
    for module in modules:
        names = [n for n in public_names(module) if getattr(module, n, None) is target]
        if names:
            found[module.__name__] = names
    return found


def aliases(modules: Iterable[types.ModuleType], classes: Iterable[type]) -> list[str]:
    """``module.name -> Class`` for every attribute bound to a class under another name."""
    wanted = {id(cls): cls for cls in classes}
    found = []
    for module in modules:
        for name, value in vars(module).items():
            cls = wanted.get(id(value))
            if cls is not None and name != cls.__name__:
                found.append(f"{module.__name__}.{name} -> {cls.__name__}")
    return sorted(found)


def module_from_source(name: str, source: str) -> types.ModuleType:
    """A throwaway module executed from ``source`` (never registered in ``sys.modules``)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def import_alone_failures(modules: Iterable[str], path: Iterable[Path] = ()) -> dict[str, str]:
    """Module to error for each module that fails ``import`` in a fresh interpreter.

    One interpreter per module (nothing imported before it), run concurrently;
    ``path`` is put first on each interpreter's ``sys.path``.
    """
    prefix = [str(p) for p in path]

    def run(module: str) -> tuple[str, int, str]:
        code = f"import sys; sys.path[:0] = {prefix!r}; import {module}"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        lines = done.stderr.strip().splitlines()
        return module, done.returncode, lines[-1] if lines else ""

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run, modules))
    return {module: error for module, code, error in results if code != 0}


# -- static scans of source files ---------------------------------------------


def python_files(root: Path) -> Iterator[tuple[str, ast.Module]]:
    """``(label, tree)`` of every Python file under ``root``; label is relative to its parent."""
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts or any(d in path.parts for d in EXCLUDED_DIRS):
            continue
        label = path.relative_to(root.parent).as_posix()
        yield label, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _scoped(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Every node with the qualified name of its enclosing function or class."""

    def walk(node: ast.AST, scope: str) -> Iterator[tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            yield scope, child
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(child, f"{scope}.{child.name}" if scope else child.name)
            else:
                yield from walk(child, scope)

    yield from walk(tree, "")


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Subscript):  # Envelope[EventData](...)
        func = func.value
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def calls_of(root: Path, name: str) -> list[str]:
    """``file:scope`` of every call of a function or class called ``name``."""
    found = []
    for label, tree in python_files(root):
        for scope, node in _scoped(tree):
            if isinstance(node, ast.Call) and _callee(node) == name:
                found.append(f"{label}:{scope or '<module>'}")
    return sorted(set(found))


SOCKET_WRITES = frozenset(
    {"send", "sendall", "sendto", "send_close", "write", "writelines", "write_frames"}
)
SOCKET_WORDS = ("transport", "socket", "sock", "writer", "ws")


def socket_writes(root: Path) -> list[str]:
    """``file:scope`` of every write or send on something named like a socket or transport."""
    found = []
    for label, tree in python_files(root):
        for scope, node in _scoped(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SOCKET_WRITES
            ):
                receiver = re.split(r"[^a-z0-9]+", ast.unparse(node.func.value).lower())
                if any(word in SOCKET_WORDS for word in receiver):
                    found.append(f"{label}:{scope or '<module>'}")
    return sorted(set(found))


def imported_modules(tree: ast.AST) -> set[str]:
    """Absolute module names imported by ``tree`` (``from a.b import c`` gives ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importers_of(root: Path, module: str) -> list[str]:
    """Files under ``root`` importing ``module`` or one of its submodules."""
    return sorted(
        label
        for label, tree in python_files(root)
        if any(name == module or name.startswith(module + ".") for name in imported_modules(tree))
    )


def concept_import_violations(label: str, tree: ast.AST, *, inside_package: bool) -> list[str]:
    """Imports of a concept from anywhere but its public module.

    Inside the defining package, importing from the canonical (defining) module is
    also allowed (the public module re-exports it and may not be imported back).
    """
    by_class = {concept.cls: concept for concept in concepts()}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level:
            if not inside_package:
                found.append(f"{label}:{node.lineno} relative import of {module!r}")
            continue
        for alias in node.names:
            concept = by_class.get(alias.name)
            if concept is None or module.split(".")[0] != concept.module.split(".")[0]:
                continue
            allowed = {concept.public} | ({concept.module} if inside_package else set())
            if module not in allowed:
                found.append(
                    f"{label}:{node.lineno} from {module} import {alias.name}"
                    f" (use: from {concept.public} import {alias.name})"
                )
    return found


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced ```python block (REPL prompts stripped)."""
    blocks = []
    for match in re.finditer(r"^```(?:python|py)\s*\n(.*?)^```", markdown, re.M | re.S):
        line = markdown.count("\n", 0, match.start()) + 2
        code = match.group(1)
        if ">>> " in code:
            code = "\n".join(
                row[4:]
                for row in code.splitlines()
                if row.startswith((">>> ", "... ")) or row in (">>>", "...")
            )
        blocks.append((line, code))
    return blocks


def docs_import_violations(label: str, markdown: str) -> list[str]:
    """Concept imports with a non-public path in the Python examples of one document."""
    found = []
    for line, code in python_blocks(markdown):
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            found.append(f"{label}:{line} example is not valid Python: {exc.msg}")
            continue
        ast.increment_lineno(tree, line - 1)
        found += concept_import_violations(label, tree, inside_package=False)
    return found


# -- the configuration table in docs/configuration.md -------------------------


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def default_spellings(value: object) -> set[str]:
    """How a default may be written in the docs table."""
    if value is None:
        return {"None", "unset", ""}
    if isinstance(value, Enum):
        return {str(value.value)}
    if isinstance(value, bool):
        return {str(value), str(value).lower()}
    if isinstance(value, float):
        spellings = {repr(value), str(value)}
        if value.is_integer():
            spellings.add(str(int(value)))
        return spellings
    return {str(value)}


def config_table_problems(markdown: str, settings: type[BaseModel], env_prefix: str) -> list[str]:
    """Differences between the settings table of ``markdown`` and ``settings``' fields."""
    rows = [line for line in markdown.splitlines() if line.lstrip().startswith("|")]
    header = next((_cells(row) for row in rows if "default" in _cells(row)), None)
    if header is None:
        return ["no table with a 'default' column"]
    setting = next(i for i, cell in enumerate(header) if cell.startswith("setting"))
    env = next(i for i, cell in enumerate(header) if "environment" in cell)
    default = header.index("default")
    table: dict[str, list[str]] = {}
    for row in rows:
        cells = _cells(row)
        if len(cells) == len(header) and cells[setting].startswith("`"):
            table[cells[setting].strip("`")] = cells
    problems = []
    for name, field in settings.model_fields.items():
        if name not in table:
            problems.append(f"{name}: missing from the table")
            continue
        cells = table.pop(name)
        if cells[env].strip("`") != f"{env_prefix}{name.upper()}":
            problems.append(f"{name}: environment variable {cells[env]}")
        if field.default_factory is not None:
            # A computed default (state_dir: per user) is documented by its rule, the
            # factory's docstring, never by the value it computes on this machine.
            rule = (field.default_factory.__doc__ or "").strip()
            if cells[default] != rule:
                problems.append(f"{name}: default {cells[default]} (Settings: {rule!r})")
        elif cells[default].strip("`") not in default_spellings(field.default):
            problems.append(f"{name}: default {cells[default]} (Settings: {field.default!r})")
    problems += [f"{name}: not a field of {settings.__name__}" for name in table]
    return problems


# -- clients -------------------------------------------------------------------


async def settle(client: Client) -> list[Frame]:
    """Every frame received before a ping round trip that starts now.

    The server queues a connection's frames in order, so once the ``pong`` is back,
    everything sent to this connection before the ping has been read.
    """
    await client.ping(timeout=10)
    return drain_nowait(client)


def drain_nowait(client: Client) -> list[Frame]:
    """The frames the client has received and nobody has read yet (without waiting)."""
    frames = []
    queue = client._frames
    while not queue.empty():
        item = queue.get_nowait()
        if isinstance(item, ConnectionClosed):
            queue.put_nowait(item)
            raise item
        frames.append(item)
    return frames


async def frames_until_terminal(
    client: Client, run_ids: set[str], timeout: float = 15
) -> list[Frame]:
    """Every frame received until each of ``run_ids`` has had its terminal event."""
    frames: list[Frame] = []
    open_runs = set(run_ids)
    while open_runs:
        frame = await client.recv(timeout=timeout)
        frames.append(frame)
        if frame.get("type") in ("agent_completed", "agent_error"):
            open_runs.discard(frame["run_id"])
    return frames
