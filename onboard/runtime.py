"""``Runtime``: the robot computer's service, every onboard part in one asyncio process.

``zima onboard run --config FILE`` builds one from :mod:`zima.onboard.config` and runs it
until SIGTERM (systemd's stop) or SIGINT::

    runtime = Runtime(load_config(Path("/etc/zima/onboard.toml")))
    await runtime.run(stop_event)

What runs, and who may touch the motors:

- **The control loop** (``loop_hz``, 50 Hz) is the only caller of ``McuLink.drive``:
  each tick it feeds new camera frames to the fusion, ticks the policy while the policy
  may drive (the runner decides at this resolution when an action starts and when to
  plan: ARCHITECTURE decision 13), tells :class:`~zima.onboard.safety.Safety` what
  it knows (link, battery, e-stop, stale inputs) and sends what ``Safety.decide`` returns.
  So there is exactly one owner of the tracks at any time, chosen by ``Safety``, and every
  path to them (teleop, policy) has the timeout ``Safety`` enforces; beneath it, the MCU's
  own 250 ms command watchdog stops the tracks if this loop stalls or the link drops.
  (The one other DRIVE is a stop: zeros sent when a part fails, and at shutdown.)
- **Inference** runs on the policy runner's worker thread; the loop never waits for it.
- **Operator commands** (MQTT ``cmd/*``, the web console) go through :meth:`Runtime.handle`,
  which asks ``Safety``; none of them writes to the MCU except e-stop, which also latches
  the MCU's own e-stop (it works from any mode, even with the policy in the middle of a
  chunk), and the arm's: joint targets, tool poses (inverse kinematics from the present
  pose, :mod:`zima.onboard.arm_teleop`), named poses and jogs, each checked and clamped by
  ``Safety`` and sent as one ``ARM`` (the MCU slews the servos; a jog moves only while
  jogs keep coming, ``Safety.arm_jog``).
- **Telemetry** (MQTT, optional: a dead broker never disturbs the loop), the **recorder**
  (HDF5 episodes on a worker thread; a full disk stops recording, not driving) and the
  **systemd watchdog** (pinged only while the control loop is ticking) hang off the loop.

Failure rule: every long-running part (the control loop, the systemd watchdog, the MQTT
command loop) runs under ``_supervise``: a failure is logged with its traceback, counted in
``telemetry/faults`` (``parts``), stops autonomy (idle) and restarts the part; a part that
keeps failing is given up: the control loop ends the runtime (``PartFailedError``, exit 1,
systemd restarts it), any other refuses the policy's modes and says why. ``handle`` never
raises. MQTT's own connection never dies either (:mod:`zima.onboard.telemetry`).

Every record published says how old its data is: the MCU's records carry ``age_s`` (since
its TELEMETRY arrived) and ``stale`` (the link is down or the MCU silent past the link's
timeout): the last values of a lost link are marked stale, never restamped.

Start-up fails fast (a ``RuntimeStartError`` naming the part) when the MCU's port or
firmware is wrong or a camera cannot be opened; a missing or refused policy model is not
fatal: the robot starts without one, refuses autonomous modes and says why, and a later
``reload`` can bring one in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zima.contract import DEFAULT, Contract, nearest_action
from zima.onboard import realtime
from zima.onboard.api import (
    ArmCommand,
    ArmJogCommand,
    ArmPoseCommand,
    ArmRecord,
    ArmToolCommand,
    BatteryRecord,
    CameraRecord,
    CamerasRecord,
    Command,
    EstopCommand,
    FaultsRecord,
    HandBackCommand,
    HeartbeatCommand,
    LeaseCommand,
    LinkRecord,
    LoopRecord,
    ModeCommand,
    ModeRecord,
    OdometryRecord,
    PolicyRecord,
    Record,
    RecordCommand,
    RecorderRecord,
    ReloadCommand,
    RobotStatus,
    TeleopCommand,
    ToolTarget,
    TracksRecord,
)
from zima.onboard.arm_poses import gripper_opening_m
from zima.onboard.arm_teleop import ARM_TARGETS, ArmPlan, ArmTeleop
from zima.onboard.camera import CameraOptions, CameraRig, Capture, open_capture
from zima.onboard.camera_config import CameraConfig, CameraError
from zima.onboard.config import RuntimeConfig
from zima.onboard.frame import Frame
from zima.onboard.fusion import FrameFusion
from zima.onboard.kinematics import ARM
from zima.onboard.link import McuLink
from zima.onboard.link_errors import LinkDownError, LinkError, RefusedError
from zima.onboard.mcu_state import McuState
from zima.onboard.policy import ModelError
from zima.onboard.policy_runner import PlanTrace, PolicyRunner, Step
from zima.onboard.recorder import EVENT_KINDS, Recorder, RecorderError
from zima.onboard.safety import (
    DRIVING_MODES,
    POLICY_MODES,
    BatteryLevel,
    Decision,
    DriveMode,
    Safety,
    SafetyError,
)
from zima.onboard.sdnotify import Notifier, watchdog_loop
from zima.onboard.telemetry import Telemetry
from zima.onboard.web import WebConsole, WebConsoleError, read_token
from zima.protocol import Fault, ParamId, State

__all__ = ["LoopStats", "Runtime", "RuntimeStartError"]

log = logging.getLogger("zima.onboard.runtime")

# The loop is "alive" for the systemd watchdog while its last tick is this recent.
ALIVE_WITHIN_S = 1.0


# A part that fails more than this many times within PART_WINDOW_S is given up (see
# Runtime._supervise); between failures it restarts after PART_BACKOFF_S, doubling.
PART_RESTARTS = 3
PART_WINDOW_S = 60.0
PART_BACKOFF_S = 0.2


class RuntimeStartError(Exception):
    """A part the robot cannot run without failed to start (the message names it)."""


class PartFailedError(Exception):
    """A part the robot cannot run without failed for good (the runtime stops; systemd
    restarts the service, the MCU's watchdog has stopped the tracks)."""


@dataclass(slots=True)
class PartHealth:
    """One supervised part of the runtime, as ``telemetry/faults`` reports it."""

    state: str = "running"  # running, restarting, failed (given up)
    failures: int = 0
    last_error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"state": self.state, "failures": self.failures, "last_error": self.last_error}


@dataclass(frozen=True, slots=True)
class LoopStats:
    """The control loop's timing over its recent ticks (milliseconds)."""

    rate_hz: float
    period_p50_ms: float
    period_p99_ms: float
    jitter_p99_ms: float  # |period - nominal|, 99th percentile
    overruns: int  # ticks that started a whole period late (the schedule was reset)
    ticks: int
    jitter_p50_ms: float = 0.0  # |period - nominal|, median
    jitter_max_ms: float = 0.0  # |period - nominal|, the worst in the window


class _LoopTimer:
    def __init__(self, period_s: float, window: int = 500) -> None:
        self.period_s = period_s
        self._periods: deque[float] = deque(maxlen=window)
        self._last_s: float | None = None
        self.overruns = 0
        self.ticks = 0

    def tick(self, now_s: float) -> None:
        if self._last_s is not None:
            self._periods.append(now_s - self._last_s)
        self._last_s = now_s
        self.ticks += 1

    def stats(self) -> LoopStats:
        if not self._periods:
            return LoopStats(0.0, 0.0, 0.0, 0.0, self.overruns, self.ticks)
        periods = np.array(self._periods)
        jitter = np.abs(periods - self.period_s)
        mean = float(periods.mean())
        return LoopStats(
            rate_hz=1.0 / mean if mean > 0 else 0.0,
            period_p50_ms=float(np.percentile(periods, 50)) * 1e3,
            period_p99_ms=float(np.percentile(periods, 99)) * 1e3,
            jitter_p99_ms=float(np.percentile(jitter, 99)) * 1e3,
            overruns=self.overruns, ticks=self.ticks,
            jitter_p50_ms=float(np.percentile(jitter, 50)) * 1e3,
            jitter_max_ms=float(jitter.max()) * 1e3)


def _battery_advice(battery_mv: int, latched: bool, clear_mv: int) -> str | None:
    """What the operator should do about the battery, or None when nothing."""
    if not latched:
        return None
    if clear_mv and battery_mv > clear_mv:
        return ("the pack is back above the clear threshold: ask for idle (console, "
                "MQTT cmd/mode {\"mode\": \"idle\"}) to clear the MCU's critical latch")
    return (f"charge or replace the pack; above {clear_mv} mV ask for idle to clear the "
            "MCU's critical latch" if clear_mv else "charge or replace the pack")


def _battery_level(faults: Fault) -> BatteryLevel:
    if faults & Fault.BATT_CRITICAL:
        return BatteryLevel.CRITICAL
    if faults & Fault.BATT_LOW:
        return BatteryLevel.LOW
    return BatteryLevel.OK


class Runtime:
    """See the module docstring. One instance runs once."""

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        contract: Contract = DEFAULT,
        clock: Callable[[], float] = time.monotonic,
        camera_opener: Callable[[CameraConfig], Capture] = open_capture,
        notifier: Notifier | None = None,
        software: str = "",
        on_plan: Callable[[PlanTrace], None] | None = None,
    ) -> None:
        self.config, self.contract = config, contract
        self._clock = clock
        self._opener = camera_opener
        self._own_notifier = notifier is None  # ours to close; a caller's is theirs
        self._notifier = notifier or Notifier()
        self._software = software
        self._on_plan = on_plan  # timing of every plan (bench/runtime_bench.py)
        self.safety = Safety(config.safety, now_s=clock())
        self.fusion = FrameFusion(contract, config.fusion)
        self._timer = _LoopTimer(1.0 / config.loop_hz)
        self._link: McuLink | None = None
        self._rig: CameraRig | None = None
        self._runner: PolicyRunner | None = None
        self._policy_error: str | None = "not started"
        self._policy_failures = 0  # loads refused while no model runs (telemetry's count)
        self._policy_stack = contextlib.AsyncExitStack()
        self._telemetry: Telemetry | None = None
        self._recorder: Recorder | None = None
        self._frames: dict[str, Frame] = {}
        self._last_tick_s: float | None = None
        self._last_decision: Decision | None = None
        self._last_step: Step | None = None
        self._drive_refusal: str | None = None
        self._battery_limits = (0, 0, 0)  # low, critical, clear (mV); 0: unknown
        self._started = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._parts: dict[str, PartHealth] = {}
        self._refusal_log: tuple[str, float, int] | None = None  # message, logged at, repeats
        self._mcu_estop_seen = False  # the MCU's ESTOP state at the last update
        self._arm = ArmTeleop()  # the arm's present commanded pose (zima.onboard.arm_teleop)

    # ---- lifetime -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start every part, run until ``stop`` is set (or a task fails), stop cleanly."""
        stop = stop or asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(realtime.restore, sys.getswitchinterval())
            realtime.apply(self.config.realtime)
            await self._start(stack)
            realtime.after_start(self.config.realtime)
            self._notifier.ready()
            self._notifier.status("running")
            self._started.set()
            log.info("runtime up: mode %s, policy %s", self.safety.mode.value,
                     self._runner.model_sha256[:12] if self._runner else self._policy_error)
            telemetry = self._telemetry
            try:
                await self._run_parts(stop, telemetry)
            except ExceptionGroup as group:  # the TaskGroup's: a part given up, or a bug
                failed = group.subgroup(PartFailedError)
                if failed is not None:
                    raise failed.exceptions[0] from group
                raise
            # Leaving the stack closes an episode still recording as aborted (the recorder).

    async def _run_parts(self, stop: asyncio.Event, telemetry: Telemetry | None) -> None:
        """The supervised parts (see ``_supervise``), until ``stop`` is set."""
        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(self._supervise("control-loop", self._control_loop,
                                                  critical=True), name="control-loop"),
                tasks.create_task(self._supervise(
                    "systemd-watchdog", lambda: watchdog_loop(self._notifier, self.alive),
                    may_finish=True),
                    name="systemd-watchdog")]
            if telemetry is not None:
                workers.append(tasks.create_task(self._supervise(
                    "mqtt-commands", lambda: self._command_loop(telemetry)),
                    name="mqtt-commands"))
            await stop.wait()
            log.info("stopping")
            self._notifier.stopping()
            for worker in workers:
                worker.cancel()

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]], *,
                         critical: bool = False, may_finish: bool = False) -> None:
        """Run the part ``body`` until cancelled; no failure of it passes silently.

        A part's loop never returns (unless ``may_finish``: the systemd watchdog's has
        nothing to do when no watchdog is asked for). When it raises (or returns), the
        failure is logged
        with its traceback, counted in ``telemetry/faults`` ``parts``, autonomy stops
        (the policy's modes drop to idle: the stack is unsure), and the part restarts
        after a short backoff. Past ``PART_RESTARTS`` failures within ``PART_WINDOW_S``
        it is given up: a ``critical`` part (the control loop) ends the runtime with
        ``PartFailedError`` (systemd restarts the service; the MCU's watchdog has stopped
        the tracks); any other stays down and the policy's modes are refused, saying why.
        """
        health = self._parts.setdefault(name, PartHealth())
        recent: deque[float] = deque()
        while True:
            try:
                await body()
                if may_finish:
                    return
                raise RuntimeError("its loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now_s = self._clock()
                health.failures += 1
                health.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("runtime part %s failed (failure %d)", name, health.failures)
                recent.append(now_s)
                while recent and recent[0] < now_s - PART_WINDOW_S:
                    recent.popleft()
                given_up = len(recent) > PART_RESTARTS
                health.state = "failed" if given_up else "restarting"
                self._part_failed(name, health, now_s)
                if given_up:
                    log.critical("runtime part %s failed %d times in %.0f s: given up",
                                 name, len(recent), PART_WINDOW_S)
                    if critical:
                        raise PartFailedError(f"{name}: {health.last_error}") from exc
                    return
            await asyncio.sleep(PART_BACKOFF_S * 2 ** (len(recent) - 1))
            health.state = "running"
            log.info("runtime part %s restarted", name)

    def _part_failed(self, name: str, health: PartHealth, now_s: float) -> None:
        """Stop autonomy and say so at once (mode and faults records)."""
        with contextlib.suppress(Exception):  # the stop must not fail with the part
            self._drive_zero()
        reason = f"runtime part {name} {health.state}: {health.last_error}"
        self.safety.stop_autonomy(kind="part_failed", reason=reason,
                                  source=f"runtime:{name}", now_s=now_s)
        with contextlib.suppress(Exception):
            self._publish_transitions()
            if self._telemetry is not None:
                self._telemetry.post("faults", self._faults_record().to_json())

    def _failed_parts(self) -> list[str]:
        return [f"runtime part {name} failed: {h.last_error}"
                for name, h in self._parts.items() if h.state == "failed"]

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """Enter every part into ``stack``, in the order they depend on each other."""
        cfg = self.config
        if self._own_notifier:
            stack.callback(self._notifier.close)
        self._notifier.status("connecting to the MCU")
        try:
            self._link = await stack.enter_async_context(McuLink(cfg.link, clock=self._clock))
        except LinkError as exc:
            raise RuntimeStartError(f"MCU link on {cfg.link.port}: {exc}") from exc
        try:
            await self._link.wait_for(lambda _state: True, cfg.link.handshake_timeout_s)
        except (LinkError, TimeoutError) as exc:
            raise RuntimeStartError(f"MCU on {cfg.link.port} sends no TELEMETRY") from exc
        await self._read_battery_limits()
        self._notifier.status("opening cameras")
        try:
            self._rig = await stack.enter_async_context(
                CameraRig(cfg.cameras, CameraOptions(
                    clock=self._clock, opener=self._opener, on_frame=self._on_frame,
                    fit_to=(self.contract.image_height, self.contract.image_width))))
        except CameraError as exc:
            raise RuntimeStartError(f"cameras: {exc}") from exc
        stack.push_async_callback(self._policy_stack.aclose)
        await self._start_policy(cfg.policy.model_path)
        if cfg.mqtt.enabled:
            self._telemetry = await stack.enter_async_context(
                Telemetry(cfg.broker_config(), self._providers(), caller_answers=True))
        self._recorder = await stack.enter_async_context(
            Recorder(cfg.recorder, self.contract, self._metadata()))
        if cfg.web.enabled:
            assert cfg.web.token_file is not None  # RuntimeConfig insists
            try:
                token = read_token(cfg.web.token_file)
                await stack.enter_async_context(WebConsole(self, cfg.web, token))
            except WebConsoleError as exc:
                raise RuntimeStartError(f"web console: {exc}") from exc
        stack.push_async_callback(self._stop_tracks)

    async def wait_started(self, timeout_s: float | None = None) -> None:
        """Return once every part is up and the control loop is about to start."""
        async with asyncio.timeout(timeout_s):
            await self._started.wait()

    def alive(self) -> bool:
        """The control loop ticked recently (what the systemd watchdog is pinged on)."""
        last = self._last_tick_s
        return last is not None and self._clock() - last < ALIVE_WITHIN_S

    async def _stop_tracks(self) -> None:
        self._drive_zero()

    def _drive_zero(self) -> None:
        """Zeros to the tracks now (shutdown, a failed part); never raises a link error."""
        link = self._link
        state = link.state if link is not None else None
        if state is not None and state.state == State.ESTOP:
            return  # latched: the MCU refuses DRIVE, its tracks are stopped
        if link is not None and link.connected:
            with contextlib.suppress(LinkError):
                link.drive(0, 0)

    async def _read_battery_limits(self) -> None:
        assert self._link is not None
        try:
            low = await self._link.get_param(ParamId.batt_low_mv)
            critical = await self._link.get_param(ParamId.batt_crit_mv)
            hysteresis = await self._link.get_param(ParamId.batt_hyst_mv)
        except LinkError as exc:
            log.warning("cannot read the MCU's battery limits: %s", exc)
            return
        # The MCU clears a latched BATT_CRITICAL only above critical + hysteresis
        # (firmware/PROTOCOL.md, CLEAR).
        self._battery_limits = (round(low), round(critical), round(critical + hysteresis))

    # ---- the policy ---------------------------------------------------------------------
    async def _start_policy(self, path: Path) -> PolicyRunner | None:
        if self.config.policy.backend == "local" and not path.exists():
            self._policy_error = f"no model at {path}"
            self._policy_failures += 1
            log.warning("policy: %s; autonomous modes are refused until one is deployed", path)
            return None
        runner = PolicyRunner(self.config.policy, self.contract, self.fusion, clock=self._clock,
                              on_plan=self._on_plan, tick_s=1.0 / self.config.loop_hz)
        try:
            self._runner = await self._policy_stack.enter_async_context(runner)
        except ModelError as exc:
            self._policy_error = str(exc)
            self._policy_failures += 1
            log.error("policy: %s; autonomous modes are refused", exc)
        else:
            self._policy_error = None
        return self._runner

    async def reload_policy(self) -> str:
        """Load the configured model file again (deploy replaced it); returns its sha256.

        ``ModelError`` if the new file is refused: the old model keeps driving.
        """
        async with self._reloading:
            if self._runner is None:
                runner = await self._start_policy(self.config.policy.model_path)
                if runner is None:
                    raise ModelError(self._policy_error or "no model")
                return runner.model_sha256
            return await self._runner.reload(self.config.policy.model_path)

    @property
    def clock(self) -> Callable[[], float]:
        """The runtime's clock (``time.monotonic`` on the robot): Safety's ``now_s``."""
        return self._clock

    @property
    def link_or_none(self) -> McuLink | None:
        """The MCU link, or None before start-up reached it."""
        return self._link

    @property
    def link(self) -> McuLink:
        """The MCU link (for status and tests; only the control loop drives through it)."""
        if self._link is None:
            raise RuntimeError("the runtime has not started")
        return self._link

    @property
    def last_decision(self) -> Decision | None:
        """What the control loop last sent to the tracks, and why."""
        return self._last_decision

    @property
    def model_sha256(self) -> str | None:
        return self._runner.model_sha256 if self._runner is not None else None

    # ---- the control loop -----------------------------------------------------------------
    async def _control_loop(self) -> None:
        assert self._link is not None
        assert self._rig is not None
        link, rig = self._link, self._rig
        period_s = 1.0 / self.config.loop_hz
        record_period_s = 1.0 / self.contract.control_hz  # episodes: one step per action
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        next_record_s = self._clock()
        while True:
            now_s = self._clock()
            self._timer.tick(now_s)
            self._fuse(rig)
            self._policy_tick(now_s)  # every tick: the runner decides when actions start
            self._update_safety(now_s)
            decision = self.safety.decide(now_s=now_s)
            self._last_decision = decision
            if link.connected:
                self._drive(link, decision, now_s)
            self._publish_transitions()
            # The recorder takes one step per action: while the policy drives, at the
            # ticks its actions start (each beside the frames of that moment); else once
            # per action period.
            runner = self._runner
            if self._last_step is not None and decision.owner == "policy":
                record = runner is not None and runner.action_started
            else:
                record = now_s >= next_record_s - period_s / 2
            if record:
                next_record_s = now_s + record_period_s
                self._record_step(now_s, decision)
            self._last_tick_s = now_s
            next_tick += period_s
            if next_tick - loop.time() < -period_s:  # a whole period late: start afresh
                self._timer.overruns += 1
                next_tick = loop.time()
            await realtime.sleep_until(loop, next_tick, self.config.realtime.tick_spin_s)

    def _fuse(self, rig: CameraRig) -> None:
        """Take the cameras' new frames into the fusion."""
        for frame in rig.new_frames():
            self._frames[frame.camera] = frame
            if frame.camera in self.contract.cameras:  # fitted on the camera's thread
                image = frame.fitted if frame.fitted is not None else frame.image_rgb
                self.fusion.push(frame.camera, image, frame.captured_s)

    def _on_frame(self, camera: str) -> None:
        """A camera kept a new frame (on the event loop, between ticks): fused at once, and
        the driving camera's may start the next plan (PolicyRunner.on_frame)."""
        rig, runner = self._rig, self._runner
        if rig is None:
            return
        self._fuse(rig)  # a tick may have taken it already: it still paces the plans
        if (camera == self.contract.cameras[0] and runner is not None
                and self.safety.mode in POLICY_MODES):
            runner.on_frame(self._clock())

    def _policy_tick(self, now_s: float) -> None:
        runner = self._runner
        if runner is None or self.safety.mode not in POLICY_MODES:
            self._last_step = None
            return
        step = runner.tick(now_s)
        self._last_step = step
        faulty = runner.faulty
        if faulty is not None:
            # Bad outputs in a row: the model is not trusted to drive again until a
            # reload replaces it. Idle, not just a STOP: nobody should find the robot
            # waiting to drive off on its own.
            log.error("policy model faulty (%s): mode idle until a good model is reloaded",
                      faulty)
            self.safety.stop_autonomy(kind="model_faulty", reason=faulty, source="policy",
                                      now_s=now_s)
            self._last_step = None
            return
        # The step's action drives its track command; Safety decides what reaches the motors.
        command = self.contract.track_command(step.action)
        self.safety.policy_step(left_mm_s=command.left_mm_s, right_mm_s=command.right_mm_s,
                                now_s=now_s)

    def _update_safety(self, now_s: float) -> None:
        link = self._link
        assert link is not None
        state = link.state
        connected = link.connected and state is not None
        faults = state.faults if state is not None else Fault(0)
        stale = self.fusion.stale_reasons(now_s)
        failed = self._failed_parts()
        runner = self._runner
        if failed:
            ready, reason = False, "; ".join(failed)
        elif runner is None:
            ready, reason = False, f"no policy: {self._policy_error}"
        elif (faulty := runner.faulty) is not None:
            ready, reason = False, f"model faulty: {faulty}"
        elif (unready := runner.remote_unready) is not None and runner.backend == "remote":
            # "fallback": its model plans meanwhile
            ready, reason = False, f"remote policy not connected: {unready}"
        elif stale:
            ready, reason = False, "stale camera input: " + "; ".join(stale)
        else:
            ready, reason = True, None
        mcu_estop = state is not None and state.state == State.ESTOP
        self._arm.observe(link.arm_state, now_s)
        if not connected or mcu_estop or Fault.BATT_CRITICAL in faults:
            self._arm.forget()  # the MCU holds each servo where it is: not at its target
        if mcu_estop and not self._mcu_estop_seen and self.safety.mode != DriveMode.ESTOP:
            # The MCU's latch was set without us (before we started, or by another host):
            # say estop, not idle, and let the operator release it the usual way. On the
            # latch's edge only: after a release the MCU's next TELEMETRY may still say
            # ESTOP.
            log.warning("the MCU's e-stop is latched: mode estop until it is released "
                        "(MQTT cmd/estop {\"engaged\": false}, zima estop --release, the console)")
            self.safety.engage_estop(source="mcu", now_s=now_s)
        self._mcu_estop_seen = mcu_estop
        self.safety.update(
            now_s=now_s, link_up=connected, battery=_battery_level(faults),
            estop_latched_on_mcu=state is not None and state.state == State.ESTOP,
            policy_ready=ready, policy_reason=reason,
            battery_mv=state.telemetry.battery_mv if state is not None else None,
            battery_clear_mv=self._battery_limits[2] or None)

    def _drive(self, link: McuLink, decision: Decision, now_s: float) -> None:
        state = link.state
        if state is not None and state.state == State.ESTOP:
            return  # the MCU refuses DRIVE while its e-stop is latched; its tracks are stopped
        try:
            link.drive(decision.left_mm_s, decision.right_mm_s)
        except RefusedError as exc:
            self._drive_refusal = str(exc)
            self._log_refusal(str(exc), now_s)
        except LinkDownError:
            pass  # the link dropped between the check and the send; the MCU stops itself
        else:
            self._drive_refusal = None

    def _log_refusal(self, message: str, now_s: float) -> None:
        """Log a refused DRIVE once, then at most every 30 s with the count of repeats (a
        refusal that persists comes back every tick, 50 times a second)."""
        last = self._refusal_log
        if last is not None and last[0] == message and now_s - last[1] < 30.0:
            self._refusal_log = (message, last[1], last[2] + 1)
            return
        repeats = f" (and {last[2]} times since the last report)" if (
            last is not None and last[0] == message and last[2]) else ""
        log.warning("%s%s", message, repeats)
        self._refusal_log = (message, now_s, 0)

    def _publish_transitions(self) -> None:
        for transition in self.safety.take_transitions():
            log.info("mode %s -> %s (%s, owner %s, by %s)", transition.from_mode.value,
                     transition.to_mode.value, transition.kind, transition.owner,
                     transition.source)
            if self._telemetry is not None:
                self._telemetry.post("mode", self._mode_record().to_json())
            recorder = self._recorder
            if (transition.kind in EVENT_KINDS and recorder is not None
                    and recorder.status.recording):
                recorder.mark_event(transition.kind, now_s=transition.now_s)

    def _record_step(self, now_s: float, decision: Decision) -> None:
        recorder = self._recorder
        if recorder is None or not recorder.status.recording:
            return
        if any(cam not in self._frames for cam in self.contract.cameras):
            return  # nothing to record until every camera has delivered
        step = self._last_step
        if step is not None and decision.owner == "policy":
            action = step.action
        else:
            action = nearest_action(decision.left_mm_s, decision.right_mm_s)
        frames = {cam: self._frames[cam] for cam in self.contract.cameras}
        recorder.add_step(
            images={cam: f.fitted if f.fitted is not None else f.image_rgb
                    for cam, f in frames.items()},
            captured_s={cam: f.captured_s for cam, f in frames.items()},
            action=int(action), telemetry=self._step_telemetry(), now_s=now_s)

    def _step_telemetry(self) -> dict[str, float]:
        state = self._link.state if self._link is not None else None
        if state is None:
            return {}
        t = state.telemetry
        return {"battery_mv": float(t.battery_mv), "track_left_mm_s": float(t.vel_left_mm_s),
                "track_right_mm_s": float(t.vel_right_mm_s)}

    # ---- operator commands ----------------------------------------------------------------
    async def _command_loop(self, telemetry: Telemetry) -> None:
        while True:
            command = await telemetry.commands.get()
            error = await self.handle(command, source="mqtt")
            telemetry.answer(command, error)  # cmd/result: the outcome, with its request_id
            if error is not None:
                log.warning("mqtt command %s refused: %s", type(command).__name__, error)
                telemetry.post("mode", self._mode_record(refused=error).to_json())

    def teleop_tracks(self, linear_m_per_s: float, angular_rad_per_s: float) -> tuple[int, int]:
        """Track speeds (mm/s) for a body velocity (skid steer, the configured gauge)."""
        half = angular_rad_per_s * self.config.track_gauge_m / 2
        return (round((linear_m_per_s - half) * 1000), round((linear_m_per_s + half) * 1000))

    def operator_seen(self, source: str) -> None:
        """An operator was heard (a heartbeat or any command): autonomy may go on
        (``[safety] operator_timeout_s``)."""
        self.safety.operator_seen(source=source, now_s=self._clock())

    async def handle(self, command: Command, source: str) -> str | None:
        """Carry out an operator command; ``None`` when done, else why it was refused.

        Never raises: a failure inside a command is logged with its traceback and
        returned as the refusal, so no command can take down the part that asked.
        """
        try:
            return await self._handle(command, source)
        except Exception as exc:
            log.exception("command %s from %s failed", type(command).__name__, source)
            return f"internal error: {type(exc).__name__}: {exc}"[:300]

    async def _handle(self, command: Command, source: str) -> str | None:  # noqa: PLR0912 - a case each
        now_s = self._clock()
        self.safety.operator_seen(source=source, now_s=now_s)
        if self._link is not None:
            self._update_safety(now_s)  # judge the command on the newest MCU state
        try:
            match command:
                case HeartbeatCommand():
                    pass  # operator_seen above is all it does
                case EstopCommand(engaged=True):
                    await self.engage_estop(source)
                case EstopCommand(engaged=False):
                    await self.release_estop(source)
                case ModeCommand(mode=DriveMode.IDLE):
                    await self._clear_battery_latch()
                    self._update_safety(now_s)
                    self.safety.request_mode(DriveMode.IDLE, source=source, now_s=now_s)
                case ModeCommand(mode=mode):
                    self.safety.request_mode(mode, source=source, now_s=now_s)
                case TeleopCommand(linear_m_per_s=v, angular_rad_per_s=w):
                    left, right = self.teleop_tracks(v, w)
                    self.safety.teleop(left_mm_s=left, right_mm_s=right, client=source,
                                       now_s=now_s)
                case ReloadCommand(target="policy"):
                    await self.reload_policy()
                case ReloadCommand(target=target):
                    return f"reloading the {target} needs a restart of the service"
                case RecordCommand():
                    await self._record_command(command, now_s)
                case LeaseCommand(action=action):
                    self._lease(action, source, now_s)
                case HandBackCommand():
                    self.safety.hand_back(client=source, now_s=now_s)
                case ArmCommand(targets_ddeg=targets):
                    await self._arm_move(self._arm.joints(targets), source, now_s)
                case ArmToolCommand(tool=tool, gripper_m=gripper_m):
                    await self._arm_tool(tool, gripper_m, source, now_s)
                case ArmPoseCommand(pose=pose):
                    await self._arm_move(self._arm.pose(pose), source, now_s)
                case ArmJogCommand():
                    step = self.safety.arm_jog(velocity=command.velocity, client=source,
                                               now_s=now_s)
                    if any(step):  # the first jog of a press only starts the clock
                        await self._arm_move(self._arm.jog(step), source, now_s)
                case _:
                    return f"unknown command {command!r}"
        except (SafetyError, ModelError, RecorderError, LinkError, ValueError) as exc:
            return str(exc)
        return None

    def _lease(self, action: str, client: str, now_s: float) -> None:
        if action == "take":
            self.safety.acquire_lease(client=client, now_s=now_s)
        elif action == "give":
            self.safety.release_lease(client=client, now_s=now_s)
        elif (lease := self.safety.lease) is not None and lease.client == client:
            self.safety.renew_lease(client=client, now_s=now_s)  # renew: only one's own

    async def _record_command(self, command: RecordCommand, now_s: float) -> None:
        recorder = self._require_recorder()
        if command.action == "start":
            mode = self.safety.mode
            if mode not in DRIVING_MODES:
                raise RecorderError(f"recording needs a driving mode, not {mode.value}")
            recorder.start(source=mode.value, now_s=now_s)
        elif command.action == "stop":
            await recorder.stop(outcome=command.outcome or "aborted")
        else:
            await recorder.discard()

    async def _clear_battery_latch(self) -> None:
        """Clear the MCU's BATT_CRITICAL latch when the pack is back above its clear
        threshold (an operator's request for idle is how a flat battery is acknowledged).
        Below it the latch stays, and Safety's refusal says what to do."""
        link = self._link
        state = link.state if link is not None else None
        if link is None or state is None or Fault.BATT_CRITICAL not in state.faults:
            return
        clear_mv = self._battery_limits[2]
        if clear_mv and state.telemetry.battery_mv <= clear_mv:
            raise SafetyError(f"battery critical, latched by the MCU: the pack is at "
                              f"{state.telemetry.battery_mv} mV; charge it above {clear_mv} mV, "
                              "then ask for idle again to clear the latch")
        try:
            await link.clear(Fault.BATT_CRITICAL)
        except RefusedError as exc:
            raise SafetyError(f"the MCU kept its battery-critical latch ({exc}): the pack is "
                              f"not yet above {clear_mv} mV") from exc
        log.info("battery critical latch cleared at %d mV", state.telemetry.battery_mv)
        # Safety judges the battery from the MCU's faults: wait for a TELEMETRY without it.
        await self._mcu_shows(link, lambda st: Fault.BATT_CRITICAL not in st.faults)

    async def _mcu_shows(self, link: McuLink, predicate: Callable[[McuState], bool]) -> None:
        """Wait (a few TELEMETRY periods at most) until the MCU's state shows a CLEAR."""
        with contextlib.suppress(TimeoutError, LinkError):
            await link.wait_for(predicate, self.config.link.telemetry_timeout_s * 4)

    def _require_recorder(self) -> Recorder:
        if self._recorder is None:
            raise RecorderError("the recorder is not running")
        return self._recorder

    async def _arm_move(self, plan: ArmPlan, client: str, now_s: float) -> None:
        """Send an arm command's targets from the client that owns the robot: Safety
        clamps them, the MCU slews the servos at its own limits; they are the present
        pose from now on."""
        allowed = self.safety.teleop_arm(targets_ddeg=plan.targets_ddeg, client=client,
                                         now_s=now_s)
        await self.link.arm(allowed)
        self._arm.sent(plan, allowed)

    async def _arm_tool(self, tool: ToolTarget | None, gripper_m: float | None, client: str,
                        now_s: float) -> None:
        """A tool pose through IK. Safety is asked first (a refused client's target is not
        solved); the plan runs on a worker thread: the nearest-pose search of a refusal
        takes tens of milliseconds, which the control loop must not wait for."""
        self.safety.teleop_arm(targets_ddeg=[None] * ARM_TARGETS, client=client,
                               now_s=now_s)
        plan = await asyncio.to_thread(self._arm.tool, tool, gripper_m)
        await self._arm_move(plan, client, self._clock())

    def frames(self) -> dict[str, Frame]:
        """The newest frame of every camera (the web console's live views)."""
        return dict(self._frames)

    @property
    def recorder(self) -> Recorder | None:
        return self._recorder

    async def engage_estop(self, source: str) -> None:
        """Stop now, from any mode: Safety first (the next tick sends zeros), then the
        MCU's own latch, which holds even if this process dies."""
        self.safety.engage_estop(source=source, now_s=self._clock())
        if self._link is not None:
            try:
                await self._link.estop()
            except LinkError as exc:  # the MCU's watchdog stops the tracks without us
                log.error("could not latch the MCU's e-stop: %s", exc)

    async def release_estop(self, source: str) -> None:
        """Release the e-stop into IDLE (never straight back to driving)."""
        link = self._link
        if link is not None and link.connected:
            await link.clear(Fault.ESTOP)
            # A TELEMETRY sent before the CLEAR may still say ESTOP: not a new latch.
            self._mcu_estop_seen = True
            await self._mcu_shows(link, lambda st: st.state != State.ESTOP)
        self.safety.release_estop(source=source, now_s=self._clock())

    # ---- telemetry --------------------------------------------------------------------------
    def loop_stats(self) -> LoopStats:
        return self._timer.stats()

    def telemetry_record(self, stream: str) -> Mapping[str, object] | None:
        """The JSON form of the record the runtime publishes on ``telemetry/<stream>`` now
        (None: nothing to send yet); what MQTT, the console and tests read."""
        build = self._records().get(stream)
        if build is None:
            raise KeyError(f"no telemetry stream {stream!r}")
        record = build()
        return None if record is None else record.to_json()

    def status(self) -> RobotStatus:
        """The robot now, as one record: every stream's record (zima.onboard.api)."""
        lease = self.safety.lease
        return RobotStatus(
            mode=self._mode_record(), battery=self._battery_record(),
            odometry=self._odometry_record(), link=self._link_record(),
            faults=self._faults_record(), loop=self._loop_record(),
            policy=self._policy_record(), cameras=self._cameras_record(),
            tracks=self._tracks_record(), recorder=self._recorder_record(),
            lease_holder=None if lease is None else lease.client,
            camera_names=tuple(camera.name for camera in self.config.cameras),
            model_sha256=self.model_sha256, arm=self._arm_record())

    def _arm_record(self) -> ArmRecord | None:
        """The arm as the MCU's latest ARM_STATE has it (its age: since the control loop
        first saw it, within a tick of its arrival), and the targets last sent."""
        servo, seen_s = self._arm.servo_ddeg, self._arm.servo_seen_s
        if servo is None or seen_s is None:
            return None
        joints = [j.servo.value_from_ddeg(d) for j, d in zip(ARM.joints, servo[:-1], strict=True)]
        pose = ARM.tool_pose(joints)
        link = self._link
        age_s = round(max(self._clock() - seen_s, 0.0), 3)
        return ArmRecord(
            servo_ddeg=list(servo), joints_rad=[round(q, 5) for q in joints],
            tool_xyz_m=[round(v, 5) for v in (pose.x, pose.y, pose.z)],
            tool_pitch_rad=round(pose.pitch, 5), tool_roll_rad=round(pose.roll, 5),
            gripper_m=round(gripper_opening_m(ARM.gripper.servo.value_from_ddeg(servo[-1])), 5),
            commanded_ddeg=list(self._arm.commanded_ddeg), age_s=age_s,
            stale=(link is None or not link.connected
                   or age_s > self.config.link.telemetry_timeout_s))

    def _tracks_record(self) -> TracksRecord | None:
        d = self._last_decision
        return None if d is None else TracksRecord(left_mm_s=d.left_mm_s,
                                                   right_mm_s=d.right_mm_s, reason=d.reason)

    def _recorder_record(self) -> RecorderRecord | None:
        if self._recorder is None:
            return None
        st = self._recorder.status
        return RecorderRecord(recording=st.recording, episode=st.episode, steps=st.steps,
                              episodes_written=st.episodes_written,
                              action_counts=dict(st.action_counts), error=st.error,
                              dropped_steps=st.dropped_steps)

    def _mode_record(self, refused: str | None = None) -> ModeRecord:
        decision, mode = self._last_decision, self.safety.mode
        # The last tick's reason while it is of this mode; else (a change since) the mode's.
        reason = (decision.reason if decision is not None and decision.mode == mode
                  else self.safety.mode_reason)
        return ModeRecord(mode=mode, owner=self.safety.owner, reason=reason, refused=refused)

    def _mcu_age(self, state: McuState) -> tuple[float, bool]:
        """How old a TELEMETRY's data is: ``age_s`` since its bytes arrived, and ``stale``
        when the link is down or the MCU has been silent past the link's timeout (the
        values are then the last ones known, not the present)."""
        link = self._link
        age_s = max(self._clock() - state.received_s, 0.0)
        stale = (link is None or not link.connected
                 or age_s > self.config.link.telemetry_timeout_s)
        return round(age_s, 3), stale

    def _battery_record(self) -> BatteryRecord | None:
        state = self._link.state if self._link is not None else None
        if state is None or state.telemetry.battery_mv == 0:
            return None  # 0: the MCU has not filtered an ADC sample yet (just reset)
        low, critical, clear = self._battery_limits
        latched = Fault.BATT_CRITICAL in state.faults
        age_s, stale = self._mcu_age(state)
        return BatteryRecord(
            battery_mv=state.telemetry.battery_mv, level=_battery_level(state.faults),
            low_mv=low, critical_mv=critical, latched=latched, clear_mv=clear,
            advice=_battery_advice(state.telemetry.battery_mv, latched, clear),
            age_s=age_s, stale=stale)

    def _odometry_record(self) -> OdometryRecord | None:
        state = self._link.state if self._link is not None else None
        if state is None:
            return None
        t = state.telemetry
        age_s, stale = self._mcu_age(state)
        return OdometryRecord(
            left_ticks=t.enc_left_ticks, right_ticks=t.enc_right_ticks,
            vel_left_mm_s=t.vel_left_mm_s, vel_right_mm_s=t.vel_right_mm_s,
            target_left_mm_s=t.target_left_mm_s, target_right_mm_s=t.target_right_mm_s,
            out_left_permille=t.out_left_permille, out_right_permille=t.out_right_permille,
            age_s=age_s, stale=stale)

    def _link_record(self) -> LinkRecord | None:
        if self._link is None:
            return None
        status, state = self._link.status, self._link.state
        info = status.info
        return LinkRecord(
            connected=status.connected, reason=status.reason,
            telemetry_hz=state.health.telemetry_hz if state else 0.0,
            rx_rejected=state.health.rx_rejected if state else 0,
            rx_dropped=state.health.rx_dropped if state else 0,
            connects=status.connects,
            firmware=(f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}+{info.build_id:08x}"
                      if info is not None else None),
            since_s=round(max(self._clock() - status.since_s, 0.0), 3),
            age_s=(None if state is None
                   else round(max(self._clock() - state.received_s, 0.0), 3)))

    def _faults_record(self) -> FaultsRecord:
        state = self._link.state if self._link is not None else None
        parts: dict[str, object] = {name: h.as_json() for name, h in self._parts.items()}
        telemetry = self._telemetry
        if telemetry is not None:  # MQTT restarts its own session (zima.onboard.telemetry)
            c = telemetry.counters
            parts["mqtt"] = {"state": "running" if telemetry.broker.value.connected
                             else "reconnecting", "failures": c.failures,
                             "last_error": c.last_failure, "dropped": c.dropped,
                             "expired": c.expired, "provider_errors": c.provider_errors}
        if state is None:
            return FaultsRecord(active=[], mcu_state=None, parts=parts, age_s=None,
                                stale=True)
        mcu_state = state.state
        age_s, stale = self._mcu_age(state)
        return FaultsRecord(
            active=[f.name for f in Fault if f in state.faults and f.name],
            mcu_state=mcu_state.name if isinstance(mcu_state, State) else str(mcu_state),
            parts=parts, age_s=age_s, stale=stale)

    def _loop_record(self) -> LoopRecord:
        s = self.loop_stats()
        return LoopRecord(rate_hz=s.rate_hz, period_p50_ms=s.period_p50_ms,
                          period_p99_ms=s.period_p99_ms, jitter_p50_ms=s.jitter_p50_ms,
                          jitter_p99_ms=s.jitter_p99_ms, jitter_max_ms=s.jitter_max_ms,
                          overruns=s.overruns)

    def _policy_record(self) -> PolicyRecord:
        runner = self._runner
        if runner is None:
            return PolicyRecord(
                model_hash=None, model_path=None, latency_ms=None, latency_max_ms=None,
                plans=0, reloads=0, reload_error=self._policy_error,
                reload_failures=self._policy_failures, bad_outputs=0, bad_in_row=0,
                last_bad_output=None, faulty=None, obs_age_ms=None, obs_age_p50_ms=None,
                obs_age_p99_ms=None, lead_ms=None, dry_ticks=0, stale_ticks=0, stretches=0,
                backend=self.config.policy.backend, connected=None, round_trip_ms=None,
                round_trip_p99_ms=None, reconnects=0, remote_losses=0, remote_error=None)
        st = runner.status

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1e3, 2)

        ema = st.latency_ema_s
        return PolicyRecord(
            model_hash=st.model_sha256 or None,  # remote: "" until the server first answers
            model_path=(str(self.config.policy.model_path) if st.backend == "local"
                        else self.config.policy.server),
            latency_ms=None if ema is None else ema * 1e3,
            latency_max_ms=(st.latency_max_s * 1e3 if math.isfinite(st.latency_max_s)
                            else None),
            plans=st.plans, reloads=st.reloads, reload_error=st.reload_error,
            reload_failures=st.reload_failures, bad_outputs=st.bad_outputs,
            bad_in_row=st.bad_in_row, last_bad_output=st.last_bad_output, faulty=st.faulty,
            obs_age_ms=ms(st.obs_age_s), obs_age_p50_ms=ms(st.obs_age_p50_s),
            obs_age_p99_ms=ms(st.obs_age_p99_s), lead_ms=ms(st.lead_s),
            dry_ticks=st.dry_ticks, stale_ticks=st.stale_ticks, stretches=st.stretches,
            backend=st.backend,
            connected=st.connected, round_trip_ms=ms(st.round_trip_s),
            round_trip_p99_ms=ms(st.round_trip_p99_s), reconnects=st.reconnects,
            remote_losses=st.losses, remote_error=st.remote_error)

    def _cameras_record(self) -> CamerasRecord | None:
        if self._rig is None:
            return None
        return CamerasRecord({
            name: CameraRecord(state=st.state.value, stale=st.stale, frames=st.frames,
                               failures=st.failures, age_s=st.age_s, error=st.error)
            for name, st in self._rig.status(self._clock()).items()})

    def _records(self) -> dict[str, Callable[[], Record | None]]:
        """telemetry/<stream> -> the method that builds its record now."""
        return {"battery": self._battery_record, "odometry": self._odometry_record,
                "mode": self._mode_record, "link": self._link_record,
                "faults": self._faults_record, "loop": self._loop_record,
                "policy": self._policy_record, "cameras": self._cameras_record,
                "arm": self._arm_record}

    def _providers(self) -> Mapping[str, Callable[[], Mapping[str, object] | None]]:
        """The streams configured in ``[mqtt.rates_hz]``, as Telemetry's providers."""
        rates = self.config.mqtt.broker.rates_hz
        return {name: functools.partial(self.telemetry_record, name)
                for name in self._records() if name in rates}

    def _metadata(self) -> dict[str, str]:
        return {"robot_id": self.config.robot_id, "software": self._software,
                "model_sha256": self.model_sha256 or ""}
