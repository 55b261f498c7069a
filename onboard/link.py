"""``McuLink``: the robot computer's end of the serial link to the MCU (firmware/PROTOCOL.md).

An async context manager. Entering opens the port and performs the handshake (raising
``PortError``, ``NoAnswerError`` or ``IncompatibleMcuError`` when that first connection
fails: a wrong port or the wrong firmware is found at start-up, not later). From then on
the link keeps itself up::

    async with McuLink(LinkConfig(port=Path("/dev/zima-mcu"))) as link:
        link.drive(200, 200)                          # fire-and-forget, 20-50 Hz
        state = await link.wait_for(lambda s: s.telemetry.vel_left_mm_s > 150, 2.0)
        await link.set_param(ParamId.pid_kp, 0.8)     # re-applied after every reconnect

``McuLink`` is a thin asyncio driver around the pure ``HostSession`` (link_session.py:
the handshake, INFO checks, heartbeats, timeouts, requests, refusals, TELEMETRY into
``McuState``, and the rules for when the link is lost). The driver owns what needs the
event loop: the port (``PortIO``: bytes read are handed to the session with their
receive time, what the session queues is written), one timer that calls ``tick`` at the
session's next deadline, the futures that callers await, and one supervisor task:

- the link is lost (the port fails, TELEMETRY is silent for ``telemetry_timeout_s``, the
  MCU reports that it has no session): the status turns ``connected=False`` at once and
  pending requests fail with ``LinkDownError`` (``PortError`` when the port failed); the
  MCU's own command watchdog stops the tracks meanwhile. The supervisor logs the loss and
  handshakes again at once on the open port, or reopens the path (a udev symlink may come
  back); after each failed try it waits, doubling from ``reconnect_min_s`` up to
  ``reconnect_max_s``, until the link is back with its parameters set again.
- Failure rule: ``IncompatibleMcuError`` ends the supervisor for good (reflashing is a
  person's job; ``failure`` holds it and every later command raises it); any other
  ``LinkError`` while reconnecting closes the port and tries again after the backoff. A
  supervisor that fails otherwise (a bug) is logged as critical and the link closed.

Commands: ``drive`` is fire-and-forget (the MCU ACKs a DRIVE only to refuse it; a refusal
is logged and raised as ``RefusedError`` by the next ``drive``; a port that fails on the
write makes the link lost, and the next ``drive`` raises ``LinkDownError``); ``arm``,
``set_param``, ``get_param``, ``estop`` and ``clear`` await their answer
(``request_timeout_s``) and raise ``RefusedError`` on any result but OK. All commands but
``estop`` need the link up. MCU LOG lines go to the ``zima.onboard.mcu`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Self

from zima.onboard import link_events as ev
from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import (
    IncompatibleMcuError,
    LinkDownError,
    LinkError,
    PortError,
    result_name,
)
from zima.onboard.link_io import PortIO
from zima.onboard.link_session import HostSession
from zima.onboard.mcu_state import LinkStatus, McuState
from zima.onboard.watch import Watch
from zima.protocol import (
    Ack,
    Arm,
    ArmState,
    Clear,
    Estop,
    Fault,
    Info,
    LogLevel,
    ParamId,
    describe_info,
)

__all__ = ["McuLink"]

log = logging.getLogger("zima.onboard.link")
mcu_log = logging.getLogger("zima.onboard.mcu")  # the MCU's own LOG lines

JOINTS = 6  # ARM: base yaw, shoulder, elbow, wrist pitch, wrist roll, gripper
LEAVE_JOINT = 0xFFFF  # ARM target meaning "leave this joint alone"

_LOG_LEVELS: dict[int, int] = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


class McuLink:
    """The serial link to the MCU; see the module docstring."""

    def __init__(
        self,
        config: LinkConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_status: Callable[[LinkStatus], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock  # injected: every timestamp of the link comes from here
        self._on_status = on_status  # called at every status change, from the event loop
        self._session = HostSession(config, now_s=clock())
        self._port: PortIO | None = None
        self._state: Watch[McuState | None] = Watch(None)
        self._status: Watch[LinkStatus] = Watch(self._session.status)
        self._answers: dict[int, asyncio.Future[Ack | float]] = {}  # request id -> caller
        self._attempt: asyncio.Future[None] | None = None  # the handshake being awaited
        self._timer: asyncio.TimerHandle | None = None  # calls tick at the next deadline
        self._timer_at: float | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # ---- lifetime -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        try:
            await self._connect()
        except BaseException:
            self._close_port(LinkDownError("the link was not started"))
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="mcu-link")
        self._supervisor.add_done_callback(self._supervisor_done)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._supervisor is not None:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor  # raises what a failed supervisor raised
        finally:
            self._session.stop_tracks()  # leave the tracks stopped, not to the watchdog
            self._flush()
            self._close_port(LinkDownError("the link is closed"), reason="closed")
            self._status.close()
            self._state.close()

    async def _supervise(self) -> None:
        try:
            while True:
                lost = await self._status.wait_for(lambda s: not s.connected)
                log.warning(
                    "MCU link lost on %s: %s; the MCU's %.0f ms command watchdog stops the "
                    "tracks until it is back",
                    self.config.port,
                    lost.reason,
                    self._session.watchdog_ms,
                )
                await self._reconnect()
        except IncompatibleMcuError as exc:
            log.error("MCU link given up: %s", exc)
            self._close_port(exc)

    async def _reconnect(self) -> None:
        """Handshake again (on the open port first, else a reopened one) until it works."""
        cfg = self.config
        delay_s = cfg.reconnect_min_s
        attempts = 0
        while True:
            try:
                await self._connect()
                return
            except IncompatibleMcuError:
                raise
            except LinkError as exc:
                attempts += 1
                level = logging.INFO if attempts == 1 else logging.DEBUG  # no log flood
                log.log(level, "reconnecting to %s (attempt %d): %s", cfg.port, attempts, exc)
                self._close_port(LinkDownError(f"reconnecting: {exc}"))
            await asyncio.sleep(delay_s)
            delay_s = min(2 * delay_s, cfg.reconnect_max_s)

    async def _connect(self) -> None:
        """One handshake: on the open port if it still works, else on a newly opened one."""
        if self._port is not None and self._port.failed:
            self._close_port(LinkDownError(self.status.reason))
        attempt = self._attempt = asyncio.get_running_loop().create_future()
        try:
            if self._port is None:
                self._port = PortIO.open(
                    self.config.port, self.config.baud, self._on_data, self._on_port_error
                )
                self._apply(self._session.open(self._clock()))
            else:
                self._apply(self._session.handshake(self._clock()))
            await attempt
        finally:
            self._attempt = None
            if attempt.done() and not attempt.cancelled():
                attempt.exception()  # retrieved: asyncio would log it as forgotten

    def _close_port(self, error: LinkError, reason: str | None = None) -> None:
        """Close the port (if open); everything waiting for an answer fails with ``error``."""
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._apply(self._session.close(error, self._clock(), reason))

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        """A supervisor that ends other than cancelled has a bug: say so, close the link."""
        if task.cancelled() or task.exception() is None:
            return
        log.critical("the MCU link's supervisor failed", exc_info=task.exception())
        reason = f"supervisor failed: {task.exception()!r}"
        self._close_port(LinkDownError(reason), reason=reason)

    # ---- the session's input and output ---------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        received_s = self._clock()  # timestamp at capture, before any decoding
        self._apply(self._session.receive(data, received_s))

    def _on_port_error(self, error: PortError) -> None:
        self._apply(self._session.port_failed(str(error), self._clock()))

    def _on_tick(self) -> None:
        self._timer, self._timer_at = None, None
        self._apply(self._session.tick(self._clock()))

    def _apply(self, events: list[ev.LinkEvent]) -> None:
        """Act on the session's events, write what it queued, time its next deadline."""
        try:
            for event in events:
                self._handle(event)
        finally:
            self._flush()
            self._schedule_tick()

    def _schedule_tick(self) -> None:
        deadline_s = self._session.next_deadline_s()
        if deadline_s != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, deadline_s
            if deadline_s is not None:
                delay_s = max(0.0, deadline_s - self._clock())
                self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_tick)

    def _flush(self) -> None:
        data = self._session.data_to_send()
        if data and self._port is not None:
            self._port.write(data)  # a failure comes back through _on_port_error

    def _handle(self, event: ev.LinkEvent) -> None:  # noqa: PLR0912 (one branch per event)
        match event:
            case ev.NewState(state):
                self._state.set(state)
            case ev.StatusChanged(status, previous):
                self._status.set(status)
                if status.connected:
                    self._report_up(status, previous)
                if self._on_status is not None:
                    try:
                        self._on_status(status)
                    except Exception:  # a caller's bug must not stall the link
                        log.exception("the MCU link's on_status callback failed")
            case ev.Answered(request, value):
                future = self._answers.pop(request, None)
                if future is not None and not future.done():
                    future.set_result(value)
            case ev.RequestFailed(request, error):
                future = self._answers.pop(request, None)
                if future is not None and not future.done():
                    future.set_exception(error)
            case ev.HandshakeFailed(error):
                if self._attempt is not None and not self._attempt.done():
                    self._attempt.set_exception(error)
            case ev.DriveRefused(ack):
                log.warning(
                    "the MCU refused DRIVE (seq %d): %s", ack.ref_seq, result_name(ack.result)
                )
            case ev.McuLog(level, text):
                mcu_log.log(_LOG_LEVELS.get(level, logging.ERROR), "MCU: %s", text)
            case ev.Ignored(what):
                log.debug("%s", what)

    def _report_up(self, status: LinkStatus, previous: LinkStatus) -> None:
        again = ""
        if status.connects > 1:
            restored = len(self._session.params)
            down_s = status.since_s - previous.since_s
            again = f", back after {down_s:.2f} s, {restored} parameters re-applied"
        info = describe_info(status.info) if status.info is not None else "no INFO"
        log.info("MCU link up on %s: %s%s", self.config.port, info, again)
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(None)

    async def _answer(self, request: int) -> Ack | float:
        """Await the session's answer to ``request`` (it times requests out itself)."""
        future: asyncio.Future[Ack | float] = asyncio.get_running_loop().create_future()
        self._answers[request] = future
        try:
            self._apply([])  # write the request, time its deadline
            return await future
        finally:
            self._answers.pop(request, None)
            self._session.cancel(request)  # nothing, unless the caller gave up waiting

    async def _value(self, request: int) -> float:
        held = await self._answer(request)
        assert isinstance(held, float)  # a parameter request is answered by PARAM_VALUE
        return held

    # ---- what the runtime reads -----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._session.status.connected

    @property
    def status(self) -> LinkStatus:
        return self._session.status

    @property
    def info(self) -> Info | None:
        """INFO of the last successful handshake."""
        return self._session.status.info

    @property
    def state(self) -> McuState | None:
        """The latest TELEMETRY (None before the first)."""
        return self._session.state

    @property
    def arm_state(self) -> ArmState | None:
        """The latest ARM_STATE (10 Hz while a session is open)."""
        return self._session.arm_state

    @property
    def failure(self) -> IncompatibleMcuError | None:
        """Set when the link gave up for good (the firmware on the port is incompatible)."""
        return self._session.failure

    @property
    def tx_backlog(self) -> int:
        """Encoded bytes the port has not taken yet (0: everything sent is written)."""
        return self._port.backlog if self._port is not None else 0

    async def wait_for(
        self, predicate: Callable[[McuState], bool], timeout_s: float | None = None
    ) -> McuState:
        """The first McuState, the latest included, for which ``predicate`` holds."""
        found = await self._state.wait_for(lambda s: s is not None and predicate(s), timeout_s)
        assert found is not None  # the predicate above rules None out
        return found

    async def states(self) -> AsyncIterator[McuState]:
        """Every new McuState; a slow consumer gets the newest and skips the rest."""
        async for state in self._state.updates():
            if state is not None:
                yield state

    async def wait_status(
        self, predicate: Callable[[LinkStatus], bool], timeout_s: float | None = None
    ) -> LinkStatus:
        """The first LinkStatus, the present one included, for which ``predicate`` holds."""
        return await self._status.wait_for(predicate, timeout_s)

    def statuses(self) -> AsyncIterator[LinkStatus]:
        """Every status change from now on (``connects`` / ``disconnects`` count them all)."""
        return self._status.updates()

    # ---- commands -------------------------------------------------------------------------
    def drive(self, left_mm_s: int, right_mm_s: int) -> None:
        """Send track velocity targets (mm/s), fire-and-forget.

        If the MCU refused an earlier DRIVE (e-stop, battery critical, out of range), this
        call raises that ``RefusedError`` instead of sending; the next call sends again.
        """
        self._session.drive(left_mm_s, right_mm_s)
        self._flush()

    async def arm(
        self,
        targets_ddeg: Sequence[int | None],
        speeds_ddeg_s: Sequence[int] | None = None,
    ) -> None:
        """Servo targets in 0.1 deg (None leaves a joint alone), speeds in 0.1 deg/s (0 =
        ``servo_max_speed_ddeg_s``), joints in ARM order."""
        speeds = list(speeds_ddeg_s) if speeds_ddeg_s is not None else [0] * JOINTS
        if len(targets_ddeg) != JOINTS or len(speeds) != JOINTS:
            raise ValueError(f"ARM takes {JOINTS} targets and {JOINTS} speeds")
        fields: list[int] = []
        for target, speed in zip(targets_ddeg, speeds, strict=True):
            fields += [LEAVE_JOINT if target is None else target, speed]
        await self._answer(self._session.request(Arm(*fields), self._clock()))

    async def set_param(self, param: ParamId, value: float) -> float:
        """Set a parameter; returns the value the MCU holds (integers rounded). The link
        sets it again after every reconnect."""
        return await self._value(self._session.set_param(param, value, self._clock()))

    async def get_param(self, param: ParamId | int) -> float:
        """The value the MCU holds now."""
        return await self._value(self._session.get_param(param, self._clock()))

    async def estop(self) -> None:
        """Latch the MCU's e-stop (works without a session, needs an open port)."""
        await self._answer(self._session.request(Estop(), self._clock()))

    async def clear(self, faults: Fault) -> None:
        """Clear latched fault bits; ``RefusedError(CONDITION_ACTIVE)`` when one persists."""
        await self._answer(self._session.request(Clear(int(faults)), self._clock()))
