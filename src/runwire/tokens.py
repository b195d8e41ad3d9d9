"""Token lifetime of an open socket: warn before ``exp``, close 4401 at ``exp``, refresh.

A token is checked at the upgrade, but a socket lives longer than that moment, so
the gateway keeps checking: ``token_refresh_window_s`` before the token's ``exp`` it
sends ``{"type":"token_expiring","expires_at":...}``; at ``exp`` plus
``auth_leeway_s`` it closes the socket with 4401 ``token expired``. An in-band
``refresh`` frame, verified exactly like the upgrade and for the same ``sub``,
replaces the token and moves both moments.

Two halves:

- :class:`TokenSchedule` is sans-I/O: the decisions for one connection's token
  (when to warn, when to close, what a refresh changes), given the wall-clock time.
- :class:`TokenTimer` drives a schedule with one ``loop.call_at`` timer and two
  callbacks; the manager owns one per connection and cancels it on every exit path.

:func:`refresh_delay` is the clients' half: when a client should refresh on its own,
before the server's warning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from runwire.callbacks import NO_CONTEXT
from runwire.exceptions import AuthError
from runwire.ids import UserId

if TYPE_CHECKING:  # the clients import this module: no PyJWT or pydantic at run time
    from runwire.auth import Authenticator, TokenClaims

__all__ = [
    "EXPIRED_REASON",
    "SUBJECT_CHANGED_REASON",
    "TokenPolicy",
    "TokenSchedule",
    "TokenStep",
    "TokenTimer",
    "refresh_delay",
    "verify_refresh",
]

Owner = TypeVar("Owner")
"""What a :class:`TokenTimer` belongs to (the manager's connection), passed to its callbacks."""

EXPIRED_REASON = "token expired"
"""Close reason (4401) when a socket's token runs out."""
SUBJECT_CHANGED_REASON = "token subject changed"
"""Close reason (4401) when a ``refresh`` token names another user."""


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """How long before ``exp`` a socket is warned, and the clock skew allowed after it."""

    refresh_window_s: float
    leeway_s: float


class TokenStep(Enum):
    """What a schedule asks its driver to do now."""

    WARN = "warn"
    """Send ``token_expiring`` (once per token)."""
    EXPIRE = "expire"
    """Close the socket with 4401 ``token expired``."""


class TokenSchedule:
    """The token-lifetime decisions of one connection. No I/O, no clock of its own.

    Times are Unix seconds (``exp`` is wall-clock time). The warning is due
    ``refresh_window_s`` before ``exp`` and is given once per token. A token that is
    already inside the window when the connection opens is warned at once; a token
    installed by :meth:`refresh` that is already inside the window is not warned at
    all (its client has just refreshed and learnt ``expires_at`` from ``refreshed``;
    warning again would only make it refresh in a loop). Expiry is due at ``exp`` +
    ``leeway_s``.
    """

    __slots__ = ("_warned", "expires_at", "policy")

    def __init__(self, policy: TokenPolicy, expires_at: int) -> None:
        self.policy = policy
        self.expires_at = expires_at
        self._warned = False

    @property
    def warn_at(self) -> float:
        """When ``token_expiring`` is due."""
        return self.expires_at - self.policy.refresh_window_s

    @property
    def close_at(self) -> float:
        """When the socket must close with 4401."""
        return self.expires_at + self.policy.leeway_s

    @property
    def warned(self) -> bool:
        """Whether the current token needs no (more) warning."""
        return self._warned

    def next_deadline(self) -> float:
        """The next moment :meth:`due` may return a step."""
        return self.close_at if self._warned else min(self.warn_at, self.close_at)

    def due(self, now: float) -> TokenStep | None:
        """The step due at ``now``, if any; ``WARN`` is returned once per token."""
        if now >= self.close_at:
            return TokenStep.EXPIRE
        if not self._warned and now >= self.warn_at:
            self._warned = True
            return TokenStep.WARN
        return None

    def expired(self, now: float) -> bool:
        """Whether the token has run out (``exp`` + leeway is past)."""
        return now >= self.close_at

    def refresh(self, expires_at: int, now: float) -> None:
        """Replace the token by one valid until ``expires_at`` (verified by the caller)."""
        self.expires_at = expires_at
        self._warned = now >= self.warn_at


def verify_refresh(authenticator: Authenticator, user_id: UserId, token: str) -> TokenClaims:
    """Verify a ``refresh`` token exactly like the upgrade, for the connection's user.

    Raises:
        AuthError: the upgrade's reasons (``expired token``, ``invalid token``...), or
            ``token subject changed`` when ``sub`` is not ``user_id``.
    """
    claims = authenticator.verify_claims(token)
    if claims.user_id != user_id:
        raise AuthError(SUBJECT_CHANGED_REASON)
    return claims


class TokenTimer(Generic[Owner]):
    """Drives one :class:`TokenSchedule` with a ``loop.call_at`` timer.

    ``on_warn(owner, expires_at)`` is called when ``token_expiring`` is due,
    ``on_expire(owner)`` when the socket must close; after ``on_expire`` the timer is
    done. The callbacks take the owner (the connection) so that one pair of bound
    methods serves every connection: no closure per socket for the collector. At most one
    timer handle is pending at any time; :meth:`cancel` (idempotent) removes it.
    Deadlines are wall-clock times, converted to the loop's clock when scheduled and
    checked against the wall clock again when the timer fires.
    """

    __slots__ = (
        "_handle",
        "_loop",
        "_on_expire",
        "_on_warn",
        "_owner",
        "_wall_clock",
        "schedule",
    )

    def __init__(
        self,
        schedule: TokenSchedule,
        owner: Owner,
        on_warn: Callable[[Owner, int], None],
        on_expire: Callable[[Owner], None],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.schedule = schedule
        self._owner = owner
        self._on_warn = on_warn
        self._on_expire = on_expire
        self._wall_clock = wall_clock
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    @property
    def expires_at(self) -> int:
        """The current token's ``exp``."""
        return self.schedule.expires_at

    @property
    def pending(self) -> bool:
        """Whether a timer is scheduled (False once cancelled or expired)."""
        return self._handle is not None

    def expired(self) -> bool:
        """Whether the current token has run out by the wall clock."""
        return self.schedule.expired(self._wall_clock())

    def refresh(self, expires_at: int) -> None:
        """Replace the token (already verified) and reschedule; no-op once cancelled."""
        if self._handle is None:
            return
        self.schedule.refresh(expires_at, self._wall_clock())
        self._handle.cancel()
        self._arm()

    def cancel(self) -> None:
        """Stop: no callback is called after this. Idempotent."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        delay = self.schedule.next_deadline() - self._wall_clock()
        self._handle = self._loop.call_at(
            self._loop.time() + max(0.0, delay), self._fire, context=NO_CONTEXT
        )

    def _fire(self) -> None:
        step = self.schedule.due(self._wall_clock())
        if step is TokenStep.EXPIRE:
            self._handle = None
            self._on_expire(self._owner)
            return
        self._arm()  # before the callback, which may cancel us
        if step is TokenStep.WARN:
            self._on_warn(self._owner, self.schedule.expires_at)


def refresh_delay(expires_at: float, now: float, margin_s: float) -> float:
    """Seconds a client should wait before refreshing a token valid until ``expires_at``.

    ``margin_s`` before expiry, but never sooner than half the remaining lifetime:
    a token provider whose tokens live shorter than the margin is asked at most
    twice per token lifetime, not in a loop. 0 when the token has run out.
    """
    remaining = expires_at - now
    if remaining <= 0:
        return 0.0
    return max(remaining - margin_s, remaining / 2)
