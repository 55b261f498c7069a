"""``Runtime``: the robot computer's service, every onboard part in one asyncio process.

``zima onboard run --config FILE`` builds one from :mod:`zima.onboard.config` and runs it
until SIGTERM (systemd's stop) or SIGINT::

    runtime = Runtime(load_config(Path("/etc/zima/onboard.toml")))
    await runtime.run(stop_event)

What runs, and who may touch the motors:

- **The control loop** (``control_hz``, 50 Hz) is the only caller of ``McuLink.drive``:
  each tick it feeds new camera frames to the fusion, ticks the policy at the contract's
  rate (10 Hz) while the policy may drive, tells :class:`~zima.onboard.safety.Safety` what
  it knows (link, battery, e-stop, stale inputs) and sends what ``Safety.decide`` returns.
  So there is exactly one owner of the tracks at any time, chosen by ``Safety``, and every
  path to them (teleop, policy) has the timeout ``Safety`` enforces; beneath it, the MCU's
  own 250 ms command watchdog stops the tracks if this loop stalls or the link drops.
- **Inference** runs on the policy runner's worker thread; the loop never waits for it.
- **Operator commands** (MQTT ``cmd/*``, the web console) go through :meth:`Runtime.handle`,
  which asks ``Safety``; none of them writes to the MCU except e-stop, which also latches
  the MCU's own e-stop (it works from any mode, even with the policy in the middle of a
  chunk).
- **Telemetry** (MQTT, optional: a dead broker never disturbs the loop), the **recorder**
  (HDF5 episodes on a worker thread; a full disk stops recording, not driving) and the
  **systemd watchdog** (pinged only while the control loop is ticking) hang off the loop.

Start-up fails fast (a ``RuntimeStartError`` naming the part) when the MCU's port or
firmware is wrong or a camera cannot be opened; a missing or refused policy model is not
fatal: the robot starts without one, refuses autonomous modes and says why, and a later
``reload`` can bring one in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zima.contract import DEFAULT, Contract, nearest_action
from zima.onboard.camera import CameraRig, Capture, open_capture
from zima.onboard.camera_config import CameraConfig, CameraError, Frame
from zima.onboard.config import RuntimeConfig
from zima.onboard.fusion import FrameFusion
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkDownError, LinkError, RefusedError
from zima.onboard.mqtt_config import (
    Command,
    EstopCommand,
    ModeCommand,
    RecordCommand,
    ReloadCommand,
    TeleopCommand,
)
from zima.onboard.policy import ModelError
from zima.onboard.policy_runner import PlanTrace, PolicyRunner, Step
from zima.onboard.recorder import EVENT_KINDS, Recorder, RecorderError
from zima.onboard.safety import BatteryLevel, Decision, DriveMode, Safety, SafetyError
from zima.onboard.sdnotify import Notifier, watchdog_loop
from zima.onboard.telemetry import Telemetry
from zima.onboard.web import WebConsole, WebConsoleError, read_token
from zima.protocol import Fault, ParamId, State

__all__ = ["LoopStats", "Runtime", "RuntimeStartError"]

log = logging.getLogger("zima.onboard.runtime")

POLICY_MODES = (DriveMode.AUTONOMOUS, DriveMode.SUPERVISED)
# The loop is "alive" for the systemd watchdog while its last tick is this recent.
ALIVE_WITHIN_S = 1.0


class RuntimeStartError(Exception):
    """A part the robot cannot run without failed to start (the message names it)."""


@dataclass(frozen=True, slots=True)
class LoopStats:
    """The control loop's timing over its recent ticks (milliseconds)."""

    rate_hz: float
    period_p50_ms: float
    period_p99_ms: float
    jitter_p99_ms: float  # |period - nominal|, 99th percentile
    overruns: int  # ticks that started a whole period late (the schedule was reset)
    ticks: int


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
            overruns=self.overruns, ticks=self.ticks)


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
        self._timer = _LoopTimer(1.0 / config.control_hz)
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
        self._battery_limits = (0, 0)
        self._started = asyncio.Event()
        self._reloading = asyncio.Lock()

    # ---- lifetime -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start every part, run until ``stop`` is set (or a task fails), stop cleanly."""
        stop = stop or asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._notifier.ready()
            self._notifier.status("running")
            self._started.set()
            log.info("runtime up: mode %s, policy %s", self.safety.mode.value,
                     self._runner.model_sha256[:12] if self._runner else self._policy_error)
            async with asyncio.TaskGroup() as tasks:
                workers = [tasks.create_task(self._control_loop(), name="control-loop"),
                           tasks.create_task(watchdog_loop(self._notifier, self.alive),
                                             name="systemd-watchdog")]
                if self._telemetry is not None:
                    workers.append(tasks.create_task(
                        self._command_loop(self._telemetry), name="mqtt-commands"))
                await stop.wait()
                log.info("stopping")
                self._notifier.stopping()
                for worker in workers:
                    worker.cancel()
            # Leaving the stack closes an episode still recording as aborted (the recorder).

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
                CameraRig(cfg.cameras, clock=self._clock, opener=self._opener,
                          fit_to=(self.contract.image_height, self.contract.image_width)))
        except CameraError as exc:
            raise RuntimeStartError(f"cameras: {exc}") from exc
        stack.push_async_callback(self._policy_stack.aclose)
        await self._start_policy(cfg.policy.model_path)
        if cfg.mqtt.enabled:
            self._telemetry = await stack.enter_async_context(
                Telemetry(cfg.broker_config(), self._providers()))
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
        link = self._link
        if link is not None and link.connected:
            with contextlib.suppress(LinkError):
                link.drive(0, 0)

    async def _read_battery_limits(self) -> None:
        assert self._link is not None
        try:
            low = await self._link.get_param(ParamId.batt_low_mv)
            critical = await self._link.get_param(ParamId.batt_crit_mv)
        except LinkError as exc:
            log.warning("cannot read the MCU's battery limits: %s", exc)
            return
        self._battery_limits = (round(low), round(critical))

    # ---- the policy ---------------------------------------------------------------------
    async def _start_policy(self, path: Path) -> PolicyRunner | None:
        if not path.exists():
            self._policy_error = f"no model at {path}"
            self._policy_failures += 1
            log.warning("policy: %s; autonomous modes are refused until one is deployed", path)
            return None
        runner = PolicyRunner(self.config.policy, self.contract, self.fusion, clock=self._clock,
                              on_plan=self._on_plan)
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
        period_s = 1.0 / self.config.control_hz
        policy_period_s = 1.0 / self.contract.control_hz
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        next_policy_s = self._clock()
        while True:
            now_s = self._clock()
            self._timer.tick(now_s)
            for frame in rig.new_frames():
                self._frames[frame.camera] = frame
                if frame.camera in self.contract.cameras:  # fitted on the camera's thread
                    image = frame.fitted if frame.fitted is not None else frame.image_rgb
                    self.fusion.push(frame.camera, image, frame.captured_s)
            policy_due = now_s >= next_policy_s
            if policy_due:
                next_policy_s = max(next_policy_s + policy_period_s, now_s)
                self._policy_tick(now_s)
            self._update_safety(now_s)
            decision = self.safety.decide(now_s=now_s)
            self._last_decision = decision
            if link.connected:
                self._drive(link, decision)
            self._publish_transitions()
            if policy_due:
                self._record_step(now_s, decision)
            self._last_tick_s = now_s
            next_tick += period_s
            delay = next_tick - loop.time()
            if delay < -period_s:  # a whole period late: start the schedule afresh
                self._timer.overruns += 1
                next_tick = loop.time()
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))

    def _policy_tick(self, now_s: float) -> None:
        runner = self._runner
        if runner is None or self.safety.mode not in POLICY_MODES:
            self._last_step = None
            return
        step = runner.tick(now_s)
        self._last_step = step
        # A continuous policy's step carries its own (clipped) track command; a discrete
        # one's is the action's. Either way Safety decides what reaches the motors.
        command = (step.tracks if step.tracks is not None
                   else self.contract.track_command(step.action))
        self.safety.policy_step(left_mm_s=command.left_mm_s, right_mm_s=command.right_mm_s,
                                now_s=now_s)

    def _update_safety(self, now_s: float) -> None:
        link = self._link
        assert link is not None
        state = link.state
        connected = link.connected and state is not None
        faults = state.faults if state is not None else Fault(0)
        stale = self.fusion.stale_reasons(now_s)
        if self._runner is None:
            ready, reason = False, f"no policy: {self._policy_error}"
        elif stale:
            ready, reason = False, "stale camera input: " + "; ".join(stale)
        else:
            ready, reason = True, None
        self.safety.update(
            now_s=now_s, link_up=connected, battery=_battery_level(faults),
            estop_latched_on_mcu=state is not None and state.state == State.ESTOP,
            policy_ready=ready, policy_reason=reason)

    def _drive(self, link: McuLink, decision: Decision) -> None:
        try:
            link.drive(decision.left_mm_s, decision.right_mm_s)
        except RefusedError as exc:
            if str(exc) != self._drive_refusal:
                log.warning("%s", exc)
            self._drive_refusal = str(exc)
        except LinkDownError:
            pass  # the link dropped between the check and the send; the MCU stops itself
        else:
            self._drive_refusal = None

    def _publish_transitions(self) -> None:
        for transition in self.safety.take_transitions():
            log.info("mode %s -> %s (%s, owner %s, by %s)", transition.from_mode.value,
                     transition.to_mode.value, transition.kind, transition.owner,
                     transition.source)
            if self._telemetry is not None:
                self._telemetry.post("mode", self._mode_values())
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
            if error is not None:
                log.warning("mqtt command %s refused: %s", type(command).__name__, error)
                telemetry.post("mode", {**self._mode_values(), "refused": error})

    def teleop_tracks(self, linear_m_per_s: float, angular_rad_per_s: float) -> tuple[int, int]:
        """Track speeds (mm/s) for a body velocity (skid steer, the configured gauge)."""
        half = angular_rad_per_s * self.config.track_gauge_m / 2
        return (round((linear_m_per_s - half) * 1000), round((linear_m_per_s + half) * 1000))

    async def handle(self, command: Command, source: str) -> str | None:
        """Carry out an operator command; ``None`` when done, else why it was refused."""
        now_s = self._clock()
        if self._link is not None:
            self._update_safety(now_s)  # judge the command on the newest MCU state
        try:
            match command:
                case EstopCommand(engaged=True):
                    await self.engage_estop(source)
                case EstopCommand(engaged=False):
                    await self.release_estop(source)
                case ModeCommand(mode=mode):
                    self.safety.request_mode(DriveMode(mode.value), source=source, now_s=now_s)
                case TeleopCommand(linear_m_per_s=v, angular_rad_per_s=w):
                    left, right = self.teleop_tracks(v, w)
                    self.safety.teleop(left_mm_s=left, right_mm_s=right, client=source,
                                       now_s=now_s)
                case ReloadCommand(target="policy"):
                    await self.reload_policy()
                case ReloadCommand(target=target):
                    return f"reloading the {target} needs a restart of the service"
                case RecordCommand(action="start"):
                    self._require_recorder().start(source=self.safety.mode.value, now_s=now_s)
                case RecordCommand(action="stop", outcome=outcome):
                    await self._require_recorder().stop(outcome=outcome or "aborted")
                case RecordCommand(action="discard"):
                    await self._require_recorder().discard()
                case _:
                    return f"unknown command {command!r}"
        except (SafetyError, ModelError, RecorderError, LinkError, ValueError) as exc:
            return str(exc)
        return None

    def _require_recorder(self) -> Recorder:
        if self._recorder is None:
            raise RecorderError("the recorder is not running")
        return self._recorder

    async def teleop_arm(self, targets_ddeg: list[int | None], client: str) -> None:
        """Arm joint targets (0.1 deg, None leaves a joint) from the client that owns the
        robot; Safety clamps them, the MCU slews the servos at its own limits."""
        allowed = self.safety.teleop_arm(targets_ddeg=targets_ddeg, client=client,
                                         now_s=self._clock())
        await self.link.arm(allowed)

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
        if self._link is not None and self._link.connected:
            await self._link.clear(Fault.ESTOP)
        self.safety.release_estop(source=source, now_s=self._clock())

    # ---- telemetry --------------------------------------------------------------------------
    def loop_stats(self) -> LoopStats:
        return self._timer.stats()

    def _mode_values(self) -> dict[str, object]:
        decision = self._last_decision
        return {"mode": self.safety.mode.value, "owner": self.safety.owner,
                "reason": decision.reason if decision is not None else None}

    def _providers(self) -> Mapping[str, Callable[[], Mapping[str, object] | None]]:
        def battery() -> Mapping[str, object] | None:
            state = self._link.state if self._link is not None else None
            if state is None or state.telemetry.battery_mv == 0:
                return None  # 0: the MCU has not filtered an ADC sample yet (just reset)
            low, critical = self._battery_limits
            return {"battery_mv": state.telemetry.battery_mv,
                    "level": _battery_level(state.faults).value,
                    "low_mv": low, "critical_mv": critical}

        def odometry() -> Mapping[str, object] | None:
            state = self._link.state if self._link is not None else None
            if state is None:
                return None
            t = state.telemetry
            return {"left_ticks": t.enc_left_ticks, "right_ticks": t.enc_right_ticks,
                    "vel_left_mm_s": t.vel_left_mm_s, "vel_right_mm_s": t.vel_right_mm_s,
                    "target_left_mm_s": t.target_left_mm_s,
                    "target_right_mm_s": t.target_right_mm_s,
                    "out_left_permille": t.out_left_permille,
                    "out_right_permille": t.out_right_permille}

        def link() -> Mapping[str, object] | None:
            if self._link is None:
                return None
            status, state = self._link.status, self._link.state
            info = status.info
            return {"connected": status.connected, "reason": status.reason,
                    "telemetry_hz": state.health.telemetry_hz if state else 0.0,
                    "rx_rejected": state.health.rx_rejected if state else 0,
                    "rx_dropped": state.health.rx_dropped if state else 0,
                    "connects": status.connects,
                    "firmware": (f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}"
                                 f"+{info.build_id:08x}") if info is not None else None}

        def faults() -> Mapping[str, object] | None:
            state = self._link.state if self._link is not None else None
            if state is None:
                return None
            mcu_state = state.state
            return {"active": [f.name for f in Fault if f in state.faults and f.name],
                    "mcu_state": mcu_state.name if isinstance(mcu_state, State) else mcu_state}

        def loop() -> Mapping[str, object]:
            s = self.loop_stats()
            return {"rate_hz": s.rate_hz, "period_p50_ms": s.period_p50_ms,
                    "period_p99_ms": s.period_p99_ms, "jitter_p99_ms": s.jitter_p99_ms,
                    "overruns": s.overruns}

        def policy() -> Mapping[str, object]:
            runner = self._runner
            if runner is None:
                return {"model_hash": None, "model_path": None, "latency_ms": None,
                        "latency_max_ms": None, "plans": 0, "reloads": 0,
                        "reload_error": self._policy_error,
                        "reload_failures": self._policy_failures}
            st = runner.status
            ema = st.latency_ema_s
            return {"model_hash": st.model_sha256,
                    "model_path": str(self.config.policy.model_path),
                    "latency_ms": None if ema is None else ema * 1e3,
                    "latency_max_ms": st.latency_max_s * 1e3 if math.isfinite(
                        st.latency_max_s) else None,
                    "plans": st.plans, "reloads": st.reloads, "reload_error": st.reload_error,
                    "reload_failures": st.reload_failures}

        def cameras() -> Mapping[str, object] | None:
            if self._rig is None:
                return None
            return {name: {"state": st.state.value, "stale": st.stale, "frames": st.frames,
                           "failures": st.failures, "age_s": st.age_s, "error": st.error}
                    for name, st in self._rig.status(self._clock()).items()}

        providers = {"battery": battery, "odometry": odometry, "mode": self._mode_values,
                     "link": link, "faults": faults, "loop": loop, "policy": policy,
                     "cameras": cameras}
        rates = self.config.mqtt.broker.rates_hz
        return {name: p for name, p in providers.items() if name in rates}

    def _metadata(self) -> dict[str, str]:
        return {"robot_id": self.config.robot_id, "software": self._software,
                "model_sha256": self.model_sha256 or ""}
