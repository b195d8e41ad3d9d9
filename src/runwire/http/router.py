"""Which route answers a request: method and path patterns (sans-I/O).

Patterns are literal paths with ``{name}`` segments (``/api/runs/{run_id}``) that
match one non-empty path segment each, or end in ``/*`` (``/assets/*``) to match
everything below. Literal paths win over patterns; patterns are tried in the order
they were added. ``HEAD`` is answered by the ``GET`` route (the front door drops
the body). A path that exists under other methods gets 405 with ``Allow``.

Segments are percent-decoded exactly once: the front door's path is already decoded
(ASGI ``path``), so a parameter is taken as it stands (``a%2541`` is ``a%41``, not
``aA``). An encoded slash (``team%2Fbob``) is one segment holding ``/``, which only
the raw path shows: given ASGI ``raw_path``, the segments come from it (each
decoded once) when they decode to the same path, else from ``path``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from runwire.http.message import HttpRoute

__all__ = ["Match", "Router"]

_ENCODED_SLASH = re.compile(rb"%2[fF]")


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
                values[segment[1:-1]] = part
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

    def match(self, method: str, path: str, raw_path: bytes | None = None) -> Match:
        """The route for ``method path``; ``HEAD`` falls back to ``GET``.

        ``path`` is decoded (ASGI ``path``, under the mount point); ``raw_path`` is
        the request's ASGI ``raw_path``, if known (mount prefix included or not).
        """
        parts = _segments(path, raw_path)
        literal = all("/" not in part for part in parts)
        routes = self._exact.get(path) if literal else None
        params: dict[str, str] = {}
        if routes is None:
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


def _segments(path: str, raw_path: bytes | None) -> list[str]:
    """The decoded segments of ``path`` (after its leading ``/``), split where the
    raw path has a ``/``: an encoded ``%2F`` stays inside its segment."""
    plain = path.split("/")[1:]
    if raw_path is None or not _ENCODED_SLASH.search(raw_path):
        return plain  # no encoded slash: splitting the decoded path is the same
    decoded = [unquote_to_bytes(raw).decode("utf-8", "replace") for raw in raw_path.split(b"/")]
    for start in range(len(decoded) - 1, -1, -1):  # the tail below the mount prefix
        tail = decoded[start:]
        if "/" + "/".join(tail) == path:
            return tail
    return plain  # raw_path does not spell this path (rewritten): trust ``path``
