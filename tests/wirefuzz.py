"""Seeded wire fuzzing: mutated client frames, each checked against its documented outcome.

Used by tests/test_fuzz.py (10,000+ frames in the suite) and bench/fuzz_soak.py (the
long soak). Three parts:

- :class:`Mutator` builds a valid client frame (a JSON message, a ping, a pong, a
  close) and mutates it: bit flips, truncation, opcode / RSV / FIN / mask / length
  changes, garbage payloads, garbage JSON, invalid UTF-8, deep nesting.
- :func:`expect` is the oracle: from the bytes alone it derives what
  docs/protocol.md promises, by modelling the gateway's checks in their order
  (picows's parser first, then the listener, then the session).
- :func:`fuzz` drives many connections to a running gateway concurrently, sends
  each case followed by a probe (a JSON ``ping``), reads the outcome (the probe's
  ``pong``, or a close frame) and compares it with the oracle.

A case that truncates a frame or lies about its length is completed with zero bytes
(:func:`complete`), so the probe always starts on a frame boundary.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from runwire import Gateway
from runwire.protocol import MAX_NESTING
from tests.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClosed,
    RawWebSocket,
    ServerFrame,
    close_payload,
    encode_frame,
)

__all__ = ["Case", "Expectation", "FuzzReport", "Mutator", "complete", "expect", "fuzz"]

MAX_DEPTH = 500
"""Deepest JSON nesting generated (msgspec's own limit is near the interpreter's
recursion limit; deeper documents are tested in tests/test_fuzz.py)."""

PICOWS_CLOSE_CODES = frozenset({0, *range(1000, 1004), *range(1006, 1015)})
"""Close codes below 3000 that picows lets through to the listener."""


def valid_close_code(code: int) -> bool:
    """docs/protocol.md section 12: the codes a close frame may carry."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# -- cases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """Bytes to send (one or more frames, maybe broken) and how they were made."""

    wire: bytes
    label: str


_WORDS = [
    "ping",
    "user_message",
    "cancel",
    "resume",
    "get_runs",
    "get_run",
    "type",
    "id",
    "é",
    "😀",
]


class Mutator:
    """Valid client frames and their mutations, from one seeded RNG."""

    def __init__(self, rng: random.Random, max_frame_bytes: int) -> None:
        self.rng = rng
        self.max_frame_bytes = max_frame_bytes
        self._mutations = [
            (self._none, 4),
            (self._bit_flip, 14),
            (self._truncate, 6),
            (self._opcode, 8),
            (self._rsv, 6),
            (self._fin, 5),
            (self._unmask, 4),
            (self._length, 8),
            (self._garbage_payload, 6),
            (self._garbage_json, 14),
            (self._bad_utf8, 6),
            (self._deep, 6),
            (self._two, 8),
        ]

    def case(self) -> Case:
        mutate = self.rng.choices([m for m, _ in self._mutations], [w for _, w in self._mutations])[
            0
        ]
        return mutate()

    # -- valid frames ----------------------------------------------------------

    def _text(self) -> str:
        rng = self.rng
        n = rng.randrange(1_000_000)
        kind = rng.randrange(7)
        message: dict[str, object]
        if kind == 0:
            message = {"type": "ping", "id": f"p{n}"}
        elif kind == 1:
            content = "".join(rng.choice(_WORDS) for _ in range(rng.randrange(1, 8)))
            message = {"type": "user_message", "id": f"m{n}", "content": content}
        elif kind == 2:
            message = {"type": "cancel", "id": f"c{n}", "run_id": f"r_{n:016x}"}
        elif kind == 3:
            message = {"type": "resume", "epoch": "e", "offset": rng.randrange(5)}
        elif kind == 4:
            message = {"type": "get_runs", "id": f"g{n}"}
        elif kind == 5:
            message = {"type": "get_run", "id": f"g{n}", "run_id": f"r_{n:016x}"}
        else:
            message = {"type": rng.choice(_WORDS), "id": f"x{n}"}
        return json.dumps(message, ensure_ascii=rng.random() < 0.5)

    def _mask(self) -> bytes:
        return self.rng.randbytes(4)

    def _valid(self) -> tuple[int, bytes]:
        """A valid frame's opcode and payload."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            return OP_TEXT, self._text().encode()
        if roll < 0.88:
            return OP_PING, rng.randbytes(rng.randrange(126))
        if roll < 0.95:
            return OP_PONG, rng.randbytes(rng.randrange(20))
        code = rng.choice([1000, 1001, 1003, 3000, 4000, 4999])
        return OP_CLOSE, close_payload(code, "bye ünï".encode())

    def _frame(self, opcode: int, payload: bytes, **kwargs: object) -> bytes:
        return encode_frame(opcode, payload, mask=self._mask(), **kwargs)  # type: ignore[arg-type]

    # -- mutations -------------------------------------------------------------

    def _none(self) -> Case:
        opcode, payload = self._valid()
        return Case(self._frame(opcode, payload), f"valid op={opcode}")

    def _bit_flip(self) -> Case:
        opcode, payload = self._valid()
        wire = bytearray(self._frame(opcode, payload))
        flips = self.rng.randrange(1, 4)
        for _ in range(flips):
            bit = self.rng.randrange(len(wire) * 8)
            wire[bit // 8] ^= 1 << (bit % 8)
        return Case(bytes(wire), f"bit-flip x{flips} op={opcode}")

    def _truncate(self) -> Case:
        opcode, payload = self._valid()
        wire = self._frame(opcode, payload)
        cut = self.rng.randrange(1, len(wire))
        return Case(wire[:cut], f"truncate {cut}/{len(wire)} op={opcode}")

    def _opcode(self) -> Case:
        _, payload = self._valid()
        opcode = self.rng.randrange(16)
        return Case(self._frame(opcode, payload[:125]), f"opcode={opcode:#x}")

    def _rsv(self) -> Case:
        opcode, payload = self._valid()
        rsv = self.rng.randrange(1, 8)
        return Case(self._frame(opcode, payload, rsv=rsv), f"rsv={rsv} op={opcode}")

    def _fin(self) -> Case:
        opcode, payload = self._valid()
        return Case(self._frame(opcode, payload, fin=False), f"fin=0 op={opcode}")

    def _unmask(self) -> Case:
        opcode, payload = self._valid()
        return Case(encode_frame(opcode, payload, mask=None), f"unmasked op={opcode}")

    def _length(self) -> Case:
        rng = self.rng
        opcode, payload = self._valid()
        mask = self._mask()
        first = 0x80 | opcode
        body = mask + _xor(payload, mask)
        kind = rng.randrange(6)
        if kind == 0:  # shorter than the payload: the rest is parsed as the next frame
            wire = encode_frame(opcode, payload, mask=mask, length=rng.randrange(len(payload) + 1))
        elif kind == 1:  # longer: the frame is completed with zeros
            wire = encode_frame(
                opcode, payload, mask=mask, length=len(payload) + rng.randrange(1, 60)
            )
        elif kind == 2:  # non-minimal 16-bit length
            wire = struct.pack("!BBH", first, 0x80 | 126, len(payload)) + body
        elif kind == 3:  # non-minimal 64-bit length
            wire = struct.pack("!BBQ", first, 0x80 | 127, len(payload)) + body
        elif kind == 4:  # 64-bit length with the most significant bit set
            wire = struct.pack("!BBQ", first, 0x80 | 127, (1 << 63) | len(payload)) + body
        else:  # over picows's limit (4 x max_frame_bytes)
            declared = 4 * self.max_frame_bytes + rng.randrange(1, 100_000)
            wire = encode_frame(opcode, b"", mask=mask, length=declared)
        return Case(wire, f"length kind={kind} op={opcode}")

    def _garbage_payload(self) -> Case:
        rng = self.rng
        opcode = rng.choice([OP_TEXT, OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE, OP_CONTINUATION])
        limit = 125 if opcode >= 8 else 2 * self.max_frame_bytes
        payload = rng.randbytes(rng.randrange(limit + 1))
        return Case(self._frame(opcode, payload), f"garbage payload op={opcode}")

    def _garbage_json(self) -> Case:
        rng = self.rng
        text = self._text()
        kind = rng.randrange(8)
        if kind == 0:
            text = text[: rng.randrange(len(text))]
        elif kind == 1:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice('{}[]",:\\ 0-eE.tfn') + text[i + 1 :]
        elif kind == 2:
            text = rng.choice(
                ["[]", "1", '"s"', "null", "true", "{}", '{"type": 5}', '{"id": "x"}']
            )
        elif kind == 3:
            text = json.dumps({"type": "user_message", "id": 7, "content": ["x"]})
        elif kind == 4:
            text = text[:-1] + ', "extra": {"a": [1, 2, {"b": null}]}}'
        elif kind == 5:
            text = " " * rng.randrange(5) + text + rng.choice(["", " ", "x", "}", "\n"])
        elif kind == 6:
            text = json.dumps(
                {"type": "user_message", "id": "m", "content": "y" * rng.randrange(2000)}
            )
        else:
            text = "".join(rng.choice('{}[]",:0a\\') for _ in range(rng.randrange(1, 40)))
        return Case(self._frame(OP_TEXT, text.encode()), f"garbage json kind={kind}")

    def _bad_utf8(self) -> Case:
        rng = self.rng
        payload = bytearray(self._text().encode())
        bad = rng.choice(
            [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80"]
        )
        i = rng.randrange(len(payload))
        payload[i:i] = bad
        opcode = OP_TEXT if rng.random() < 0.8 else OP_CLOSE
        if opcode == OP_CLOSE:
            payload = bytearray(close_payload(1000, bytes(payload[:60])))
        return Case(self._frame(opcode, bytes(payload)), f"bad utf-8 op={opcode}")

    def _deep(self) -> Case:
        rng = self.rng
        depth = rng.randrange(1, MAX_DEPTH)
        value = (
            "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
        )
        text = rng.choice(['{"type":"ping","id":"d","x":%s}', "%s", '{"x":%s,"type":"ping"}'])
        return Case(self._frame(OP_TEXT, (text % value).encode()), f"deep depth={depth}")

    def _two(self) -> Case:
        first, second = self.case(), self.case()
        return Case(first.wire + second.wire, f"{first.label} + {second.label}")


def _xor(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# -- the oracle ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Broken:
    """picows rejected the frame while parsing it (code, and what it said)."""

    code: int


def complete(wire: bytes, max_frame_bytes: int) -> bytes:
    """``wire`` plus the zero bytes that finish its last frame (none if picows stops first)."""
    data = bytearray(wire)
    pos = 0
    while pos < len(data):
        header_end = pos + 2
        if header_end > len(data):
            data.extend(bytes(header_end - len(data)))
        first, second = data[pos], data[pos + 1]
        opcode, masked, length7 = first & 0xF, second & 0x80, second & 0x7F
        if _header_error(first, second) is not None:
            return bytes(data)
        ext = 2 if length7 == 126 else 8 if length7 == 127 else 0
        if header_end + ext > len(data):
            data.extend(bytes(header_end + ext - len(data)))
        length = _length(data, pos, length7)
        if _length_error(opcode, length7, length, max_frame_bytes) is not None:
            return bytes(data)
        end = header_end + ext + (4 if masked else 0) + length
        if end > len(data):
            data.extend(bytes(end - len(data)))
        pos = end
    return bytes(data)


def _length(data: bytes | bytearray, pos: int, length7: int) -> int:
    if length7 == 126:
        value: int = struct.unpack_from("!H", data, pos + 2)[0]
        return value
    if length7 == 127:
        value = struct.unpack_from("!Q", data, pos + 2)[0]
        return value
    return length7


def _header_error(first: int, second: int) -> int | None:
    """picows's checks on the first two bytes, in its order."""
    opcode, fin = first & 0xF, first & 0x80
    if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        return 1002
    if opcode >= 8 and not fin:
        return 1002
    if not second & 0x80:
        return 1002  # unmasked client frame
    if opcode >= 8 and second & 0x7F > 125:
        return 1002
    return None


def _length_error(opcode: int, length7: int, length: int, max_frame_bytes: int) -> int | None:
    if length7 == 126 and length < 126:
        return 1002
    if length7 == 127 and (length >> 63 or length < 65536):
        return 1002
    if opcode < 8 and length > 4 * max_frame_bytes:
        return 1009
    return None


def _parse(stream: bytes, max_frame_bytes: int) -> list[_Frame | _Broken]:
    """The frames of a :func:`complete` stream, up to the first one picows rejects."""
    frames: list[_Frame | _Broken] = []
    close_received = False
    pos = 0
    while pos < len(stream):
        first, second = stream[pos], stream[pos + 1]
        error = _header_error(first, second)
        if error is not None:
            frames.append(_Broken(error))
            return frames
        length7 = second & 0x7F
        length = _length(stream, pos, length7)
        error = _length_error(first & 0xF, length7, length, max_frame_bytes)
        if error is not None:
            frames.append(_Broken(error))
            return frames
        start = pos + 2 + (2 if length7 == 126 else 8 if length7 == 127 else 0)
        mask, start = stream[start : start + 4], start + 4
        payload = _xor(stream[start : start + length], mask)
        pos = start + length
        frame = _Frame(bool(first & 0x80), (first >> 4) & 7, first & 0xF, payload)
        if frame.opcode == OP_CLOSE:
            error = _picows_close_error(payload)
            if error is None and close_received:
                error = 1002  # "Received CLOSE for the second time"
            close_received = close_received or error is None
            if error is not None:
                frames.append(_Broken(error))
                continue  # picows parses on, but has sent its close frame
        frames.append(frame)
    return frames


def _picows_close_error(payload: bytes) -> int | None:
    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
    if code < 3000 and code not in PICOWS_CLOSE_CODES:
        return 1002
    if len(payload) == 1:
        return 1002
    if not _utf8(payload[2:]):
        return 1007
    return None


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Expectation:
    """The documented outcome of a stream: a close code from ``codes``, or open (``None``)."""

    codes: frozenset[int] | None
    pongs: tuple[bytes, ...] = ()
    """Payloads of the WebSocket pongs due before the probe's reply (when open)."""


def _verdict(frame: _Frame | _Broken, max_frame_bytes: int) -> int | bytes | None:
    """A close code, a ping payload to pong, or None (served, the socket stays open)."""
    if isinstance(frame, _Broken):
        return frame.code
    if frame.rsv:
        return 1002
    opcode, payload = frame.opcode, frame.payload
    if opcode == OP_CLOSE:
        if not payload:
            return 1000
        code: int = struct.unpack("!H", payload[:2])[0]
        return code if valid_close_code(code) else 1002
    if opcode == OP_PING:
        return payload
    if opcode == OP_PONG:
        return None
    if opcode == OP_CONTINUATION:
        return 1002
    if opcode == OP_BINARY or not frame.fin:
        return 4400
    if len(payload) > max_frame_bytes:
        return 1009
    try:
        message = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return 4400 if _utf8(payload) else 1007
    except RecursionError:
        return 4400
    if _depth(message) > MAX_NESTING:
        return 4400
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return 4400
    return None


def _depth(value: object) -> int:
    """Nesting depth of arrays and objects (a scalar is 0, ``[]`` is 1); no recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
            deepest = max(deepest, depth + 1)
    return deepest


def expect(stream: bytes, max_frame_bytes: int) -> Expectation:
    """What the gateway must do with ``stream`` (a :func:`complete` one, probe included).

    Frames are judged in order; the first close decides. Two timing effects widen
    it, where a later parse error's close frame may go out first (both codes are
    then accepted): picows parses the next frame before delivering the current
    one, so a listener decision can be overtaken by a parse error in the very next
    frame; and the session's decisions (on text frames) are sent at the next flush,
    so a parse error anywhere later in the same read can overtake them.
    """
    frames = _parse(stream, max_frame_bytes)
    pongs: list[bytes] = []
    for index, frame in enumerate(frames):
        verdict = _verdict(frame, max_frame_bytes)
        if isinstance(verdict, bytes):
            pongs.append(verdict)
        elif isinstance(verdict, int):
            codes = {verdict}
            if isinstance(frame, _Frame):
                deferred = frame.opcode == OP_TEXT and frame.fin and not frame.rsv
                later = frames[index + 1 :] if deferred else frames[index + 1 : index + 2]
                broken = next((f for f in later if isinstance(f, _Broken)), None)
                if broken is not None:
                    codes.add(broken.code)
            return Expectation(frozenset(codes))
    return Expectation(None, tuple(pongs))


# -- the driver ------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """What a fuzz run did."""

    frames: int = 0
    connections: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class _Mismatch(Exception):
    pass


async def fuzz(
    gateway: Gateway,
    frames: int,
    *,
    seed: int,
    concurrency: int = 16,
    users: int = 16,
    max_failures: int = 20,
) -> FuzzReport:
    """Send ``frames`` mutated cases over many connections; compare each with :func:`expect`.

    The gateway must run with its rate limit out of reach and ``max_frame_bytes`` as
    given to the oracle (``gateway.settings.max_frame_bytes``).
    """
    report = FuzzReport()
    max_frame_bytes = gateway.settings.max_frame_bytes
    budget = iter(range(frames))

    async def worker(number: int) -> None:
        rng = random.Random(f"{seed}:{number}")
        mutator = Mutator(rng, max_frame_bytes)
        while len(report.failures) < max_failures:
            user = f"fuzz{rng.randrange(users)}"
            async with RawWebSocket.connect(gateway, user) as ws:
                report.connections += 1
                await _read_connected(ws)
                while True:
                    index = next(budget, None)
                    if index is None:
                        return
                    case = mutator.case()
                    report.frames += 1
                    try:
                        closed = await _one_case(ws, case, index, max_frame_bytes, rng, report)
                    except _Mismatch as failure:
                        report.failures.append(
                            f"#{index} {case.label}: {failure}\n  wire: {case.wire.hex()}"
                        )
                        break
                    if closed:
                        break

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return report


async def _read_connected(ws: RawWebSocket) -> None:
    frame = await ws.recv_frame(timeout=10)
    assert frame.payload.startswith(b'{"type":"connected"'), frame


async def _one_case(
    ws: RawWebSocket,
    case: Case,
    index: int,
    max_frame_bytes: int,
    rng: random.Random,
    report: FuzzReport,
) -> bool:
    """Send one case and its probe; check the outcome. Returns whether the socket closed."""
    probe_id = f"probe{index}"
    probe = encode_frame(OP_TEXT, b'{"type":"ping","id":"%s"}' % probe_id.encode())
    stream = complete(case.wire, max_frame_bytes)
    expected = expect(stream + probe, max_frame_bytes)
    try:
        await ws.send(stream + probe)
    except ConnectionError as error:  # the server may already have failed and closed
        if expected.codes is None:
            raise _Mismatch(f"send failed ({error}), expected open") from None
    reply = b'{"type":"pong","id":"%s"}' % probe_id.encode()
    pongs: list[bytes] = []
    while True:
        try:
            frame = await ws.recv_frame(timeout=10)
        except RawClosed as closed:
            raise _Mismatch(
                f"TCP {'reset' if closed.reset else 'closed'} without a close frame"
                f" (1006), expected {_show(expected)}"
            ) from None
        except TimeoutError:
            raise _Mismatch(f"no outcome within 10 s, expected {_show(expected)}") from None
        if frame.opcode == OP_PONG:
            pongs.append(frame.payload)
        elif frame.opcode == OP_CLOSE:
            return await _closed(ws, frame, expected, rng, report)
        elif frame.opcode == OP_TEXT and frame.payload == reply:
            if expected.codes is not None:
                raise _Mismatch(f"still open, expected close {sorted(expected.codes)}")
            if tuple(pongs) != expected.pongs:
                raise _Mismatch(f"pongs {pongs!r}, expected {expected.pongs!r}")
            report.outcomes["open"] += 1
            return False
        elif frame.opcode != OP_TEXT:
            raise _Mismatch(f"unexpected frame {_brief(frame)}")


async def _closed(
    ws: RawWebSocket,
    frame: ServerFrame,
    expected: Expectation,
    rng: random.Random,
    report: FuzzReport,
) -> bool:
    code = frame.close_code
    if code is None or not valid_close_code(code):
        raise _Mismatch(f"server sent close code {code}")
    if expected.codes is None or code not in expected.codes:
        raise _Mismatch(f"closed with {code}, expected {_show(expected)}")
    report.outcomes[str(code)] += 1
    if rng.random() < 0.5:
        # Answer: the server closes the TCP connection (at once, or it did already).
        try:
            await ws.send_close(code)
        except ConnectionError:
            pass  # fail-fast codes: the server closed already
        await ws.wait_closed(timeout=10)
    return True


def _show(expected: Expectation) -> str:
    return "open" if expected.codes is None else f"close {sorted(expected.codes)}"


def _brief(frame: ServerFrame) -> str:
    return f"opcode={frame.opcode:#x} {frame.payload[:60]!r}"
