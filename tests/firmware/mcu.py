"""A small synchronous protocol client for the hardware-in-the-loop tests.

One pyserial port on the emulated board's UART, the pure codec (``FrameEncoder`` /
``FrameDecoder``) and a few waits. Every wait is judged in *emulated* time, from
``TELEMETRY.mcu_time_ms`` (the MCU's own clock): the emulator paces to the wall clock
but may fall behind on a loaded machine, and a test that counts wall-clock seconds would
then fail for the wrong reason. Wall-clock timeouts exist only as failure guards, ten
times longer than what is waited for. The asyncio link of the robot is ``zima.onboard``;
this is the least that the tests need.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import serial

from zima.protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Ack,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Hello,
    Info,
    Message,
    ParamGet,
    ParamId,
    ParamSet,
    ParamValue,
    Reject,
    Result,
    Telemetry,
)

M = TypeVar("M", bound=Message)

HELLO_REPEAT_S = 0.25  # PROTOCOL.md section 2: HELLO every 250 ms until INFO
WALL_GUARD = 10.0  # wall-clock guard = this many times the emulated time waited for
WALL_GUARD_MIN_S = 5.0


class McuTimeoutError(AssertionError):
    """What a test waited for did not happen (in emulated time, or by the wall guard)."""


@dataclass
class Mcu:
    """The host end of one open port: send messages, collect what the MCU sends."""

    port: serial.Serial
    encoder: FrameEncoder = field(default_factory=FrameEncoder)
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    frames: list[Frame] = field(default_factory=list)  # everything received, in order
    rejects: list[Reject] = field(default_factory=list)  # host-side decoder rejects
    bytes_sent: int = 0
    _unseen: deque[Frame] = field(default_factory=deque)  # received, not yet waited over

    @classmethod
    def open(cls, path: str) -> Mcu:
        """Open the port (115200 8N1) and end whatever the MCU's decoder holds."""
        mcu = cls(serial.Serial(path, 115200, timeout=0.02))
        mcu.send_raw(b"\x00")
        return mcu

    def close(self) -> None:
        self.port.close()

    # ---- sending ----------------------------------------------------------------------
    def send(self, msg: Message) -> int:
        """Send one message; returns its sequence number."""
        seq = self.encoder.next_seq
        self.send_raw(self.encoder.encode(msg))
        return seq

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)
        self.bytes_sent += len(data)

    # ---- receiving --------------------------------------------------------------------
    def pump(self) -> list[Frame]:
        """Read what has arrived (waits up to the port timeout); return the new frames."""
        data = self.port.read(max(1, self.port.in_waiting))
        new: list[Frame] = []
        for event in self.decoder.feed(data):
            if isinstance(event, Frame):
                new.append(event)
            else:
                self.rejects.append(event)
        self.frames.extend(new)
        self._unseen.extend(new)
        return new

    def _next_frames(self) -> list[Frame]:
        """Frames no wait has looked at yet (reading the port when there are none)."""
        if not self._unseen:
            self.pump()
        frames = list(self._unseen)
        self._unseen.clear()
        return frames

    @property
    def mcu_time_ms(self) -> int:
        """The MCU clock of the last TELEMETRY received (0 before any)."""
        for frame in reversed(self.frames):
            if isinstance(frame.message, Telemetry):
                return frame.message.mcu_time_ms
        return 0

    def wait_for(
        self,
        kind: type[M],
        predicate: Callable[[M], bool] = lambda _m: True,
        within_ms: float = 1000.0,
        on_telemetry: Callable[[Telemetry], None] | None = None,
    ) -> M:
        """The next message of ``kind`` matching ``predicate``, arriving within
        ``within_ms`` of MCU time (counted from the first TELEMETRY seen while waiting).
        ``on_telemetry`` is called for each TELEMETRY meanwhile (e.g. to send DRIVE)."""
        start_ms: int | None = None
        wall_deadline = time.monotonic() + max(WALL_GUARD_MIN_S, within_ms / 1000 * WALL_GUARD)
        while True:
            frames = self._next_frames()
            for index, frame in enumerate(frames):
                msg = frame.message
                if isinstance(msg, Telemetry):
                    start_ms = msg.mcu_time_ms if start_ms is None else start_ms
                    if on_telemetry is not None:
                        on_telemetry(msg)
                if isinstance(msg, kind) and predicate(msg):
                    self._unseen.extendleft(reversed(frames[index + 1 :]))  # for the next wait
                    return msg
                if start_ms is not None and self.mcu_time_ms - start_ms > within_ms:
                    raise McuTimeoutError(
                        f"no matching {kind.__name__} within {within_ms} ms of MCU time"
                        f" (last telemetry: {self.last_telemetry()})"
                    )
            if time.monotonic() > wall_deadline:
                raise McuTimeoutError(f"no matching {kind.__name__}: wall-clock guard expired")

    def last_telemetry(self) -> Telemetry | None:
        for frame in reversed(self.frames):
            if isinstance(frame.message, Telemetry):
                return frame.message
        return None

    def telemetry(self, within_ms: float = 100.0) -> Telemetry:
        """The next TELEMETRY."""
        return self.wait_for(Telemetry, within_ms=within_ms)

    def until(
        self,
        predicate: Callable[[Telemetry], bool],
        within_ms: float,
        on_telemetry: Callable[[Telemetry], None] | None = None,
    ) -> Telemetry:
        """The first TELEMETRY for which ``predicate`` holds, within ``within_ms``."""
        return self.wait_for(Telemetry, predicate, within_ms, on_telemetry)

    def ack(self, msg_id: int, seq: int, within_ms: float = 200.0) -> Result:
        """The result of the ACK answering frame (msg_id, seq)."""
        ack = self.wait_for(
            Ack, lambda a: a.ref_msg_id == msg_id and a.ref_seq == seq, within_ms=within_ms
        )
        return Result(ack.result)

    def request(self, msg: Message, within_ms: float = 200.0) -> Result:
        """Send ``msg`` and return the result of its ACK."""
        return self.ack(msg.MSG_ID, self.send(msg), within_ms)

    # ---- the session ------------------------------------------------------------------
    def handshake(
        self, protocol_version: int = PROTOCOL_VERSION, schema_hash: int = SCHEMA_HASH
    ) -> tuple[Info, Result]:
        """HELLO (repeated every 250 ms) until INFO, then its ACK: (INFO, ACK result)."""
        deadline = time.monotonic() + 5.0  # PROTOCOL.md: give up after 5 s
        while time.monotonic() < deadline:
            self.send(Hello(protocol_version, schema_hash))
            repeat_at = time.monotonic() + HELLO_REPEAT_S
            while time.monotonic() < repeat_at:
                frames = self._next_frames()
                for index, frame in enumerate(frames):
                    if isinstance(frame.message, Info):
                        self._unseen.extendleft(reversed(frames[index + 1 :]))
                        # the ACK after INFO answers the HELLO that INFO answered
                        ack = self.wait_for(Ack, lambda a: a.ref_msg_id == Hello.MSG_ID)
                        return frame.message, Result(ack.result)
        raise McuTimeoutError(f"no answer from the MCU on {self.port.port}")

    def get_param(self, param: ParamId, within_ms: float = 200.0) -> float:
        """PARAM_GET: the value the MCU holds now."""
        self.send(ParamGet(int(param)))
        answer = self.wait_for(ParamValue, lambda v: v.param_id == param, within_ms=within_ms)
        return answer.value

    def set_param(self, param: ParamId, value: float) -> None:
        result = self.request(ParamSet(int(param), value))
        assert result == Result.OK, f"PARAM_SET {param.name}={value}: {result.name}"
