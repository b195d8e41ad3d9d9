"""Directed-graph helpers for import cycles.

Contract: :func:`strongly_connected` returns the strongly connected components
(iterative Tarjan, so deep graphs cannot overflow the stack), each sorted, in
a deterministic order; :func:`cycle_through` returns one concrete cycle that
starts and ends at a given node of a component.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence


def strongly_connected(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """All SCCs of ``graph`` (nodes missing as keys have no out-edges)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, pos = work.pop()
            if pos == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succs = graph.get(node, ())
            recurse = False
            while pos < len(succs):
                nxt = succs[pos]
                pos += 1
                if nxt not in index:
                    work.append((node, pos))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                result.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    result.sort()
    return result


def cycle_through(
    graph: Mapping[str, Sequence[str]], start: str, first: str, members: set[str]
) -> list[str]:
    """Shortest path ``start -> first -> ... -> start`` inside ``members``."""
    prev: dict[str, str] = {}
    queue: deque[str] = deque([first])
    seen = {first}
    while queue:
        node = queue.popleft()
        if node == start:
            break
        for nxt in graph.get(node, ()):
            if nxt in members and nxt not in seen:
                seen.add(nxt)
                prev[nxt] = node
                queue.append(nxt)
    path = [start]
    node = start
    while node != first and node in prev:
        node = prev[node]
        path.append(node)
    path.append(start)
    path.reverse()
    return path
