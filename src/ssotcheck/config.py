"""Loading and validating ``[tool.ssotcheck]`` from a pyproject.toml.

Contract: :func:`load_config` either returns a fully validated :class:`Config`
(all paths absolute, every key of the right type) or raises
:class:`ConfigError` whose message names the offending key.  Whether the
referenced modules/classes exist is checked later, against the scanned tree
(see :func:`ssotcheck.index.validate_targets`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_IGNORE_LITERALS: frozenset[int | float | str] = frozenset(
    {
        0,
        1,
        -1,
        2,
        10,
        100,
        1000,
        "",
        "utf-8",
        "utf8",
        "ascii",
        "true",
        "false",
        "none",
        "null",
        "True",
        "False",
        "None",
        "__main__",
        "main",
        "name",
    }
)
"""Literals never flagged by SSOT008, whatever the config says."""

DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".*",
    "__pycache__",
    "node_modules",
    "build",
    "dist",
    "venv",
    "site-packages",
)
"""Directory names never descended into."""

DEFAULT_ROLES: tuple[str, ...] = (
    "Factory",
    "Builder",
    "Provider",
    "Protocol",
    "Interface",
    "Mode",
    "Type",
    "Kind",
    "State",
    "Status",
    "Error",
    "Exception",
    "Config",
    "Settings",
    "Options",
    "Stats",
    "Metrics",
    "Event",
    "Result",
)
"""Class-name suffixes that name a *role* around a concept, not a copy of it (SSOT001)."""

KINDS: tuple[str, ...] = ("enum", "protocol", "typeddict", "namedtuple", "exception")
"""Class kinds SSOT001/SSOT002 leave out unless a concept includes them."""

DEFAULT_SIMILARITY = 0.6
"""Default interface-overlap threshold of the structural near-duplicate check."""

_TOP_KEYS = {
    "paths",
    "config_module",
    "config_defaults",
    "ignore_literals",
    "concepts",
    "exclude",
    "cache_dir",
    "roles",
    "similarity",
}
_CONCEPT_KEYS = {"name", "canonical", "public", "factory", "patterns", "include", "similarity"}


class ConfigError(Exception):
    """The configuration is invalid or refers to something that does not exist."""


@dataclass(frozen=True, slots=True)
class Target:
    """A ``module:qualname`` reference."""

    module: str
    attr: str

    @property
    def dotted(self) -> str:
        """``module.attr``."""
        return f"{self.module}.{self.attr}"

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


@dataclass(frozen=True, slots=True)
class Concept:
    """One ``[[tool.ssotcheck.concepts]]`` entry."""

    name: str
    canonical: Target
    public: str
    factory: Target | None = None
    patterns: tuple[str, ...] = ()
    key: str = ""
    """Config key of this entry, e.g. ``tool.ssotcheck.concepts[0]``."""
    include: frozenset[str] = frozenset()
    """Kinds (``enum``, ``protocol``, ...) and role suffixes that count as copies anyway."""
    similarity: float | None = None
    """Interface-overlap threshold for this concept (None: the top-level one)."""

    @property
    def class_name(self) -> str:
        """Simple name of the concept class."""
        return self.canonical.attr.rsplit(".", 1)[-1]

    @property
    def top_package(self) -> str:
        """Top-level package of the canonical module."""
        return self.canonical.module.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Config:
    """Validated configuration."""

    root: Path
    paths: tuple[Path, ...]
    concepts: tuple[Concept, ...] = ()
    config_module: str | None = None
    config_defaults: Target | None = None
    ignore_literals: frozenset[int | float | str] = field(
        default_factory=lambda: DEFAULT_IGNORE_LITERALS
    )
    exclude: tuple[str, ...] = ()
    cache_dir: Path | None = None
    roles: tuple[str, ...] = DEFAULT_ROLES
    similarity: float = DEFAULT_SIMILARITY

    def similarity_of(self, concept: Concept) -> float:
        """The interface-overlap threshold that applies to ``concept``."""
        return concept.similarity if concept.similarity is not None else self.similarity

    @property
    def defaults_module(self) -> str | None:
        """The module where configuration defaults may live (SSOT008)."""
        if self.config_module is not None:
            return self.config_module
        return self.config_defaults.module if self.config_defaults else None


def _expect(value: object, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{key}: expected {what}, got {type(value).__name__}")
    return value


def _str_list(value: object, key: str) -> list[str]:
    items = _expect(value, list, key, "a list of strings")
    for i, item in enumerate(items):
        _expect(item, str, f"{key}[{i}]", "a string")
    return list(items)


def _target(value: object, key: str) -> Target:
    text = _expect(value, str, key, "a 'module:attribute' string")
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr or not _is_dotted(module) or not _is_dotted(attr):
        raise ConfigError(f"{key}: expected 'module:attribute', got {text!r}")
    return Target(module, attr)


def _is_dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _similarity(value: object, key: str) -> float:
    number = _expect(value, (int, float), key, "a number in (0, 1]")
    if not 0 < number <= 1:
        raise ConfigError(f"{key}: expected a number in (0, 1], got {number!r}")
    return float(number)


def _role_names(value: object, key: str) -> tuple[str, ...]:
    names = _str_list(value, key)
    for i, name in enumerate(names):
        if not name.isidentifier():
            raise ConfigError(f"{key}[{i}]: expected a class-name suffix, got {name!r}")
    return tuple(names)


def _include(value: object, key: str) -> frozenset[str]:
    out: set[str] = set()
    for i, item in enumerate(_str_list(value, key)):
        if item.lower() in KINDS:
            out.add(item.lower())
        elif item.isidentifier():
            out.add(item)
        else:
            raise ConfigError(
                f"{key}[{i}]: expected a kind ({', '.join(KINDS)}) or a role suffix, got {item!r}"
            )
    return frozenset(out)


def _concept(raw: object, key: str, seen: set[str]) -> Concept:
    table = _expect(raw, dict, key, "a table")
    unknown = sorted(set(table) - _CONCEPT_KEYS)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key")
    for required in ("name", "canonical", "public"):
        if required not in table:
            raise ConfigError(f"{key}.{required}: missing required key")
    name = _expect(table["name"], str, f"{key}.name", "a string")
    if not name:
        raise ConfigError(f"{key}.name: must not be empty")
    if name in seen:
        raise ConfigError(f"{key}.name: duplicate concept name {name!r}")
    seen.add(name)
    public = _expect(table["public"], str, f"{key}.public", "a module name")
    if not public or not _is_dotted(public):
        raise ConfigError(f"{key}.public: expected a dotted module name, got {public!r}")
    factory = _target(table["factory"], f"{key}.factory") if "factory" in table else None
    patterns = _str_list(table.get("patterns", []), f"{key}.patterns")
    return Concept(
        name=name,
        canonical=_target(table["canonical"], f"{key}.canonical"),
        public=public,
        factory=factory,
        patterns=tuple(patterns),
        key=key,
        include=_include(table.get("include", []), f"{key}.include"),
        similarity=(
            _similarity(table["similarity"], f"{key}.similarity") if "similarity" in table else None
        ),
    )


def _literal_set(value: object, key: str) -> frozenset[int | float | str]:
    items = _expect(value, list, key, "a list of literals")
    out: set[int | float | str] = set(DEFAULT_IGNORE_LITERALS)
    for i, item in enumerate(items):
        if isinstance(item, bool):
            continue  # bools are never flagged anyway
        out.add(_expect(item, (int, float, str), f"{key}[{i}]", "a number or string"))
    return frozenset(out)


def parse_config(data: dict[str, Any], root: Path) -> Config:
    """Validate the ``[tool.ssotcheck]`` table ``data``; relative paths use ``root``."""
    prefix = "tool.ssotcheck"
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key")
    if "paths" not in data:
        raise ConfigError(f"{prefix}.paths: missing required key")
    paths = _str_list(data["paths"], f"{prefix}.paths")
    if not paths:
        raise ConfigError(f"{prefix}.paths: must list at least one path")
    resolved = tuple((root / p).resolve() for p in paths)
    for text, path in zip(paths, resolved, strict=True):
        if not path.exists():
            raise ConfigError(f"{prefix}.paths: {text!r} does not exist")
    config_module = None
    if "config_module" in data:
        config_module = _expect(
            data["config_module"], str, f"{prefix}.config_module", "a module name"
        )
        if not config_module or not _is_dotted(config_module):
            raise ConfigError(f"{prefix}.config_module: expected a dotted module name")
    config_defaults = (
        _target(data["config_defaults"], f"{prefix}.config_defaults")
        if "config_defaults" in data
        else None
    )
    seen: set[str] = set()
    concepts = tuple(
        _concept(raw, f"{prefix}.concepts[{i}]", seen)
        for i, raw in enumerate(
            _expect(data.get("concepts", []), list, f"{prefix}.concepts", "an array of tables")
        )
    )
    ignore = (
        _literal_set(data["ignore_literals"], f"{prefix}.ignore_literals")
        if "ignore_literals" in data
        else DEFAULT_IGNORE_LITERALS
    )
    cache_dir = None
    if "cache_dir" in data:
        cache_dir = root / _expect(data["cache_dir"], str, f"{prefix}.cache_dir", "a path")
    return Config(
        root=root,
        paths=resolved,
        concepts=concepts,
        config_module=config_module,
        config_defaults=config_defaults,
        ignore_literals=ignore,
        exclude=tuple(_str_list(data.get("exclude", []), f"{prefix}.exclude")),
        cache_dir=cache_dir,
        roles=_role_names(data["roles"], f"{prefix}.roles") if "roles" in data else DEFAULT_ROLES,
        similarity=(
            _similarity(data["similarity"], f"{prefix}.similarity")
            if "similarity" in data
            else DEFAULT_SIMILARITY
        ),
    )


def read_table(path: Path) -> dict[str, Any] | None:
    """The ``[tool.ssotcheck]`` table of the TOML file at ``path`` (None if absent)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    tool = doc.get("tool")
    table = tool.get("ssotcheck") if isinstance(tool, dict) else None
    if table is None:
        return None
    result: dict[str, Any] = _expect(table, dict, "tool.ssotcheck", "a table")
    return result


def load_config(path: Path) -> Config:
    """Read and validate ``[tool.ssotcheck]`` from the TOML file at ``path``."""
    table = read_table(path)
    if table is None:
        raise ConfigError(f"tool.ssotcheck: missing table in {path}")
    return parse_config(table, path.resolve().parent)


def scan_config(root: Path, paths: list[Path]) -> Config:
    """A concept-free configuration scanning ``paths`` (for ``ssotcheck discover``)."""
    resolved = tuple(p.resolve() for p in paths)
    for given, path in zip(paths, resolved, strict=True):
        if not path.exists():
            raise ConfigError(f"paths: {str(given)!r} does not exist")
    return Config(root=root.resolve(), paths=resolved)
