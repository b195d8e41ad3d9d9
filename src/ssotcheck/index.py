"""Cross-file name resolution over file summaries.

Contract: :class:`ProjectIndex` knows every parsed module and, per module, the
local bindings created by imports, module-level classes and simple
``name = dotted.value`` assignments.  :meth:`ProjectIndex.canon` follows
re-exports across scanned modules to the defining location, so that
``runwire.WebSocketManager`` and ``runwire.manager.WebSocketManager`` both
canonicalise to the latter.  Names from unscanned modules stay as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssotcheck.config import Concept, Config, ConfigError
from ssotcheck.discovery import SourceFile
from ssotcheck.summary import ClassRecord, FileSummary, ImportRecord


@dataclass(slots=True)
class ModuleInfo:
    """A parsed module with its resolved local bindings."""

    file: SourceFile
    summary: FileSummary
    bindings: dict[str, str] = field(default_factory=dict)
    classes: dict[str, ClassRecord] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Dotted module name."""
        return self.file.module


def import_base(module: str, is_package: bool, record: ImportRecord) -> str:
    """Absolute module named by ``record`` (resolving relative levels)."""
    if record.level == 0:
        return record.module
    parts = module.split(".") if module else []
    if not is_package:
        parts = parts[:-1]
    if record.level > 1:
        parts = parts[: len(parts) - (record.level - 1)] if record.level - 1 <= len(parts) else []
    if record.module:
        parts.append(record.module)
    return ".".join(parts)


def import_target(module: str, is_package: bool, record: ImportRecord) -> tuple[str, str]:
    """``(local_name, absolute_dotted_target)`` bound by ``record``."""
    base = import_base(module, is_package, record)
    if record.name is None:
        if record.asname:
            return record.asname, base
        root = base.split(".", 1)[0]
        return root, root
    target = f"{base}.{record.name}" if base else record.name
    return record.asname or record.name, target


class ProjectIndex:
    """All parsed modules plus concept lookup (see module contract)."""

    def __init__(self, items: list[tuple[SourceFile, FileSummary]], config: Config) -> None:
        self.config = config
        self.modules: dict[str, ModuleInfo] = {}
        self.infos: list[ModuleInfo] = []
        self.broken: set[str] = set()
        for source, summary in items:
            if summary.error is not None:
                self.broken.add(source.module)
                continue
            info = ModuleInfo(source, summary)
            info.classes = {c.name: c for c in summary.classes if c.qualname == c.name}
            self.infos.append(info)
            self.modules.setdefault(source.module, info)
        self._canon_cache: dict[str, str] = {}
        for info in self.infos:
            self._bind(info)
        self.use_config(config)

    def use_config(self, config: Config) -> None:
        """Look concepts up in ``config`` from now on (bindings stay as they are)."""
        self.config = config
        self.concepts: dict[str, Concept] = {c.canonical.dotted: c for c in config.concepts}
        self._public: dict[str, Concept] = {
            f"{c.public}.{c.class_name}": c for c in config.concepts
        }

    def _bind(self, info: ModuleInfo) -> None:
        events: list[tuple[int, int, int, str, str]] = []
        summary = info.summary
        for rec in summary.imports:
            local, target = import_target(info.name, info.file.is_package, rec)
            events.append((rec.line, rec.col, 0, local, target))
        for cls in summary.classes:
            if cls.qualname == cls.name:
                events.append((cls.line, cls.col, 0, cls.name, f"{info.name}.{cls.name}"))
        for alias in summary.aliases:
            events.append((alias.line, alias.col, 1, alias.target, alias.value))
        events.sort()
        bindings = info.bindings
        for _line, _col, is_alias, local, target in events:
            if is_alias:
                resolved = self.resolve_in(info, target)
                if resolved is not None:
                    bindings[local] = resolved
                else:
                    bindings.pop(local, None)
            else:
                bindings[local] = target

    def resolve_in(self, info: ModuleInfo, dotted: str) -> str | None:
        """Absolute dotted name that ``dotted`` refers to inside ``info`` (or None)."""
        root, _, rest = dotted.partition(".")
        base = info.bindings.get(root)
        if base is None:
            return None
        return f"{base}.{rest}" if rest else base

    def canon(self, dotted: str) -> str:
        """Follow re-exports of ``dotted`` to its defining location."""
        cached = self._canon_cache.get(dotted)
        if cached is not None:
            return cached
        result = self._canon(dotted, set())
        self._canon_cache[dotted] = result
        return result

    def _canon(self, dotted: str, seen: set[str]) -> str:
        if dotted in seen:
            return dotted
        seen.add(dotted)
        parts = dotted.split(".")
        for i in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:i])
            info = self.modules.get(prefix)
            if info is None:
                continue
            first = parts[i]
            rest = parts[i + 1 :]
            if first in info.classes:
                return dotted
            target = info.bindings.get(first)
            if target is None or target == f"{prefix}.{first}":
                return dotted
            return self._canon(".".join([target, *rest]), seen)
        return dotted

    def concept_of(self, dotted: str | None) -> Concept | None:
        """The concept that absolute ``dotted`` refers to, if any."""
        if dotted is None:
            return None
        found = self.concepts.get(self.canon(dotted))
        return found if found is not None else self._public.get(dotted)

    def concept_in(self, info: ModuleInfo, dotted: str) -> Concept | None:
        """The concept that ``dotted`` (as written inside ``info``) refers to."""
        return self.concept_of(self.resolve_in(info, dotted))

    def has_function(self, module: str, qualname: str) -> bool:
        """Whether ``module`` defines a function with this qualname."""
        info = self.modules.get(module)
        return info is not None and qualname in info.summary.functions

    def class_record(self, module: str, qualname: str) -> ClassRecord | None:
        """The class ``qualname`` defined in ``module``."""
        info = self.modules.get(module)
        if info is None:
            return None
        for cls in info.summary.classes:
            if cls.qualname == qualname:
                return cls
        return None


def _need_module(index: ProjectIndex, module: str, key: str) -> bool:
    """True if ``module`` can be checked; raise if it is simply missing."""
    if module in index.modules:
        return True
    if module in index.broken:
        return False  # the parse error is reported instead
    raise ConfigError(f"{key}: module {module!r} not found under tool.ssotcheck.paths")


def validate_targets(config: Config, index: ProjectIndex) -> None:
    """Raise :class:`ConfigError` if a configured module/class/function is missing."""
    for concept in config.concepts:
        key = f"{concept.key}.canonical"
        target = concept.canonical
        if _need_module(index, target.module, key) and (
            index.class_record(target.module, target.attr) is None
        ):
            raise ConfigError(f"{key}: class {target.attr!r} not found in {target.module!r}")
        if concept.factory is not None:
            fkey = f"{concept.key}.factory"
            fac = concept.factory
            if _need_module(index, fac.module, fkey) and not index.has_function(
                fac.module, fac.attr
            ):
                raise ConfigError(f"{fkey}: function {fac.attr!r} not found in {fac.module!r}")
        pkey = f"{concept.key}.public"
        if _need_module(index, concept.public, pkey) and _need_module(index, target.module, key):
            exposed = index.canon(f"{concept.public}.{concept.class_name}")
            if exposed != target.dotted:
                raise ConfigError(
                    f"{pkey}: module {concept.public!r} does not expose "
                    f"{concept.class_name!r} from {target.module!r}"
                )
    if config.config_module is not None:
        _need_module(index, config.config_module, "tool.ssotcheck.config_module")
    if config.config_defaults is not None:
        key = "tool.ssotcheck.config_defaults"
        target = config.config_defaults
        if _need_module(index, target.module, key) and (
            index.class_record(target.module, target.attr) is None
        ):
            raise ConfigError(f"{key}: class {target.attr!r} not found in {target.module!r}")
