"""A Python client of wire protocol v1 (used by the CLI and the tests).

::

    async with Client.connect("ws://127.0.0.1:8765/ws", token) as client:
        async for event in client.run("what is 17 * 23?"):
            print(event["type"], event["data"])

One reader task receives every frame: replies (``ack``, ``pong``, ``error`` with a
``ref``) resolve the request that caused them; everything else is queued in order
for :meth:`Client.recv`. The client tracks ``epoch`` and the last ``offset`` seen and
drops any event it has already seen, so :meth:`Client.connect` with ``resume=``
continues a stream exactly once.

A token is a string, or a *token provider*: a callable returning a fresh token
(``str`` or an awaitable of one). With a provider the client keeps its socket's
token fresh in-band (``refresh`` frames): shortly before ``expires_at``
(:func:`runwire.tokens.refresh_delay`), and at once on ``token_expiring``; the
socket stays the same connection. :class:`ReconnectingClient` also asks the
provider before every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

from runwire.events import BEARER_PROTOCOL_PREFIX, SUBPROTOCOL, TERMINAL_EVENT_TYPES
from runwire.exceptions import CloseCode, ConnectionClosed, RunwireError, should_reconnect
from runwire.tokens import EXPIRED_REASON, refresh_delay

__all__ = [
    "Client",
    "ClientError",
    "ReconnectingClient",
    "StreamPosition",
    "TokenProvider",
    "TokenProviderError",
    "TokenSource",
]

Frame = dict[str, Any]
_REPLY_TYPES = frozenset({"ack", "pong", "runs", "refreshed"})

TokenProvider = Callable[[], str | Awaitable[str]]
"""Returns a fresh token (a JWT for the same user), directly or as an awaitable."""
TokenSource = str | TokenProvider
"""A token, or a provider of fresh ones."""

log = logging.getLogger("runwire.client")


class TokenProviderError(RunwireError):
    """The token provider raised (the cause is chained) or returned no token."""


async def _token_from(source: TokenSource) -> str:
    """The token itself, or a fresh one from the provider.

    Raises:
        TokenProviderError: the provider failed, or returned no non-empty string.
    """
    if isinstance(source, str):
        return source
    try:
        token = source()
        if inspect.isawaitable(token):
            token = await token
    except Exception as exc:
        raise TokenProviderError(f"the token provider failed ({type(exc).__name__})") from exc
    if not isinstance(token, str) or not token:
        raise TokenProviderError("the token provider returned no token")
    return token


class _RedactTokens(logging.Filter):
    """Hide bearer tokens from the handshake headers websockets logs at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(value: object) -> object:
    text = str(value)
    lowered = text.lower()
    if "bearer" in lowered or "token" in lowered:
        return _REFRESH_TOKEN.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))
    return value


_TOKEN = re.compile(r"((?:bearer\.|Bearer\s+))[A-Za-z0-9_\-.=]+", re.IGNORECASE)
# The `token` of a `refresh` frame, also when websockets elides the middle of a frame.
_REFRESH_TOKEN = re.compile(r"(\"token\"\s*:\s*\")[^\"']*")
_wire_log = logging.getLogger("runwire.client.wire")
_wire_log.addFilter(_RedactTokens())


class ClientError(RunwireError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a client is in its user's stream (to resume from)."""

    epoch: str
    offset: int


class Client:
    """One connection to a runwire gateway. Create it with :meth:`connect`.

    ``expires_at`` is the current token's ``exp`` (from ``connected``, then from each
    ``refreshed``). With a token provider, ``token_expiring`` frames are handled by
    the client (it refreshes); without one they are passed to :meth:`recv`, and
    :meth:`refresh` replaces the token by hand.
    """

    def __init__(
        self,
        socket: ClientConnection,
        position: StreamPosition | None,
        token_provider: TokenProvider | None = None,
        refresh_margin_s: float = 30.0,
    ) -> None:
        self.socket = socket
        self.connected: Frame = {}
        self.position = position
        self.duplicates_dropped = 0
        self.expires_at: int | None = None
        self.refreshes = 0
        """Tokens replaced in-band on this connection."""
        self.refresh_margin_s = refresh_margin_s
        self._token_provider = token_provider
        self._expiring = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None
        self._frames: asyncio.Queue[Frame | ConnectionClosed] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[Frame]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._engine_available = asyncio.Event()
        self._engine_available.set()  # `connected` is only sent while the engine answers
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        token: TokenSource,
        *,
        resume: StreamPosition | None = None,
        header_auth: bool = False,
        open_timeout: float = 10.0,
        refresh_margin_s: float = 30.0,
    ) -> AsyncIterator[Client]:
        """Connect, authenticate and wait for ``connected``.

        Args:
            url: the ``ws://.../ws`` endpoint.
            token: the JWT, or a token provider (asked now, then whenever the token
                needs refreshing).
            resume: continue from this position (events after it are replayed first).
            header_auth: send the token as ``Authorization: Bearer`` instead of the
                subprotocol offer.
            refresh_margin_s: with a provider, refresh this long before ``expires_at``
                (or after half the remaining lifetime, if that is later), or earlier
                on ``token_expiring``.

        Raises:
            ConnectionClosed: the server closed before ``connected`` (4401: bad token).
            TokenProviderError: the provider failed or returned no token.
        """
        provider = None if isinstance(token, str) else token
        token = await _token_from(token)
        if resume is not None:
            url = f"{url}?epoch={resume.epoch}&offset={resume.offset}"
        protocols = [SUBPROTOCOL]
        headers = {}
        if header_auth:
            headers["Authorization"] = f"Bearer {token}"
        else:
            protocols.append(BEARER_PROTOCOL_PREFIX + token)
        socket = await websockets.connect(
            url,
            subprotocols=protocols,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=None,
            compression=None,
            logger=_wire_log,
        )
        client = cls(socket, resume, provider, refresh_margin_s)
        client._reader = asyncio.create_task(client._read())
        try:
            first = await client.recv()
            if first.get("type") != "connected":
                raise RunwireError(f"expected 'connected', got {first.get('type')!r}")
            if provider is not None and client.expires_at is not None:
                client._refresher = asyncio.create_task(client._keep_token_fresh())
            yield client
        finally:
            await client.close()

    async def close(self) -> None:
        """Close the socket and stop the reader; idempotent."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.socket.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for message in self.socket:
                frame: Frame = msgspec.json.decode(message)
                if self._resolve(frame):
                    continue
                kind = frame.get("type")
                if kind == "connected":
                    self.connected = frame
                    self.expires_at = frame.get("expires_at")
                    if self.position is None:
                        self.position = StreamPosition(frame["epoch"], frame["offset"])
                elif kind == "resume_failed":
                    self.position = StreamPosition(frame["epoch"], frame["offset"])
                elif kind == "token_expiring" and self._token_provider is not None:
                    if self.expires_at is None or frame["expires_at"] >= self.expires_at:
                        self._expiring.set()  # about the current token, not a replaced one
                    continue
                elif kind == "engine_status":
                    if frame.get("state") == "available":
                        self._engine_available.set()
                    else:
                        self._engine_available.clear()
                elif "offset" in frame and not self._advance(frame):
                    continue
                self._frames.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.socket.close_code
            self.close_code = rcvd if rcvd is not None else 1006
            self.close_reason = self.socket.close_reason or ""
            closed = ConnectionClosed(self.close_code, self.close_reason)
            self._engine_available.set()  # nothing more will come: stop waiting for it
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(closed)
            self._frames.put_nowait(closed)

    def _resolve(self, frame: Frame) -> bool:
        kind = frame.get("type")
        if kind == "error" and frame.get("code") == "engine_unavailable":
            # The gateway sends `engine_status` `available` after it: wait for that one.
            self._engine_available.clear()
        if kind in _REPLY_TYPES or (kind == "error" and frame.get("ref") in self._waiting):
            future = self._waiting.pop(frame.get("id") or frame.get("ref") or "", None)
            if future is not None and not future.done():
                future.set_result(frame)
                return True
        return False

    def _advance(self, event: Frame) -> bool:
        """Record an event's offset; False for one already seen (dropped)."""
        offset = event["offset"]
        if self.position is not None and offset <= self.position.offset:
            self.duplicates_dropped += 1
            return False
        epoch = self.position.epoch if self.position else self.connected["epoch"]
        self.position = StreamPosition(epoch, offset)
        return True

    @property
    def engine_available(self) -> bool:
        """False from an ``engine_status`` ``unavailable`` or an ``error``
        ``engine_unavailable`` until the next ``engine_status`` ``available``."""
        return self._engine_available.is_set()

    async def wait_engine_available(self, timeout: float | None = None) -> None:
        """Return once :attr:`engine_available` holds (at once if it does), or once the
        connection closed (a request then raises :class:`ConnectionClosed`).

        Raises:
            TimeoutError: still unavailable after ``timeout`` seconds.
        """
        await asyncio.wait_for(self._engine_available.wait(), timeout)

    async def recv(self, timeout: float | None = None) -> Frame:
        """The next event or notice (``connected``, ``resumed``, unmatched ``error``...).

        Raises:
            ConnectionClosed: the connection is closed and every frame was read.
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        item = await asyncio.wait_for(self._frames.get(), timeout)
        if isinstance(item, ConnectionClosed):
            self._frames.put_nowait(item)
            raise item
        return item

    async def _request(self, frame: Frame, key: str, timeout: float) -> Frame:
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        await self.socket.send(msgspec.json.encode(frame).decode())
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(key, None)
        if reply.get("type") == "error":
            raise ClientError(reply["code"], reply["message"])
        return reply

    async def refresh(self, token: str | None = None, *, timeout: float = 10.0) -> Frame:
        """Replace this connection's token in-band; returns the ``refreshed`` reply.

        Without ``token``, the token provider given to :meth:`connect` is asked.
        The token must be valid and for the same user, else the server closes the
        connection with 4401.

        Raises:
            RunwireError: no ``token`` and no provider.
            TokenProviderError: the provider failed or returned no token.
            ConnectionClosed: the connection closed (4401: the server refused the token).
        """
        if token is None:
            if self._token_provider is None:
                raise RunwireError("refresh() needs a token: connect() was given no provider")
            token = await _token_from(self._token_provider)
        request_id = secrets.token_hex(8)
        # `token` before `id`: websockets' debug log elides the middle of long frames,
        # and the redaction filter finds the token after `"token":"`.
        frame: Frame = {"type": "refresh", "token": token, "id": request_id}
        reply = await self._request(frame, request_id, timeout)
        self.expires_at = reply["expires_at"]
        self.refreshes += 1
        return reply

    async def _keep_token_fresh(self) -> None:
        """Refresh with the provider before the token runs out, for as long as the socket
        is open. A provider that cannot give a later ``exp`` is asked again only when
        the server warns about a newer token; failures are retried, never raised."""
        stuck = False
        while self.expires_at is not None:
            if stuck:
                await self._expiring.wait()
            else:
                delay = refresh_delay(self.expires_at, time.time(), self.refresh_margin_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._expiring.wait(), delay)
            self._expiring.clear()
            before = self.expires_at
            try:
                reply = await self.refresh()
            except (ConnectionClosed, websockets.ConnectionClosed):
                return
            except (TokenProviderError, ClientError, TimeoutError) as exc:
                # Retry until the socket closes; the token itself is never logged.
                log.warning("token refresh failed (%s); retrying", exc)
                remaining = before - time.time()
                await asyncio.sleep(min(5.0, max(0.5, remaining / 4)))
                continue
            stuck = reply["expires_at"] <= before

    async def send_message(
        self,
        content: str,
        *,
        thread_id: str | None = None,
        message_id: str | None = None,
        timeout: float = 10.0,
    ) -> Frame:
        """Send ``user_message`` and return its ``ack`` (with ``run_id``).

        Raises:
            ClientError: the server refused it (``too_many_runs``...).
        """
        message_id = message_id or secrets.token_hex(8)
        frame: Frame = {"type": "user_message", "id": message_id, "content": content}
        if thread_id is not None:
            frame["thread_id"] = thread_id
        return await self._request(frame, message_id, timeout)

    async def cancel(self, run_id: str, timeout: float = 10.0) -> None:
        """Send ``cancel``; raises :class:`ClientError` ``not_found`` for a foreign run.

        The server only replies on failure, so this waits for a ``ping`` round trip.
        """
        request_id = secrets.token_hex(8)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self.socket.send(
                msgspec.json.encode({"type": "cancel", "run_id": run_id, "id": request_id}).decode()
            )
            await self.ping(timeout)
            if future.done() and future.result().get("type") == "error":
                reply = future.result()
                raise ClientError(reply["code"], reply["message"])
        finally:
            self._waiting.pop(request_id, None)

    async def ping(self, timeout: float = 10.0) -> None:
        """Round trip a ``ping``."""
        ping_id = secrets.token_hex(8)
        await self._request({"type": "ping", "id": ping_id}, ping_id, timeout)

    async def get_runs(
        self, thread_id: str | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The user's run snapshots (of one thread), from whichever node this is."""
        request_id = secrets.token_hex(8)
        frame: Frame = {"type": "get_runs", "id": request_id}
        if thread_id is not None:
            frame["thread_id"] = thread_id
        reply = await self._request(frame, request_id, timeout)
        return list(reply["runs"])

    async def get_run(self, run_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """One of the user's run snapshots, or ``None``."""
        request_id = secrets.token_hex(8)
        reply = await self._request(
            {"type": "get_run", "id": request_id, "run_id": run_id}, request_id, timeout
        )
        return reply["runs"][0] if reply["runs"] else None

    async def send_raw(self, payload: str | bytes) -> None:
        """Send a frame as is (for testing servers)."""
        await self.socket.send(payload)

    async def run(
        self, content: str, *, thread_id: str | None = None, timeout: float = 60.0
    ) -> AsyncIterator[Frame]:
        """Send a message and yield its run's events up to and including the terminal one.

        Events of other runs received meanwhile are skipped.
        """
        ack = await self.send_message(content, thread_id=thread_id)
        async for frame in _events_of_run(self.recv, ack["run_id"], timeout):
            yield frame


async def _events_of_run(
    recv: Callable[[float], Awaitable[Frame]], run_id: str, timeout: float
) -> AsyncIterator[Frame]:
    """The frames of ``run_id`` from ``recv``, through its terminal event, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await recv(max(0.0, deadline - loop.time()))
        if frame.get("run_id") != run_id:
            continue
        yield frame
        if frame["type"] in TERMINAL_EVENT_TYPES:
            return


class ReconnectingClient:
    """A client that survives disconnects: it reconnects and resumes, exactly once.

    After an abnormal close (1006, network drop) or one whose code advises it
    (1001, 1011, 4409, 4429; see :func:`runwire.exceptions.should_reconnect`), it
    reconnects (to the next of several gateway URLs when one is unreachable) with
    jittered exponential backoff (``4409`` at once, ``4429`` after a
    longer first delay) and resumes from the last offset it delivered, so no event is
    missed and none is delivered twice. ``resume_failed`` is passed on to the caller,
    who should rebuild its view from ``GET /api/runs``. Closes that advise against
    reconnecting (4401, 4403, 4400, 1009, 1000) raise :class:`ConnectionClosed`.

    ``token`` may be a token provider: it is asked for a fresh token before every
    (re)connection, each connection refreshes its token in-band with it (see
    :class:`Client`), and a 4401 ``token expired`` close (a refresh came too late) is
    followed by one reconnect with a fresh token instead of raising.

    ``send_message`` retries with the same message id after a reconnect; the server
    treats the id as an idempotency key, so a retry never starts a second run. After
    ``error`` ``engine_unavailable`` it waits for ``engine_status`` ``available`` (which
    the gateway always sends once its engine answers again) and retries, for up to
    ``engine_wait_s`` seconds in all; then it raises the :class:`ClientError`.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: TokenSource,
        *,
        initial_delay_s: float = 0.05,
        max_delay_s: float = 5.0,
        max_attempts: int = 30,
        position: StreamPosition | None = None,
        rng: random.Random | None = None,
        refresh_margin_s: float = 30.0,
        engine_wait_s: float = 30.0,
    ) -> None:
        self.refresh_margin_s = refresh_margin_s
        self.urls = [url] if isinstance(url, str) else list(url)
        self.engine_wait_s = engine_wait_s
        self.engine_retries = 0
        self._next_url = 0
        self.token = token
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.max_attempts = max_attempts
        self.position = position
        self.reconnects = 0
        self.duplicates_dropped = 0
        self._rng = rng or random.Random()
        self._stack: AsyncExitStack | None = None
        self._client: Client | None = None

    async def __aenter__(self) -> ReconnectingClient:
        await self._connect(attempt_limit=1)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the current connection; no reconnect follows."""
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    @property
    def client(self) -> Client:
        """The current connection (replaced on every reconnect)."""
        if self._client is None:
            raise RunwireError("not connected")
        return self._client

    async def _connect(self, attempt_limit: int, first_delay_s: float = 0.0) -> None:
        delay = first_delay_s
        for attempt in range(attempt_limit):
            if delay:
                await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))
            stack = AsyncExitStack()
            url = self.urls[self._next_url % len(self.urls)]
            try:
                client = await stack.enter_async_context(
                    Client.connect(
                        url,
                        self.token,
                        resume=self.position,
                        refresh_margin_s=self.refresh_margin_s,
                    )
                )
            except ConnectionClosed as exc:
                await stack.aclose()
                if not should_reconnect(exc.code) or attempt + 1 == attempt_limit:
                    raise
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                await stack.aclose()
                self._next_url += 1  # that node is gone: try the next one
                if attempt + 1 == attempt_limit:
                    raise
            except TokenProviderError:
                await stack.aclose()
                if attempt + 1 == attempt_limit:
                    raise
            else:
                self._stack, self._client = stack, client
                if self.position is None:
                    self.position = client.position
                return
            delay = min(self.max_delay_s, max(delay * 2, self.initial_delay_s))

    async def _reconnect(self, closed: ConnectionClosed) -> None:
        renewable = (
            not isinstance(self.token, str)
            and closed.code == CloseCode.UNAUTHORIZED
            and closed.reason == EXPIRED_REASON
        )
        if not should_reconnect(closed.code) and not renewable:
            raise closed
        old = self._client
        if old is not None:
            self.duplicates_dropped += old.duplicates_dropped
        await self.aclose()
        self.reconnects += 1
        first_delay = {4409: 0.0, 4429: 1.0}.get(closed.code, self.initial_delay_s)
        await self._connect(self.max_attempts, first_delay)

    async def recv(self, timeout: float | None = None) -> Frame:
        """The next frame, reconnecting (and resuming) as often as needed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                frame = await self.client.recv(timeout=remaining)
            except ConnectionClosed as closed:
                await self._reconnect(closed)
                continue
            if "offset" in frame or frame.get("type") == "resume_failed":
                self.position = self.client.position
            return frame

    async def send_message(
        self, content: str, *, thread_id: str | None = None, message_id: str | None = None
    ) -> Frame:
        """Send ``user_message``; after a reconnect the same id is sent again, and after
        ``error`` ``engine_unavailable`` once ``engine_status`` ``available`` arrives.

        Raises:
            ClientError: refused for another reason, or ``engine_unavailable`` and the
                engine did not come back within ``engine_wait_s``.
        """
        message_id = message_id or secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        engine_deadline: float | None = None
        retries = 0
        while True:
            client = self.client
            try:
                return await client.send_message(
                    content, thread_id=thread_id, message_id=message_id
                )
            except ConnectionClosed as closed:
                await self._reconnect(closed)
            except websockets.ConnectionClosed:
                socket = client.socket
                code = socket.close_code if socket.close_code is not None else 1006
                await self._reconnect(ConnectionClosed(code, socket.close_reason or ""))
            except ClientError as error:
                if error.code != "engine_unavailable":
                    raise
                if engine_deadline is None:
                    engine_deadline = loop.time() + self.engine_wait_s
                try:
                    await client.wait_engine_available(max(0.0, engine_deadline - loop.time()))
                    if retries:  # refused again right after `available`: back off
                        delay = min(self.max_delay_s, self.initial_delay_s * 2**retries)
                        await asyncio.wait_for(
                            asyncio.sleep(delay), max(0.0, engine_deadline - loop.time())
                        )
                except TimeoutError:
                    raise error from None
                retries += 1
                self.engine_retries += 1

    async def run(
        self, content: str, *, thread_id: str | None = None, timeout: float = 60.0
    ) -> AsyncIterator[Frame]:
        """Send a message and yield its run's events through the terminal one.

        Survives disconnects: the events missed meanwhile are replayed, none twice.
        """
        ack = await self.send_message(content, thread_id=thread_id)
        async for frame in _events_of_run(self.recv, ack["run_id"], timeout):
            yield frame
