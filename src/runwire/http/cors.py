"""Cross-origin requests to the HTTP routes (CORS), decided without I/O.

Only origins listed in ``cors_origins`` (or any, with ``*``) get CORS headers; a
request without ``Origin``, or from the gateway's own origin, needs none. runwire's
routes authenticate with ``Authorization: Bearer``, never cookies, so credentials
are not allowed (``Access-Control-Allow-Credentials`` is never sent) and the
origin is echoed (with ``Vary: Origin``) rather than ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping

from runwire.origins import normalise_origin, same_origin

__all__ = ["EXPOSED_HEADERS", "PREFLIGHT_MAX_AGE_S", "CorsPolicy"]

PREFLIGHT_MAX_AGE_S = 600
"""How long a browser may cache a preflight answer."""

EXPOSED_HEADERS = "Retry-After, X-Vercel-AI-UI-Message-Stream"
"""Response headers a cross-origin page may read."""

Headers = tuple[tuple[str, str], ...]


class CorsPolicy:
    """The CORS answers for one list of allowed origins."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(normalise_origin(origin) for origin in origins if origin != "*")

    def cross_origin(self, headers: Mapping[str, str]) -> str | None:
        """The request's ``Origin`` when it comes from another origin than the gateway's."""
        origin = headers.get("origin")
        if origin is None or same_origin(origin, headers.get("host")):
            return None
        return origin

    def allows(self, origin: str) -> bool:
        """Whether pages of ``origin`` may call the routes."""
        return self._any or normalise_origin(origin) in self._origins

    def response_headers(self, origin: str | None) -> Headers:
        """Headers for an actual (non-preflight) response to a request from ``origin``."""
        if origin is None or not self.allows(origin):
            return ()
        return (
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", EXPOSED_HEADERS),
            ("vary", "Origin"),
        )

    def preflight_headers(
        self, origin: str, allowed_methods: tuple[str, ...], requested_headers: str | None
    ) -> Headers | None:
        """The headers of a 204 answer to a preflight, or None to refuse it (403).

        ``allowed_methods`` are the methods of the route; the requested headers are
        allowed as asked (the routes read only ``Authorization``, ``Content-Type``,
        ``Last-Event-ID`` and ``Accept``; others are harmless).
        """
        if not self.allows(origin):
            return None
        headers: list[tuple[str, str]] = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-methods", ", ".join(allowed_methods)),
            ("access-control-max-age", str(PREFLIGHT_MAX_AGE_S)),
            ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]
        if requested_headers:
            headers.append(("access-control-allow-headers", requested_headers))
        return tuple(headers)
