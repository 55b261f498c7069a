"""Hardware in the loop: the onboard runtime drives the MuJoCo robot through the real firmware.

`zima sim run` (and ``make demo``) wire every real part together, in real time::

    runtime (asyncio)  --serial pty-->  firmware on the emulated board (simavr)
        ^  cameras                           | motor model's track speeds, measured servo
        |                                    v pulses (state lines)
    SimCapture  <--rendered frames--  SimWorld thread: MuJoCo tracks and arm
                                             | wheel joint angles -> encoder counts
                                             +--> board.set_wheels (quadrature edges)

One concern a module, in reading order:

- ``hil_config``: :class:`~zima.sim.hil_config.HilConfig` (and the emulated board it asks
  for, battery included) and the errors;
- ``hil_world``: :class:`~zima.sim.hil_world.SimWorld`, MuJoCo on its own thread following
  the emulator's state lines (its motor model and battery: one model, the emulator's);
- ``hil_arm``: the arm's joints follow the servo pulses the emulator measures, through the
  arm's calibration (:mod:`zima.onboard.kinematics`);
- ``hil_cameras``: the runtime's cameras fed from the world's renders;
- ``hil_telemetry``: the MCU's TELEMETRY sampled during the run, and its plot;
- this module: :class:`HilSession` starts board, world and runtime (an async context
  manager, stopped in reverse order), a local Mosquitto for telemetry when one starts
  (:mod:`zima.mosquitto`); :func:`run_episodes` runs seeded episodes (AUTONOMOUS until an
  outcome, IDLE, reset with the next seed) and logs the MCU's TELEMETRY for the plot.

Its child processes (Mosquitto, the emulator) die with it, even when it is killed, and its
temporary files live in a :class:`~zima.sim.run_folder.RunFolder` that the next session
removes if this one could not (:mod:`zima.sim.run_folder`). Start-up failures are
:class:`~zima.sim.hil_config.HilStartError` with what to do (``make firmware``, a model
path); the orchestration itself never prints: it reports through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from zima.contract import DEFAULT, Contract
from zima.emulator import BINARY_ENV, FIRMWARE_ENV, EmulatedBoard, EmulatorError
from zima.episodes import Outcome
from zima.mosquitto import Mosquitto, find_mosquitto, free_port, run_lines
from zima.onboard.camera_config import CameraConfig
from zima.onboard.commands import ModeCommand
from zima.onboard.config import MqttSection, RuntimeConfig
from zima.onboard.link_config import LinkConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.policy_runner import PolicyConfig
from zima.onboard.realtime import RealtimeConfig
from zima.onboard.recorder import RecorderConfig
from zima.onboard.runtime import Runtime, RuntimeStartError
from zima.onboard.safety import DriveMode, SafetyConfig
from zima.onboard.web import WebConfig, read_token
from zima.sim.hil_cameras import SOURCE_PREFIX, FrameHub, sim_opener
from zima.sim.hil_config import HilConfig, HilError, HilStartError
from zima.sim.hil_telemetry import TelemetryLog
from zima.sim.hil_world import STOPPED_MM_S, SimWorld
from zima.sim.run_folder import RunFolder, die_with_parent

__all__ = ["HilEpisode", "HilSession", "run_episodes"]


@dataclass(frozen=True, slots=True)
class HilEpisode:
    """How one episode ended (times in emulated seconds)."""

    seed: int
    outcome: Outcome
    time_s: float
    wall_s: float
    reengaged: int = 0  # autonomy asked for again after the runtime dropped to IDLE


class HilSession:
    """Board, world and runtime, started in that order and stopped in reverse::

        async with HilSession(cfg, report=print) as hil:
            await hil.mode(DriveMode.AUTONOMOUS)
            hil.world.snapshot().pose
    """

    def __init__(self, cfg: HilConfig, report: Callable[[str], None] = lambda _m: None,
                 contract: Contract = DEFAULT) -> None:
        self.cfg, self.report, self.contract = cfg, report, contract
        self.hub = FrameHub()
        self.board = EmulatedBoard(cfg.board_config())
        self.world = SimWorld(self.board, self.hub, cfg, contract)
        self.telemetry = TelemetryLog()
        self.mqtt_port: int | None = None
        self.web_url: str | None = None  # the console's address (sign in with the token)
        self.web_token_file: Path | None = None  # the console's token
        self.run_folder: RunFolder | None = None  # this session's temporary files
        self._link_losses: int | None = None  # counted up to the runtime's stop
        self._stack = contextlib.AsyncExitStack()
        self._runtime: Runtime | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the session has not started")
        return self._runtime

    @property
    def link_losses(self) -> int:
        """Times the runtime lost its MCU link, up to the runtime's stop (closing the link
        at the end is no loss)."""
        if self._link_losses is not None:
            return self._link_losses
        return self.runtime.link.status.disconnects

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.cfg
        run = self.run_folder = RunFolder.create()  # and remove what a killed run left
        stack.callback(run.close)
        if run.removed_stale:
            self.report(f"removed what an earlier run left behind: "
                        f"{', '.join(map(str, run.removed_stale))}")
        for path, how, env in ((cfg.firmware, "make firmware", FIRMWARE_ENV),
                               (cfg.emulator, "make emulator", BINARY_ENV)):
            if not path.exists():
                raise HilStartError(f"{path} does not exist: build it with `{how}` (or set "
                                    f"{env} to where it is)")
        if cfg.drive == "policy" and not cfg.model_path.exists():
            raise HilStartError(f"no policy model at {cfg.model_path}")
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        mqtt = await self._start_mqtt(stack)
        await self._start_board(stack, run)
        stack.callback(self.world.stop)
        await asyncio.to_thread(self.world.start, cfg.seed)
        c = self.contract
        fps = cfg.camera_fps * cfg.realtime_factor  # renders per wall second
        cameras = tuple(CameraConfig(name=cam, source=f"{SOURCE_PREFIX}{cam}", fps=fps,
                                     width_px=c.image_width, height_px=c.image_height,
                                     stale_after_s=max(0.25, 3.0 / fps))
                        for cam in c.cameras)
        config = RuntimeConfig(
            robot_id="zima-sim", link=LinkConfig(port=Path(self.board.port)), cameras=cameras,
            policy=PolicyConfig(model_path=cfg.model_path, temperature=cfg.temperature,
                                seed=cfg.seed),
            # The policy drives unattended here (`make demo`): no operator heartbeat. With
            # --drive operator a person is at the console, and the default rule holds.
            safety=SafetyConfig(operator_timeout_s=0.0) if cfg.drive == "policy"
            else SafetyConfig(),
            mqtt=mqtt, recorder=RecorderConfig(directory=cfg.out_dir / "episodes",
                                               scene=cfg.scene, source="sim"),
            web=self._web_config(),
            # A desktop, not the robot: the normal scheduler (no SCHED_FIFO to be refused).
            realtime=RealtimeConfig(fifo_priority=0))
        runtime = Runtime(config, contract=c, camera_opener=sim_opener(self.hub),
                          software="zima sim run")
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop), name="onboard-runtime")
        started = asyncio.create_task(runtime.wait_started())
        await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED, timeout=30)
        if not started.done():
            started.cancel()
            if not task.done():
                stop.set()
                await asyncio.wait_for(task, 10)
                raise HilStartError("the onboard runtime did not start within 30 s")
            try:
                task.result()
            except RuntimeStartError as exc:
                raise HilStartError(f"the onboard runtime: {exc}") from exc
            raise HilStartError("the onboard runtime stopped during start-up")

        async def stop_runtime() -> None:
            self._link_losses = runtime.link.status.disconnects  # before the link closes
            stop.set()
            await asyncio.wait_for(task, 10)

        stack.push_async_callback(stop_runtime)
        self._runtime, self._task = runtime, task
        if self.web_url is not None:
            self.report(f"web console: {self.web_url} (sign in with the token in "
                        f"{self.web_token_file})")
        if runtime.model_sha256 is None and cfg.drive == "policy":
            raise HilStartError(f"the runtime refuses the model {cfg.model_path}: "
                                f"{await runtime.handle(ModeCommand(DriveMode.AUTONOMOUS), 'sim')}")

    async def _start_board(self, stack: contextlib.AsyncExitStack, run: RunFolder) -> None:
        """The emulated board, its wheels driven by the world; its temp folder in ``run``."""
        stack.callback(self.board.close)  # also stops what a failed start left running
        try:
            await asyncio.to_thread(self.board.start)
            emulator_dir = Path(self.board.port).parent  # the board's own temp folder
            if emulator_dir.name.startswith("zima-emu-"):
                run.adopt(emulator_dir)  # removed by the next session if this one is killed
            await asyncio.to_thread(self.board.external_wheels, on=True)
        except EmulatorError as exc:
            raise HilStartError(f"the emulated board: {exc}") from exc

    def _web_config(self) -> WebConfig:
        """The console on loopback, with a token file (made once, readable by us only)."""
        cfg = self.cfg
        if cfg.web_port is None:
            return WebConfig()
        token_file = cfg.web_token_file or cfg.out_dir / "web-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(12) + "\n")
            token_file.chmod(0o600)
        port = cfg.web_port or free_port()
        read_token(token_file)  # a bad token file is found here, not by the runtime
        self.web_url, self.web_token_file = f"http://127.0.0.1:{port}", token_file
        return WebConfig(enabled=True, host="127.0.0.1", port=port, token_file=token_file)

    async def _start_mqtt(self, stack: contextlib.AsyncExitStack) -> MqttSection:
        """A local Mosquitto for the runtime's telemetry, when asked for and one starts."""
        if self.cfg.mqtt == "off":
            return MqttSection(enabled=False)
        if find_mosquitto() is None:
            self.report("no Mosquitto: running without telemetry")
            return MqttSection(enabled=False)
        assert self.run_folder is not None
        folder = self.run_folder.path / "mqtt"
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = folder / "mosquitto.conf"  # anonymous clients, on loopback only
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + run_lines())
        broker = Mosquitto(conf, port, folder / "mosquitto.log")
        try:  # on the loop's thread: die_with_parent follows the starting thread
            broker.start(preexec_fn=die_with_parent())
        except OSError as exc:
            self.report(f"no Mosquitto ({exc}): running without telemetry")
            return MqttSection(enabled=False)
        stack.callback(broker.stop)
        try:
            await asyncio.to_thread(broker.wait_ready)
        except OSError as exc:
            self.report(f"no Mosquitto ({exc}): running without telemetry")
            return MqttSection(enabled=False)
        self.mqtt_port = broker.port
        self.report(f"telemetry: Mosquitto on 127.0.0.1:{broker.port}, topics zima/zima-sim/#")
        return MqttSection(enabled=True, broker=MqttConfig(
            robot_id="zima-sim", host="127.0.0.1", port=broker.port))

    async def mode(self, mode: DriveMode, timeout_s: float = 10.0) -> None:
        """Ask the runtime for ``mode``; retried while the refusal is temporary (stale
        cameras while the sim catches up, the link re-handshaking)."""
        deadline = time.monotonic() + timeout_s
        while (error := await self.runtime.handle(ModeCommand(mode), "sim")) is not None:
            if time.monotonic() > deadline:
                raise HilError(f"the runtime refuses {mode.value}: {error}")
            await self.sleep(0.1)

    async def sleep(self, duration_s: float) -> None:
        """Wait while sampling telemetry and watching the world thread."""
        end = time.monotonic() + duration_s
        while True:
            self.telemetry.sample(self.runtime)
            error = self.world.snapshot().error
            if error is not None:
                raise HilError(f"the MuJoCo world stopped: {error}")
            if self._task is not None and self._task.done():
                raise HilError(f"the onboard runtime stopped: {self._task.exception()!r}")
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.02))


async def run_episodes(hil: HilSession,
                       on_episode: Callable[[int, HilEpisode], None] | None = None,
                       ) -> list[HilEpisode]:
    """Run ``hil.cfg.episodes`` seeded episodes: AUTONOMOUS until the world reports an
    outcome, IDLE until the tracks stop, reset with the next seed."""
    cfg = hil.cfg
    results: list[HilEpisode] = []
    for i in range(cfg.episodes):
        seed = cfg.seed + i
        if i > 0:
            await asyncio.to_thread(hil.world.reset, seed)
        wall0, t0 = time.monotonic(), hil.telemetry.now_s()
        operated = cfg.drive == "operator"  # a person drives: never take the robot over
        if not operated:
            await hil.mode(DriveMode.AUTONOMOUS)
        reengaged = 0
        while (snap := hil.world.snapshot()).outcome is Outcome.RUNNING:
            await hil.sleep(0.05)
            if not operated and hil.runtime.safety.mode is not DriveMode.AUTONOMOUS:
                # A lost link (a starved machine) drops the runtime to IDLE, as on the robot;
                # the demo's operator asks again once it is back, and says so.
                reengaged += 1
                await hil.mode(DriveMode.AUTONOMOUS, timeout_s=30.0)
        if not operated:
            await hil.mode(DriveMode.IDLE)
        for _ in range(100):  # the tracks stop (at most 2 s) before the scene changes
            s = hil.world.snapshot()
            if max(abs(s.track_mm_s[0]), abs(s.track_mm_s[1])) < STOPPED_MM_S:
                break
            await hil.sleep(0.02)
        hil.telemetry.episodes.append((t0, hil.telemetry.now_s(), snap.outcome.value))
        result = HilEpisode(seed, snap.outcome, snap.time_s, time.monotonic() - wall0,
                            reengaged)
        results.append(result)
        if on_episode is not None:
            on_episode(i + 1, result)
    return results
