"""Authentication: a verified JWT is the only source of a connection's user id.

Tokens arrive as ``Authorization: Bearer <jwt>`` or, from browsers, as the
subprotocol offer ``bearer.<jwt>`` next to ``runwire.v1``; never in a URL.
Verification fails closed: any problem raises :class:`AuthError` with a reason safe
to log and to send (it never contains the token). Required claims: ``sub`` (the user
id, 1-128 characters) and ``exp``; ``iss``/``aud`` when configured. Only the one
configured algorithm is accepted. :meth:`Authenticator.verify_claims` is the one
verification path: the upgrade, the in-band ``refresh`` frame and the HTTP API all
go through it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from runwire.config import Settings
from runwire.events import BEARER_PROTOCOL_PREFIX, SUBPROTOCOL
from runwire.exceptions import AuthError
from runwire.ids import UserId

__all__ = [
    "BEARER_PROTOCOL_PREFIX",
    "SUBPROTOCOL",
    "Authenticator",
    "TokenClaims",
    "issue_token",
    "offered_subprotocols",
    "token_from_headers",
]

MAX_USER_ID_CHARS = 128


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols a client offered, in order."""
    raw = headers.get("Sec-WebSocket-Protocol", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The bearer token from ``Authorization`` or a ``bearer.<jwt>`` subprotocol."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for protocol in offered_subprotocols(headers):
        if protocol.startswith(BEARER_PROTOCOL_PREFIX):
            return protocol.removeprefix(BEARER_PROTOCOL_PREFIX)
    return None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: whose it is and until when it is valid."""

    user_id: UserId
    """The token's ``sub``."""
    expires_at: int
    """The token's ``exp``, Unix seconds (the configured leeway is not added)."""


class Authenticator:
    """Verifies tokens against the configured key, algorithm, issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.auth_algorithm
        self.key = (
            settings.signing_secret()
            if self.algorithm.startswith("HS")
            else (settings.auth_public_key or "")
        )
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.leeway = settings.auth_leeway_s

    def verify(self, token: str | None) -> UserId:
        """The user id of a valid token (see :meth:`verify_claims`)."""
        return self.verify_claims(token).user_id

    def verify_claims(self, token: str | None) -> TokenClaims:
        """The user id and expiry of a valid token.

        Raises:
            AuthError: ``missing token``, ``expired token``, ``invalid token`` (forged,
                malformed, wrong algorithm, wrong issuer or audience) or ``invalid subject``.
        """
        if not token:
            raise AuthError("missing token")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired token") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_USER_ID_CHARS:
            raise AuthError("invalid subject")
        # PyJWT has checked that `exp` is present, an integer (or integral) and not past.
        return TokenClaims(UserId(subject), int(claims["exp"]))


def issue_token(settings: Settings, user_id: str, ttl_s: int | None = None) -> str:
    """Sign a token for ``user_id`` with the configured HMAC secret (dev and tests).

    Raises:
        ConfigError: no secret is available (production without ``AUTH_SECRET``).
        ValueError: the algorithm is asymmetric (runwire holds no private key).
    """
    if not settings.auth_algorithm.startswith("HS"):
        raise ValueError("runwire only issues HS* tokens; use your identity provider")
    if not 0 < len(user_id) <= MAX_USER_ID_CHARS:
        raise ValueError("user id must be 1-128 characters")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + (ttl_s if ttl_s is not None else settings.dev_token_ttl_s),
    }
    if settings.auth_issuer:
        claims["iss"] = settings.auth_issuer
    if settings.auth_audience:
        claims["aud"] = settings.auth_audience
    return jwt.encode(claims, settings.signing_secret(), algorithm=settings.auth_algorithm)
