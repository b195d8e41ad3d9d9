"""Which web pages may open a socket: the ``Origin`` check of the upgrade request.

Browsers send ``Origin`` with every WebSocket handshake and let any page connect
anywhere; a page on another site could otherwise open a socket with a token it
obtained. Rules, in order:

* no ``Origin`` header: allowed (not a browser: CLIs, servers, the Python client);
* ``allowed_origins`` contains ``*``: every origin is allowed;
* the origin is listed in ``allowed_origins`` (``scheme://host[:port]``, exact,
  case-insensitive): allowed;
* ``allowed_origins`` is empty (the default): allowed only if the origin's
  ``host[:port]`` is the request's ``Host`` (the page was served by this gateway);
* anything else, ``null`` included: refused (HTTP 403).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["normalise_origin", "origin_allowed", "same_origin"]


def normalise_origin(origin: str) -> str:
    """``origin`` as compared: stripped, lower case, without a trailing ``/``."""
    return origin.strip().lower().rstrip("/")


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (``http(s)://host[:port]``) names the request's ``Host``."""
    parts = urlsplit(normalise_origin(origin))
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    return parts.netloc == host.strip().lower()


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a handshake with ``Origin: origin`` and ``Host: host`` may proceed."""
    if origin is None:
        return True
    if "*" in allowed:
        return True
    if allowed:
        return normalise_origin(origin) in {normalise_origin(item) for item in allowed}
    return same_origin(origin, host)
