"""SSOT005 construction-outside-factory.

Fires for a call whose callee resolves (through imports and aliases) to a
concept that declares a ``factory``, unless the call is inside that factory
function (or a function nested in it).  ``isinstance`` checks, annotations and
subclassing are not calls of the concept and stay silent.
"""

from __future__ import annotations

from collections.abc import Iterator

from ssotcheck.config import Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.index import ProjectIndex


def check_construction(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT005 findings."""
    if not any(c.factory for c in config.concepts):
        return
    for info in index.infos:
        if not info.file.report:
            continue
        for call in info.summary.calls:
            concept = index.concept_in(info, call.func)
            if concept is None or concept.factory is None:
                continue
            factory = concept.factory
            if info.name == factory.module and (
                call.scope == factory.attr or call.scope.startswith(factory.attr + ".")
            ):
                continue
            yield make_finding(
                "SSOT005",
                info.file.relpath,
                call.line,
                call.col,
                f"concept {concept.name!r} constructed directly via {call.func}(...)",
                f"{call.scope}:{concept.name}",
                f"call `{factory.module}.{factory.attr}(...)` instead",
            )
