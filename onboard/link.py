"""``McuLink``: the robot computer's end of the serial link to the MCU (firmware/PROTOCOL.md).

An async context manager. Entering opens the port and performs the handshake (raising
``PortError``, ``NoAnswerError`` or ``IncompatibleMcuError`` when that first connection
fails: a wrong port or the wrong firmware is found at start-up, not later). From then on
one supervisor task keeps the link up::

    async with McuLink(LinkConfig(port=Path("/dev/zima-mcu"))) as link:
        link.drive(200, 200)                          # fire-and-forget, 20-50 Hz
        state = await link.wait_for(lambda s: s.telemetry.vel_left_mm_s > 150, 2.0)
        await link.set_param(ParamId.pid_kp, 0.8)     # re-applied after every reconnect

What the supervisor does (section 2 of the contract):

- connect: send 0x00, HELLO every ``hello_retry_s`` until INFO, check INFO against this
  host's protocol identity (a mismatch is fatal and names both sides), await ACK(HELLO),
  re-apply every parameter set through this link (the MCU forgets them on reset);
- while up: HEARTBEAT every ``heartbeat_period_s``; TELEMETRY decoded into ``McuState``;
  MCU LOG lines go to the ``zima.onboard.mcu`` logger at their level;
- the link is lost when the port fails (read error, end of file: the device vanished),
  when TELEMETRY is silent for ``telemetry_timeout_s``, or when the MCU reports that it
  has no session (it reset or timed out). The status turns ``connected=False`` at once;
  the MCU's own command watchdog stops the tracks meanwhile. The supervisor re-handshakes
  on the open port, or reopens the path (a udev symlink may come back) with exponential
  backoff, until it is back. Pending requests fail with ``LinkDownError``.

Commands: ``drive`` is fire-and-forget (the MCU ACKs a DRIVE only to refuse it; a refusal
is logged and raised as ``RefusedError`` by the next ``drive``); ``arm``, ``set_param``,
``get_param``, ``estop`` and ``clear`` await their answer (``request_timeout_s``) and raise
``RefusedError`` on any result but OK. All commands but ``estop`` need the link up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Self

from zima.onboard.link_config import (
    IncompatibleMcuError,
    LinkConfig,
    LinkDownError,
    LinkError,
    RefusedError,
    result_name,
)
from zima.onboard.link_session import LinkSession
from zima.onboard.mcu_state import LinkStatus, McuState
from zima.protocol import (
    Arm,
    Clear,
    Drive,
    Estop,
    Fault,
    Info,
    ParamGet,
    ParamId,
    ParamSet,
    State,
)

__all__ = ["McuLink"]

log = logging.getLogger("zima.onboard.link")

JOINTS = 6  # ARM: base yaw, shoulder, elbow, wrist pitch, wrist roll, gripper
LEAVE_JOINT = 0xFFFF  # ARM target meaning "leave this joint alone"


class McuLink(LinkSession):
    """The serial link to the MCU; see the module docstring."""

    def __init__(
        self,
        config: LinkConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_status: Callable[[LinkStatus], None] | None = None,
    ) -> None:
        super().__init__(config, clock, on_status)
        self._supervisor: asyncio.Task[None] | None = None

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        try:
            self._open_port()
            await self._connect()
        except BaseException:
            self._close_port(LinkDownError("the link was not started"))
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="mcu-link")
        self._supervisor.add_done_callback(self._supervisor_done)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._supervisor is not None:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor  # raises what a failed supervisor raised
        finally:
            state = self._state.value
            if self.connected and (state is None or state.state != State.ESTOP):
                with contextlib.suppress(LinkError):
                    self._send(Drive(0, 0))  # leave the tracks stopped, not to the watchdog
            self._close_port(LinkDownError("the link is closed"))
            self._set_status(connected=False, reason="closed")
            self._status.close()
            self._state.close()

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        """A supervisor that ends other than cancelled has a bug: say so, mark the link down."""
        if task.cancelled() or task.exception() is None:
            return
        log.critical("the MCU link's supervisor failed", exc_info=task.exception())
        self._set_status(connected=False, reason=f"supervisor failed: {task.exception()!r}")

    # ---- what the runtime reads -----------------------------------------------------------
    @property
    def info(self) -> Info | None:
        """INFO of the last successful handshake."""
        return self._status.value.info

    @property
    def state(self) -> McuState | None:
        """The latest TELEMETRY (None before the first)."""
        return self._state.value

    @property
    def failure(self) -> IncompatibleMcuError | None:
        """Set when the link gave up for good (the firmware on the port is incompatible)."""
        return self._failure

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
        if self._refusals:
            ack = self._refusals.pop()
            self._refusals.clear()
            raise RefusedError(f"the MCU refused DRIVE: {result_name(ack.result)}", ack)
        self._require_connected()
        self._send(Drive(left_mm_s, right_mm_s))

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
        self._require_connected()
        await self._request(Arm(*fields))

    async def set_param(self, param: ParamId, value: float) -> float:
        """Set a parameter; returns the value the MCU holds (integers rounded). The link
        sets it again after every reconnect."""
        self._require_connected()
        held = await self._param_exchange(ParamSet(int(param), value), param)
        self._params[ParamId(param)] = held
        return held

    async def get_param(self, param: ParamId | int) -> float:
        """The value the MCU holds now."""
        self._require_connected()
        return await self._param_exchange(ParamGet(int(param)), param)

    async def estop(self) -> None:
        """Latch the MCU's e-stop (works without a session, needs an open port)."""
        await self._request(Estop())

    async def clear(self, faults: Fault) -> None:
        """Clear latched fault bits; ``RefusedError(CONDITION_ACTIVE)`` when one persists."""
        self._require_connected()
        await self._request(Clear(int(faults)))
