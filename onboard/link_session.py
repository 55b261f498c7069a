"""``HostSession``: the host's end of the MCU link as a pure state machine.

Bytes and time in, bytes and events out, as the firmware's ``Controller`` is: no asyncio,
no port, no clock (every call is handed ``now_s``), no logging. ``McuLink`` drives it::

    session = HostSession(config, now_s=clock())
    session.open(now)                  # the port was opened: 0x00 and HELLO are queued
    port.write(session.data_to_send())  # after every call: what the session sends
    events = session.receive(data, now)  # StatusChanged, NewState, Answered, ... (link_events)
    events = session.tick(now)         # at session.next_deadline_s(): retries, timeouts

Phases (section 2 of firmware/PROTOCOL.md)::

    CLOSED --open()--> HELLO --INFO ok, ACK(HELLO) OK--> RESTORE --parameters set--> UP
                         ^                                                            |
                         +------ handshake() (same port) or close() + open() <-- DOWN <+

- HELLO: HELLO every ``hello_retry_s`` until INFO, INFO checked against this host's
  protocol identity (``config.protocol_version``, ``config.schema_hash``), then ACK(HELLO).
- RESTORE: every parameter set through this session is set again, one PARAM_SET at a
  time (the MCU forgets them on reset), then the status turns ``connected``.
- UP: HEARTBEAT at once and every ``heartbeat_period_s``; TELEMETRY becomes ``McuState``
  (with the link's health); commands are taken.

Failure rules:

- While UP the link is lost (status ``connected=False``, phase DOWN, every pending request
  fails with ``LinkDownError``) when TELEMETRY is silent for the telemetry timeout (the
  configured one, or three periods of a lower ``telemetry_hz``), when TELEMETRY says
  WAIT_HOST or the MCU clock went back (it reset), or an ACK says NO_SESSION; with
  ``PortError`` when the driver reports that the port failed. The driver then calls
  ``handshake`` on the open port, or ``close`` and ``open`` on a new one.
- A handshake attempt ends with ``HandshakeFailed``: ``NoAnswerError`` after
  ``handshake_timeout_s``; the ``RefusedError`` or ``NoAnswerError`` of a parameter that
  could not be set again; ``PortError``; the error ``close`` is given.
  ``IncompatibleMcuError`` (INFO names another protocol or schema, or the MCU refused
  HELLO) is for good: phase FAILED, every later command raises it.
- Input never raises: any bytes are frames, rejects (counted in the health) or ignored.
- Commands raise at once (``LinkDownError`` unless UP, the failure, an earlier DRIVE
  refusal as ``RefusedError``); a request that was sent ends in exactly one ``Answered``
  or ``RequestFailed``: its ACK or PARAM_VALUE, a timeout of ``request_timeout_s``, or
  the link's loss. PARAM_VALUE carries no sequence number: parameter requests queue and go
  out one at a time.
"""

from __future__ import annotations

import math
from enum import Enum

from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import (
    IncompatibleMcuError,
    LinkDownError,
    LinkError,
    NoAnswerError,
    PortError,
    RefusedError,
    result_name,
)
from zima.onboard.link_events import (
    Answered,
    DriveRefused,
    HandshakeFailed,
    Ignored,
    LinkEvent,
    McuLog,
    NewState,
    RequestFailed,
    StatusChanged,
)
from zima.onboard.link_requests import Request, Requests
from zima.onboard.mcu_state import HealthMeter, LinkStatus, McuState
from zima.protocol import (
    PARAMS,
    Ack,
    Arm,
    ArmState,
    Clear,
    Drive,
    Estop,
    Frame,
    FrameDecoder,
    FrameEncoder,
    HandshakeError,
    Heartbeat,
    Hello,
    Info,
    Log,
    Message,
    ParamGet,
    ParamId,
    ParamSet,
    ParamValue,
    Result,
    State,
    Telemetry,
    check_info,
    describe_info,
)

__all__ = ["HostSession", "Phase"]


class Phase(Enum):
    """Where the session stands (see the module docstring's diagram)."""

    CLOSED = "closed"  # no port: nothing goes out until open()
    HELLO = "hello"  # HELLO every hello_retry_s until INFO and ACK(HELLO)
    RESTORE = "restore"  # setting the remembered parameters again, one at a time
    UP = "up"  # connected: commands, heartbeats, the TELEMETRY silence check
    DOWN = "down"  # lost, or a handshake attempt failed: the driver decides what next
    FAILED = "failed"  # incompatible firmware: for good


class HostSession:
    """The MCU link's protocol logic; see the module docstring."""

    def __init__(self, config: LinkConfig, now_s: float) -> None:
        self.config = config
        self.phase = Phase.CLOSED
        self.status = LinkStatus(connected=False, reason="not started", since_s=now_s)
        self.failure: IncompatibleMcuError | None = None
        self.state: McuState | None = None  # the latest TELEMETRY
        self.arm_state: ArmState | None = None  # the latest ARM_STATE (10 Hz with a session)
        self.params: dict[int, float] = {}  # set through this session: set again on connect
        self._writable = False  # a port is open and has not failed
        self._out = bytearray()  # encoded frames for the driver to write
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._meter = HealthMeter(config.health_window_s)  # over all reconnects
        self._info: Info | None = None  # INFO of this handshake attempt
        self._next_hello_s = self._hello_deadline_s = math.inf
        self._next_heartbeat_s = math.inf
        self._last_telemetry_s = now_s
        self._last_mcu_time_ms: int | None = None
        self._refusals: list[Ack] = []  # DRIVE refusals not raised yet
        self._requests = Requests()

    # ---- the port -------------------------------------------------------------------------
    def open(self, now_s: float) -> list[LinkEvent]:
        """A port was opened: a new codec (sequence 0), one 0x00 to end whatever the MCU's
        decoder holds, and a handshake."""
        self._writable = True
        self._encoder, self._decoder = FrameEncoder(), FrameDecoder()
        self._out[:] = b"\x00"
        return self.handshake(now_s)

    def handshake(self, now_s: float) -> list[LinkEvent]:
        """Start a handshake on the open port (after a loss, the MCU may only have reset)."""
        if self.failure is not None:
            raise self.failure
        self._require_port()
        events: list[LinkEvent] = []
        if self.phase in (Phase.UP, Phase.HELLO, Phase.RESTORE):  # what it interrupts ends
            events = self._end(LinkDownError("a new handshake started"), now_s)
        self.phase = Phase.HELLO
        self._info = None
        self._hello_deadline_s = now_s + self.config.handshake_timeout_s
        self._hello(now_s)
        return events

    def port_failed(self, reason: str, now_s: float) -> list[LinkEvent]:
        """The driver could not read or write the port (the device vanished)."""
        self._writable = False
        self._out.clear()
        return self._end(PortError(reason), now_s)

    def close(self, error: LinkError, now_s: float, reason: str | None = None) -> list[LinkEvent]:
        """The driver closed the port: what waits fails with ``error``; ``reason`` (if
        given) becomes the status's, as it does on the loss of an open session."""
        was_up = self.phase is Phase.UP
        self._writable = False
        self._out.clear()
        events = self._end(error, now_s, reason)
        if reason is not None and not was_up:
            events.append(self._set_status(connected=False, reason=reason, now_s=now_s))
        if self.phase is not Phase.FAILED:
            self.phase = Phase.CLOSED
        return events

    def data_to_send(self) -> bytes:
        """The encoded frames queued since the last call (the driver writes them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # ---- time -----------------------------------------------------------------------------
    def next_deadline_s(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing until new input)."""
        requests_s = self._requests.next_deadline_s()
        times = [] if requests_s is None else [requests_s]
        if self.phase is Phase.HELLO:
            times += [self._next_hello_s, self._hello_deadline_s]
        elif self.phase is Phase.UP:
            times += [self._next_heartbeat_s, self._last_telemetry_s + self.telemetry_timeout_s]
        return min(times, default=None)

    def tick(self, now_s: float) -> list[LinkEvent]:
        """Retries, heartbeats and timeouts due at ``now_s``."""
        events: list[LinkEvent] = []
        error: LinkError
        for request in self._requests.due(now_s):
            if request.param is None:
                timeout_s = self.config.request_timeout_s
                error = NoAnswerError(f"no ACK to {request.name} in {timeout_s} s")
            else:
                error = NoAnswerError(f"no answer to {request.name}")
            events += self._finish(request, error, now_s)
        if self.phase is Phase.HELLO:
            if now_s >= self._hello_deadline_s:
                cfg = self.config
                error = NoAnswerError(
                    f"no answer from the MCU on {cfg.port} in {cfg.handshake_timeout_s} s"
                )
                events += self._end(error, now_s)
            elif now_s >= self._next_hello_s:
                self._hello(now_s)
        elif self.phase is Phase.UP:
            if now_s >= self._last_telemetry_s + self.telemetry_timeout_s:  # the deadline itself
                silent_ms = (now_s - self._last_telemetry_s) * 1000
                error = LinkDownError(f"no TELEMETRY for {silent_ms:.0f} ms")
                events += self._end(error, now_s)
            elif now_s >= self._next_heartbeat_s:
                self._heartbeat(now_s)
        return events

    @property
    def telemetry_timeout_s(self) -> float:
        """The configured timeout, or three periods if ``telemetry_hz`` was set lower."""
        hz = self.params.get(ParamId.telemetry_hz, PARAMS[ParamId.telemetry_hz].default)
        timeout_s = self.config.telemetry_timeout_s
        return max(timeout_s, 3.0 / hz) if hz > 0 else timeout_s

    @property
    def watchdog_ms(self) -> float:
        """The MCU's command watchdog, as set through this session (or its default)."""
        return self.params.get(ParamId.watchdog_ms, PARAMS[ParamId.watchdog_ms].default)

    # ---- commands -------------------------------------------------------------------------
    def drive(self, left_mm_s: int, right_mm_s: int) -> None:
        """Queue DRIVE; raises an earlier refusal (once) instead, or ``LinkDownError``."""
        if self._refusals:
            ack = self._refusals.pop()
            self._refusals.clear()
            raise RefusedError(f"the MCU refused DRIVE: {result_name(ack.result)}", ack)
        self._require_up()
        self._send(Drive(left_mm_s, right_mm_s))

    def stop_tracks(self) -> None:
        """DRIVE(0, 0) if the session is up and the MCU not e-stopped (it would refuse):
        a host that leaves stops the tracks itself rather than leave it to the watchdog."""
        if self.phase is Phase.UP and (self.state is None or self.state.state != State.ESTOP):
            self._send(Drive(0, 0))

    def request(self, msg: Arm | Estop | Clear, now_s: float) -> int:
        """Send a command the MCU ACKs; returns its request id. ESTOP needs only an open
        port (the MCU takes it without a session), the others a session."""
        if isinstance(msg, Estop):
            self._require_port()
        else:
            self._require_up()
        request = self._requests.new(msg)
        self._requests.sent(request, self._send(msg), now_s + self.config.request_timeout_s)
        return request.id

    def set_param(self, param: ParamId | int, value: float, now_s: float) -> int:
        """PARAM_SET (ACK, then PARAM_VALUE); answered with the value the MCU holds, which
        is set again after every reconnect."""
        self._require_up()
        request = self._requests.new(ParamSet(int(param), value))
        self._next_exchange(now_s)
        return request.id

    def get_param(self, param: ParamId | int, now_s: float) -> int:
        """PARAM_GET (PARAM_VALUE, or a refusing ACK)."""
        self._require_up()
        request = self._requests.new(ParamGet(int(param)))
        self._next_exchange(now_s)
        return request.id

    def cancel(self, request_id: int) -> None:
        """Forget a request nobody waits for. One still queued never goes out; one on the
        wire runs its course (its answer keeps the parameter exchanges in order)."""
        self._requests.cancel(request_id)

    # ---- input ----------------------------------------------------------------------------
    def receive(self, data: bytes, now_s: float) -> list[LinkEvent]:
        """Bytes read from the port at ``now_s`` (taken when they were read)."""
        decoder = self._decoder
        before = (decoder.rx_frames, decoder.rx_rejected, decoder.rx_dropped)
        decoded = decoder.feed(data)
        self._meter.count(
            decoder.rx_frames - before[0],
            decoder.rx_rejected - before[1],
            decoder.rx_dropped - before[2],
        )
        events: list[LinkEvent] = []
        for item in decoded:
            if isinstance(item, Frame):
                events += self._dispatch(item, now_s)
            else:
                events.append(Ignored(f"dropped a frame from the MCU: {item.reason.name}"))
        return events

    def _dispatch(self, frame: Frame, now_s: float) -> list[LinkEvent]:  # noqa: PLR0911 (one return per message)
        match frame.message:
            case Telemetry() as msg:
                return self._on_telemetry(frame.seq, msg, now_s)
            case Ack() as ack:
                return self._on_ack(ack, now_s)
            case ParamValue() as value:
                exchange = self._requests.exchange
                if exchange is not None and exchange.param == value.param_id:
                    return self._finish(exchange, value.value, now_s)
                return [Ignored(f"unrequested {value}")]
            case Info() as info:
                return self._on_info(info, now_s)
            case Log() as line:
                return [McuLog(line.level, line.text.decode("ascii", errors="replace"))]
            case ArmState() as arm_state:
                self.arm_state = arm_state
                return []
            case other:
                return [Ignored(f"ignored {other.NAME} from the MCU")]

    def _on_telemetry(self, seq: int, msg: Telemetry, now_s: float) -> list[LinkEvent]:
        self._last_telemetry_s = now_s
        last_ms, self._last_mcu_time_ms = self._last_mcu_time_ms, msg.mcu_time_ms
        events: list[LinkEvent] = []
        if self.phase is Phase.UP:
            if msg.state == State.WAIT_HOST:
                reason = "the MCU has no session (it reset or the session timed out)"
                events += self._end(LinkDownError(reason), now_s)
            elif last_ms is not None and (msg.mcu_time_ms - last_ms) & 0xFFFFFFFF >= 1 << 31:
                reason = f"the MCU clock went back ({last_ms} -> {msg.mcu_time_ms} ms): reset"
                events += self._end(LinkDownError(reason), now_s)
        self.state = McuState(msg, seq, now_s, self._meter.telemetry_at(now_s))
        events.append(NewState(self.state))
        return events

    def _on_ack(self, ack: Ack, now_s: float) -> list[LinkEvent]:
        request = self._requests.answered_by(ack)
        events: list[LinkEvent] = []
        if request is not None:
            if ack.result != Result.OK or request.param is None:  # PARAM_VALUE follows an OK
                events += self._finish(request, ack, now_s)
        elif ack.ref_msg_id == Hello.MSG_ID and self._info is not None:
            events += self._on_hello_ack(self._info, ack, now_s)
        elif ack.ref_msg_id == Drive.MSG_ID and ack.result != Result.NO_SESSION:
            self._refusals.append(ack)
            events.append(DriveRefused(ack))
        elif ack.result != Result.NO_SESSION:
            events.append(Ignored(f"unrequested ACK from the MCU: {ack}"))
        if ack.result == Result.NO_SESSION and self.phase is Phase.UP:
            reason = "the MCU answered NO_SESSION (it reset or the session timed out)"
            events += self._end(LinkDownError(reason), now_s)
        return events

    # ---- the handshake --------------------------------------------------------------------
    def _on_info(self, info: Info, now_s: float) -> list[LinkEvent]:
        if self.phase is not Phase.HELLO:
            return [Ignored("INFO outside a handshake")]
        try:
            check_info(info, self.config.protocol_version, self.config.schema_hash)
        except HandshakeError as exc:
            return self._give_up(IncompatibleMcuError(str(exc), info), now_s)
        self._info = info
        return []

    def _on_hello_ack(self, info: Info, ack: Ack, now_s: float) -> list[LinkEvent]:
        if self.phase is not Phase.HELLO:
            return [Ignored(f"ACK to an earlier HELLO: {ack}")]
        if ack.result != Result.OK:
            error = IncompatibleMcuError(
                f"the MCU refused HELLO ({result_name(ack.result)}) although its INFO "
                f"matches this host: {describe_info(info)}",
                info,
            )
            return self._give_up(error, now_s)
        self.phase = Phase.RESTORE
        for param, value in self.params.items():
            self._requests.new(ParamSet(param, value), restore=True)
        self._next_exchange(now_s)
        return self._restored(now_s)

    def _restored(self, now_s: float) -> list[LinkEvent]:
        """Up, once RESTORE has nothing left to set."""
        if self.phase is not Phase.RESTORE or not self._requests.idle:
            return []
        self.phase = Phase.UP
        self._refusals.clear()
        self._last_telemetry_s = now_s
        self._last_mcu_time_ms = None
        self._heartbeat(now_s)
        return [
            self._set_status(connected=True, reason="handshake done", now_s=now_s, info=self._info)
        ]

    def _give_up(self, error: IncompatibleMcuError, now_s: float) -> list[LinkEvent]:
        events = self._end(error, now_s)
        self.failure = error
        self.phase = Phase.FAILED
        events.append(
            self._set_status(connected=False, reason=f"incompatible firmware: {error}", now_s=now_s)
        )
        return events

    def _end(self, error: LinkError, now_s: float, reason: str | None = None) -> list[LinkEvent]:
        """The session or this handshake attempt is over: fail every request."""
        events: list[LinkEvent] = []
        if self.phase is Phase.UP:
            events.append(
                self._set_status(connected=False, reason=reason or str(error), now_s=now_s)
            )
        elif self.phase in (Phase.HELLO, Phase.RESTORE):
            events.append(HandshakeFailed(error))
        if self.phase is not Phase.FAILED and self.phase is not Phase.CLOSED:
            self.phase = Phase.DOWN
        waiting = self._requests.forget_all()
        events += [RequestFailed(r.id, error) for r in waiting if not r.restore]
        return events

    # ---- requests -------------------------------------------------------------------------
    def _next_exchange(self, now_s: float) -> None:
        """Send the next parameter request if the wire is free of one."""
        if not self._writable or self.phase not in (Phase.RESTORE, Phase.UP):
            return
        request = self._requests.next_exchange()
        if request is not None:
            self._requests.sent(
                request, self._send(request.msg), now_s + self.config.request_timeout_s
            )

    def _finish(
        self, request: Request, answer: Ack | float | LinkError, now_s: float
    ) -> list[LinkEvent]:
        """The end of ``request`` (once): its event, the next parameter request, and the
        end of RESTORE; a RESTORE request that fails ends the handshake attempt."""
        if not self._requests.forget(request):
            return []
        if isinstance(answer, Ack) and answer.result != Result.OK:
            answer = RefusedError(
                f"the MCU refused {request.name}: {result_name(answer.result)}", answer
            )
        if isinstance(answer, LinkError):
            if request.restore:
                return self._end(answer, now_s)
            events: list[LinkEvent] = [RequestFailed(request.id, answer)]
        else:
            if isinstance(request.msg, ParamSet) and isinstance(answer, float):
                self.params[request.msg.param_id] = answer
            events = [] if request.restore else [Answered(request.id, answer)]
        self._next_exchange(now_s)
        return events + self._restored(now_s)

    # ---- output ---------------------------------------------------------------------------
    def _require_port(self) -> None:
        if not self._writable:
            raise LinkDownError(f"the port {self.config.port} is not open")

    def _require_up(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.phase is not Phase.UP:
            raise LinkDownError(f"the link to the MCU is down ({self.status.reason})")

    def _send(self, msg: Message) -> int:
        """Queue ``msg`` for the driver; returns its sequence number."""
        seq = self._encoder.next_seq
        self._out += self._encoder.encode(msg)
        return seq

    def _hello(self, now_s: float) -> None:
        self._send(Hello(self.config.protocol_version, self.config.schema_hash))
        self._next_hello_s = now_s + self.config.hello_retry_s

    def _heartbeat(self, now_s: float) -> None:
        self._send(Heartbeat(int(now_s * 1000) & 0xFFFFFFFF))
        self._next_heartbeat_s = now_s + self.config.heartbeat_period_s

    def _set_status(
        self, *, connected: bool, reason: str, now_s: float, info: Info | None = None
    ) -> StatusChanged:
        old = self.status
        self.status = LinkStatus(
            connected=connected,
            reason=reason,
            since_s=now_s,
            info=info if info is not None else old.info,
            connects=old.connects + (connected and not old.connected),
            disconnects=old.disconnects + (old.connected and not connected),
        )
        return StatusChanged(self.status, old)
