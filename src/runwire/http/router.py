"""Which route answers a request: method and path patterns (sans-I/O).

Patterns are literal paths with ``{name}`` segments (``/api/runs/{run_id}``) that
match one non-empty path segment each, or end in ``/*`` (``/assets/*``) to match
everything below. Literal paths win over patterns; patterns are tried in the order
they were added. ``HEAD`` is answered by the ``GET`` route (the front door drops
the body). A path that exists under other methods gets 405 with ``Allow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from runwire.http.message import HttpRoute

__all__ = ["Match", "Router"]


@dataclass(frozen=True, slots=True)
class Match:
    """The result of :meth:`Router.match`: a route with its path parameters, or the
    methods the path does allow (``route`` is None: 405 if ``allowed``, else 404)."""

    route: HttpRoute | None
    params: dict[str, str]
    allowed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[str, ...]
    prefix: bool
    routes: dict[str, HttpRoute]

    def params(self, parts: list[str]) -> dict[str, str] | None:
        segments = self.segments
        if (len(parts) < len(segments)) if self.prefix else (len(parts) != len(segments)):
            return None
        values: dict[str, str] = {}
        for segment, part in zip(segments, parts, strict=False):
            if segment.startswith("{"):
                if not part:
                    return None
                values[segment[1:-1]] = unquote(part)
            elif segment != part:
                return None
        if self.prefix:
            values["*"] = "/".join(parts[len(segments) :])
        return values


class Router:
    """Routes by method and path; build it once, then :meth:`match` per request."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, HttpRoute]] = {}
        self._patterns: list[_Pattern] = []

    def add(self, method: str, path: str, route: HttpRoute) -> None:
        """Serve ``method path`` with ``route``; a second route for the same pair is an error."""
        method = method.upper()
        if "{" not in path and not path.endswith("/*"):
            routes = self._exact.setdefault(path, {})
        else:
            prefix = path.endswith("/*")
            segments = tuple(path.removesuffix("/*").split("/")[1:])
            found = next(
                (p for p in self._patterns if p.segments == segments and p.prefix == prefix),
                None,
            )
            if found is None:
                found = _Pattern(segments, prefix, {})
                self._patterns.append(found)
            routes = found.routes
        if method in routes:
            raise ValueError(f"two routes for {method} {path}")
        routes[method] = route

    def get(self, path: str, route: HttpRoute) -> None:
        """Serve ``GET`` (and so ``HEAD``) ``path``."""
        self.add("GET", path, route)

    def post(self, path: str, route: HttpRoute) -> None:
        """Serve ``POST path``."""
        self.add("POST", path, route)

    def match(self, method: str, path: str) -> Match:
        """The route for ``method path``; ``HEAD`` falls back to ``GET``."""
        routes = self._exact.get(path)
        params: dict[str, str] = {}
        if routes is None:
            parts = path.split("/")[1:]
            for pattern in self._patterns:
                found = pattern.params(parts)
                if found is not None:
                    routes, params = pattern.routes, found
                    break
        if routes is None:
            return Match(None, {}, ())
        route = routes.get(method) or (routes.get("GET") if method == "HEAD" else None)
        allowed = tuple(sorted({*routes, *(("HEAD",) if "GET" in routes else ())}))
        return Match(route, params if route is not None else {}, allowed)
