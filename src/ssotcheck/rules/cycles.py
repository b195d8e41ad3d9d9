"""SSOT006 import-cycle.

Edges are module-level imports between scanned modules (imports inside
``if TYPE_CHECKING:`` or inside functions are ignored; importing a submodule
does not add an edge to its parent package).  Each strongly connected
component is reported once, at the first import of its smallest reported
module that points into the component.
"""

from __future__ import annotations

from collections.abc import Iterator

from ssotcheck.config import Config
from ssotcheck.findings import Finding, make_finding
from ssotcheck.graph import cycle_through, strongly_connected
from ssotcheck.index import ModuleInfo, ProjectIndex, import_base
from ssotcheck.summary import ImportRecord


def _edge_target(index: ProjectIndex, info: ModuleInfo, rec: ImportRecord) -> str | None:
    base = import_base(info.name, info.file.is_package, rec)
    if rec.name is None:
        parts = base.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in index.modules:
                return cand
        return None
    sub = f"{base}.{rec.name}" if base else rec.name
    if sub in index.modules:
        return sub
    return base if base in index.modules else None


def import_graph(
    index: ProjectIndex,
) -> tuple[dict[str, list[str]], dict[tuple[str, str], ImportRecord]]:
    """Module-level import graph plus the first import statement of each edge."""
    graph: dict[str, list[str]] = {}
    first: dict[tuple[str, str], ImportRecord] = {}
    for info in index.infos:
        if index.modules.get(info.name) is not info:
            continue  # duplicate module name; the first file wins
        succs = graph.setdefault(info.name, [])
        for rec in info.summary.imports:
            if rec.type_checking or rec.in_function:
                continue
            target = _edge_target(index, info, rec)
            if target is None or target == info.name:
                continue
            edge = (info.name, target)
            known = first.get(edge)
            if known is None:
                succs.append(target)
            if known is None or (rec.line, rec.col) < (known.line, known.col):
                first[edge] = rec
    return graph, first


def check_cycles(index: ProjectIndex, config: Config) -> Iterator[Finding]:
    """Emit SSOT006 findings, one per cycle (strongly connected component)."""
    graph, first = import_graph(index)
    for comp in strongly_connected(graph):
        if len(comp) < 2:
            continue
        members = set(comp)
        anchors = [m for m in comp if index.modules[m].file.report]
        if not anchors:
            continue
        anchor = anchors[0]
        edges = [first[(anchor, t)] for t in graph[anchor] if t in members]
        rec = min(edges, key=lambda r: (r.line, r.col))
        target = next(t for t in graph[anchor] if first[(anchor, t)] is rec)
        cycle = cycle_through(graph, anchor, target, members)
        yield make_finding(
            "SSOT006",
            index.modules[anchor].file.relpath,
            rec.line,
            rec.col,
            "import cycle: "
            + " -> ".join(cycle)
            + (f" (component of {len(comp)} modules)" if len(comp) > len(cycle) - 1 else ""),
            "cycle:" + ",".join(comp),
        )
