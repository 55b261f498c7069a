"""The frame plumbing under ``McuLink``: port, write buffer, read callback, dispatch.

``LinkIO`` owns the open ``SerialPort`` (the one hardware seam), the codec's encoder and
decoder, and turns every received frame into what waits for it: TELEMETRY into the
``McuState`` watch, ACK into the future of the request it answers (by message id and
sequence number), PARAM_VALUE into the parameter request, INFO and ACK(HELLO) into the
handshake's queue, LOG into the ``zima.onboard.mcu`` logger. Everything runs on the event
loop: the port's reader callback takes the receive timestamp and decodes at once.

It also notices a lost link (``_lose``): the port failing, and TELEMETRY saying the MCU
has no session or that its clock went back (a reset). ``McuLink`` does the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from zima.onboard.link_config import (
    LinkConfig,
    LinkDownError,
    LinkError,
    PortError,
    result_name,
)
from zima.onboard.mcu_state import HealthMeter, LinkStatus, McuState
from zima.onboard.serial_port import SerialPort
from zima.onboard.watch import Watch
from zima.protocol import (
    Ack,
    ArmState,
    Drive,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Hello,
    Info,
    Log,
    LogLevel,
    Message,
    ParamValue,
    Result,
    State,
    Telemetry,
)

__all__ = ["LinkIO"]

log = logging.getLogger("zima.onboard.link")
mcu_log = logging.getLogger("zima.onboard.mcu")  # the MCU's own LOG lines

_LOG_LEVELS: dict[int, int] = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}
_MAX_TX_BACKLOG = 4096  # bytes the kernel would not take: ~0.35 s of line time


class LinkIO:
    """Port and frame handling of the MCU link (the base of ``McuLink``)."""

    def __init__(self, config: LinkConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock  # injected: every timestamp of the link comes from here
        self._port: SerialPort | None = None
        self._port_failed = False  # the open port errored: only closing it is left
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._tx = bytearray()  # encoded bytes waiting for the port to take them
        self._meter = HealthMeter(config.health_window_s)
        self._state: Watch[McuState | None] = Watch(None)
        self._status: Watch[LinkStatus] = Watch(
            LinkStatus(connected=False, reason="not started", since_s=clock())
        )
        self.arm_state: ArmState | None = None  # the latest ARM_STATE (10 Hz with a session)
        self._acks: dict[tuple[int, int], asyncio.Future[Ack]] = {}  # (msg id, seq) -> answer
        self._values: dict[int, asyncio.Future[float]] = {}  # param id -> PARAM_VALUE
        self._hello_answers: asyncio.Queue[Info | Ack | LinkError] | None = None
        self._refusals: list[Ack] = []  # DRIVE refusals not reported yet
        self._lost = asyncio.Event()  # set when the link is lost; cleared on connect
        self._lost_reason = ""
        self._last_telemetry_s = clock()
        self._last_mcu_time_ms: int | None = None

    @property
    def tx_backlog(self) -> int:
        """Encoded bytes the port has not taken yet (0: everything sent is written)."""
        return len(self._tx)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    # ---- the port ---------------------------------------------------------------------------
    def _open_port(self) -> None:
        port = SerialPort.open(self.config.port, self.config.baud)
        self._port, self._port_failed = port, False
        self._encoder, self._decoder = FrameEncoder(), FrameDecoder()  # seq 0 after open
        self._tx.clear()
        self._loop.add_reader(port.fd, self._on_readable)
        self._write(b"\x00")  # end whatever garbage the MCU's decoder holds
        log.debug("opened %s", port.path)

    def _close_port(self, why: LinkError) -> None:
        """Close the port (if open) and fail everything that waits for an answer."""
        port, self._port = self._port, None
        if port is not None:
            if not self._port_failed:
                self._loop.remove_reader(port.fd)
                self._loop.remove_writer(port.fd)
            port.close()
        self._fail_waiters(why)

    def _fail_waiters(self, why: LinkError) -> None:
        waiters: list[asyncio.Future[Ack] | asyncio.Future[float]] = [
            *self._acks.values(),
            *self._values.values(),
        ]
        for future in waiters:
            if not future.done():
                future.set_exception(why)
        self._acks.clear()
        self._values.clear()
        if self._hello_answers is not None:
            self._hello_answers.put_nowait(why)

    def _lose(self, reason: str, port_failed: bool = False) -> None:
        """The link is lost: stop reading a failed port, wake the supervisor and waiters."""
        if port_failed and self._port is not None and not self._port_failed:
            self._port_failed = True
            self._loop.remove_reader(self._port.fd)  # an EIO descriptor stays readable
            self._loop.remove_writer(self._port.fd)
        if self._lost.is_set() and not port_failed:
            return
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()
        self._fail_waiters(PortError(reason) if port_failed else LinkDownError(reason))

    # ---- sending ----------------------------------------------------------------------------
    def _send(self, msg: Message) -> int:
        """Encode and send ``msg``; returns its sequence number."""
        if self._port is None or self._port_failed:
            raise LinkDownError(f"the port {self.config.port} is not open")
        seq = self._encoder.next_seq
        self._write(self._encoder.encode(msg))
        return seq

    def _send_expecting_ack(self, msg: Message) -> tuple[int, asyncio.Future[Ack]]:
        ack: asyncio.Future[Ack] = self._loop.create_future()
        seq = self._send(msg)
        self._acks[(msg.MSG_ID, seq)] = ack
        return seq, ack

    def _write(self, data: bytes) -> None:
        port = self._port
        assert port is not None
        if not self._tx:  # the usual case: the kernel takes a whole frame at once
            try:
                written = port.write(data)
            except PortError as exc:
                self._lose(str(exc), port_failed=True)
                raise
            if written == len(data):
                return
            self._loop.add_writer(port.fd, self._on_writable)
            data = data[written:]
        if len(self._tx) + len(data) > _MAX_TX_BACKLOG:
            error = PortError(f"{port.path} takes no bytes ({len(self._tx)} waiting)")
            self._lose(str(error), port_failed=True)
            raise error
        self._tx += data

    def _on_writable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            written = port.write(bytes(self._tx))
        except PortError as exc:
            self._lose(str(exc), port_failed=True)
            return
        del self._tx[:written]
        if not self._tx:
            self._loop.remove_writer(port.fd)

    # ---- receiving --------------------------------------------------------------------------
    def _on_readable(self) -> None:
        port = self._port
        if port is None or self._port_failed:
            return
        try:
            data = port.read()
        except PortError as exc:
            self._lose(str(exc), port_failed=True)
            return
        if not data:
            return
        received_s = self._clock()  # timestamp at capture, before any decoding
        decoder = self._decoder
        before = (decoder.rx_frames, decoder.rx_rejected, decoder.rx_dropped)
        events = decoder.feed(data)
        self._meter.count(
            decoder.rx_frames - before[0],
            decoder.rx_rejected - before[1],
            decoder.rx_dropped - before[2],
        )
        for event in events:
            if isinstance(event, Frame):
                self._dispatch(event, received_s)
            else:
                log.debug("dropped a frame from the MCU: %s", event.reason.name)

    def _dispatch(self, frame: Frame, received_s: float) -> None:
        msg = frame.message
        if isinstance(msg, Telemetry):
            self._on_telemetry(frame.seq, msg, received_s)
        elif isinstance(msg, Ack):
            self._on_ack(msg)
        elif isinstance(msg, ParamValue):
            value = self._values.pop(msg.param_id, None)
            if value is not None and not value.done():
                value.set_result(msg.value)
        elif isinstance(msg, Info):
            if self._hello_answers is not None:
                self._hello_answers.put_nowait(msg)
        elif isinstance(msg, Log):
            level = _LOG_LEVELS.get(msg.level, logging.ERROR)
            mcu_log.log(level, "MCU: %s", msg.text.decode("ascii", errors="replace"))
        elif isinstance(msg, ArmState):
            self.arm_state = msg
        else:
            log.debug("ignored %s from the MCU", msg.NAME)

    def _on_telemetry(self, seq: int, msg: Telemetry, received_s: float) -> None:
        self._last_telemetry_s = received_s
        last_ms, self._last_mcu_time_ms = self._last_mcu_time_ms, msg.mcu_time_ms
        if self._status.value.connected:
            if msg.state == State.WAIT_HOST:
                self._lose("the MCU has no session (it reset or the session timed out)")
            elif last_ms is not None and (msg.mcu_time_ms - last_ms) & 0xFFFFFFFF >= 1 << 31:
                self._lose(f"the MCU clock went back ({last_ms} -> {msg.mcu_time_ms} ms): reset")
        self._state.set(McuState(msg, seq, received_s, self._meter.telemetry_at(received_s)))

    def _on_ack(self, ack: Ack) -> None:
        waiter = self._acks.pop((ack.ref_msg_id, ack.ref_seq), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)
        elif ack.ref_msg_id == Hello.MSG_ID:
            if self._hello_answers is not None:
                self._hello_answers.put_nowait(ack)
        elif ack.ref_msg_id == Drive.MSG_ID and ack.result != Result.NO_SESSION:
            log.warning("the MCU refused DRIVE (seq %d): %s", ack.ref_seq, result_name(ack.result))
            self._refusals.append(ack)
        elif ack.result != Result.NO_SESSION:
            log.debug("unrequested ACK from the MCU: %s", ack)
        if ack.result == Result.NO_SESSION and self._status.value.connected:
            self._lose("the MCU answered NO_SESSION (it reset or the session timed out)")
