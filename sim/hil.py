"""Hardware in the loop: the onboard runtime drives the MuJoCo robot through the real firmware.

`zima sim run` (and ``make demo``) wire every real part together, in real time::

    runtime (asyncio)  --serial pty-->  firmware on the emulated board (simavr)
        ^  cameras                           | motor duty (state lines, state_hz)
        |                                    v
    SimCapture  <--rendered frames--  SimWorld thread: MuJoCo tracks <- first-order motor
                                             | wheel joint angles -> encoder counts
                                             +--> board.set_wheels (quadrature edges)

- :class:`SimWorld` owns the :class:`~zima.sim.env.ZimaEnv` on its own thread (EGL
  contexts belong to one thread, and physics must never stall the runtime's event loop).
  Its tick is each new emulator state line: it steps MuJoCo by the emulated time that
  passed, with the tracks following the firmware's signed duty through the emulator's own
  motor model (``v = duty * max_speed_mm_s``, first order with ``tau_ms``), sends the
  wheels' encoder counts back, renders both cameras every ``1 / camera_fps`` emulated
  seconds, drains the battery with motor use, films an episode and judges it with the
  env's own outcome test (success: at the target and stopped).
- :class:`SimCapture` is a ``Capture`` (what the runtime's camera thread uses of
  ``cv2.VideoCapture``) fed from those renders: the runtime sees the sim through the same
  camera interface as a real camera. ``grab()`` blocks until a newer frame exists.
- :class:`HilSession` starts board, world and runtime (an async context manager, stopped
  in reverse order); :func:`run_episodes` runs seeded episodes (AUTONOMOUS until an
  outcome, IDLE, reset with the next seed) and logs the MCU's TELEMETRY for the plot.
  Its child processes (Mosquitto, the emulator) die with it, even when it is killed, and
  its temporary files live in a :class:`~zima.sim.run_folder.RunFolder` that the next
  session removes if this one could not (:mod:`zima.sim.run_folder`).

Start-up failures are :class:`HilStartError` with what to do (``make firmware``, a model
path); the orchestration itself never prints: it reports through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import mujoco
import numpy as np

from zima.contract import DEFAULT, Action, Contract
from zima.emulator import (
    EmulatedBoard,
    EmulatorConfig,
    EmulatorError,
    find_binary,
    find_firmware,
)
from zima.episodes import Outcome
from zima.onboard.camera import Capture
from zima.onboard.camera_config import CameraConfig, CameraOpenError
from zima.onboard.commands import ModeCommand
from zima.onboard.config import MqttSection, RuntimeConfig
from zima.onboard.link_config import LinkConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.policy_runner import PolicyConfig
from zima.onboard.recorder import RecorderConfig
from zima.onboard.runtime import Runtime, RuntimeStartError
from zima.onboard.safety import DriveMode, SafetyConfig
from zima.onboard.web import WebConfig, read_token
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.run_folder import RunFolder, die_with_parent
from zima.sim.video import VideoWriter

__all__ = ["FrameHub", "HilConfig", "HilEpisode", "HilError", "HilSession", "HilStartError",
           "SimCapture", "SimWorld", "TelemetryLog", "WorldSnapshot", "plot_telemetry",
           "run_episodes"]

SOURCE_PREFIX = "sim:"  # CameraConfig.source of a rendered camera: "sim:forward"
STOPPED_MM_S = 20.0  # both tracks slower than this (and no drive): the robot has stopped
VIDEO_SCALE = 4  # contract images are small; enlarged so the overlaid text is legible


class HilError(Exception):
    """A part of the loop failed (the message names it)."""


class HilStartError(HilError):
    """A part of the loop could not start (the message names it and what to do)."""


@dataclass(frozen=True, slots=True)
class HilConfig:
    """One hardware-in-the-loop run."""

    scene: str = "arena"  # a registered scene
    episodes: int = 5  # episode i uses seed + i
    seed: int = 100_000  # evaluation seeds: the demo policy trained on seeds below this
    model_path: Path = Path("models/zima-demo.onnx")  # the policy the runtime loads
    out_dir: Path = Path("build/demo")  # video, plot, recorder folder
    mqtt: Literal["auto", "off"] = "auto"  # auto: a local Mosquitto when one can start
    realtime_factor: float = 1.0  # emulated seconds per wall second (the emulator's pace)
    time_limit_s: float = 40.0  # per episode, emulated seconds (the env's default)
    state_hz: float = 100.0  # emulator state lines = physics ticks per emulated second
    camera_fps: float = 12.0  # renders per camera and emulated second (> policy's 10 Hz)
    battery_start_mv: float = 12_300.0  # a fresh 3S pack under light load
    # Pack drain at full duty on both tracks, mV per second: visible in the plot, and a
    # few-minute demo stays far above the firmware's 10.5 V low threshold.
    battery_drain_mv_s: float = 15.0
    battery_floor_mv: float = 11_200.0  # never drained below this (the demo is not about it)
    videos: int = 1  # film the first K episodes (forward camera)
    temperature: float = 1.0  # policy sampling, the runtime's default (0 = argmax)
    # "policy": episodes in AUTONOMOUS; "operator": a person drives (the web console or MQTT
    # teleop) and records demonstrations; the scene resets when an episode ends.
    drive: Literal["policy", "operator"] = "policy"
    web_port: int | None = None  # serve the web console on 127.0.0.1:<port> (0: any free)
    web_token_file: Path | None = None  # None: a fresh token in out_dir/web-token
    firmware: Path = field(default_factory=find_firmware)  # zima.emulator says where from
    emulator: Path = field(default_factory=find_binary)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes={self.episodes} must be at least 1")
        for name in ("realtime_factor", "time_limit_s", "state_hz", "camera_fps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be a positive number")


@dataclass(frozen=True, slots=True)
class HilEpisode:
    """How one episode ended (times in emulated seconds)."""

    seed: int
    outcome: Outcome
    time_s: float
    wall_s: float
    reengaged: int = 0  # autonomy asked for again after the runtime dropped to IDLE


# ---- cameras ---------------------------------------------------------------------------


class FrameHub:
    """The newest render of each camera, handed from the physics thread to camera threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: dict[str, tuple[int, np.ndarray]] = {}  # name -> (seq, [H, W, 3] BGR)
        self._closed = False

    def publish(self, camera: str, image_rgb: np.ndarray) -> None:
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])  # what OpenCV delivers
        with self._cond:
            seq = self._frames.get(camera, (0, bgr))[0] + 1
            self._frames[camera] = (seq, bgr)
            self._cond.notify_all()

    def wait_newer(self, camera: str, seen: int, timeout_s: float) -> tuple[int, np.ndarray] | None:
        """The camera's newest frame once its seq is above ``seen``; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._frames.get(camera, (0, None))[0] > seen, timeout_s)
            frame = self._frames.get(camera)
            if self._closed or frame is None or frame[0] <= seen:
                return None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class SimCapture:
    """A ``Capture`` over one rendered camera (see the module docstring)."""

    def __init__(self, hub: FrameHub, camera: str, timeout_s: float = 1.0) -> None:
        self._hub, self._camera, self._timeout_s = hub, camera, timeout_s
        self._seen = 0
        self._image: np.ndarray | None = None

    def grab(self) -> bool:
        frame = self._hub.wait_newer(self._camera, self._seen, self._timeout_s)
        if frame is None:
            return False  # the sim stalled or stopped: the camera reports it and retries
        self._seen, self._image = frame
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self._image is not None, self._image

    def release(self) -> None:
        self._image = None


def sim_opener(hub: FrameHub) -> Callable[[CameraConfig], Capture]:
    """The runtime's ``camera_opener`` for ``sim:<camera>`` sources."""

    def open_sim(config: CameraConfig) -> Capture:
        source = config.source
        if not (isinstance(source, str) and source.startswith(SOURCE_PREFIX)):
            raise CameraOpenError(f"camera {config.name!r}: {source!r} is no sim camera")
        return SimCapture(hub, source.removeprefix(SOURCE_PREFIX))

    return open_sim


# ---- the physics thread ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorldSnapshot:
    """What the physics thread last saw (for the episode loop and tests)."""

    seed: int
    time_s: float  # emulated seconds since the episode's reset
    pose: tuple[float, float, float]  # x m, y m, yaw rad
    sim_ticks: tuple[int, int]  # the encoder counts sent to the board (across resets)
    track_mm_s: tuple[float, float]  # the motor model's track speeds
    outcome: Outcome
    battery_mv: float
    ticks: int  # physics ticks so far
    error: str | None  # why the thread died, if it did


class SimWorld:
    """The MuJoCo side of the loop on its own thread (see the module docstring)."""

    def __init__(self, board: EmulatedBoard, hub: FrameHub, cfg: HilConfig,
                 contract: Contract = DEFAULT) -> None:
        self.board, self.hub, self.cfg, self.contract = board, hub, cfg, contract
        self.max_speed_mm_s, self.tau_s = 1000.0, 0.1  # the board's, read at start()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._reset_to: int | None = None
        self._reset_done = threading.Event()
        self._snapshot: WorldSnapshot | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="sim-world", daemon=True)
        self.videos: list[Path] = []

    def start(self, seed: int, timeout_s: float = 60.0) -> None:
        """Build the scene, reset it with ``seed`` and start following the board (blocking;
        the board must have started: its ready line gives the motor model)."""
        ready = self.board.ready
        self.max_speed_mm_s = float(str(ready["max_speed_mm_s"]))
        self.tau_s = float(str(ready["tau_ms"])) / 1000.0
        self._reset_to = seed
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise HilStartError(f"the MuJoCo world did not start within {timeout_s} s")
        if self._error is not None:
            raise HilStartError(f"the MuJoCo world: {self._error}")

    def reset(self, seed: int, timeout_s: float = 10.0) -> None:
        """Start the next episode with ``seed`` at the next tick (blocking until done)."""
        self._reset_done.clear()
        with self._lock:
            self._reset_to = seed
        if not self._reset_done.wait(timeout_s) or self._error is not None:
            raise HilError(f"the MuJoCo world did not reset: "
                           f"{self._error or 'no state lines from the board'}")

    def snapshot(self) -> WorldSnapshot:
        with self._lock:
            snap = self._snapshot
        if snap is None:
            raise RuntimeError("the MuJoCo world has not started")
        return replace(snap, error=self._error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.hub.close()

    # ---- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        env: ZimaEnv | None = None
        try:
            env = ZimaEnv(self.cfg.scene, EnvConfig(time_limit_s=self.cfg.time_limit_s),
                          self.contract)
            self._loop(env)
        except Exception as exc:  # noqa: BLE001 -- reported through snapshot().error
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._started.set()
            self._reset_done.set()
            self.hub.close()
            if env is not None:
                env.close()

    def _loop(self, env: ZimaEnv) -> None:  # noqa: PLR0915 -- one tick, read top to bottom
        cfg, board = self.cfg, self.board
        substep_s = env.config.physics_dt_s
        frame_s = 1.0 / cfg.camera_fps
        offset = [0, 0]  # the firmware's counts run on across resets; MuJoCo's restart at 0
        sent = (0, 0)
        v = [0.0, 0.0]  # motor model's track speeds, mm/s
        battery_mv = cfg.battery_start_mv
        battery_sent_us = 0
        seed = 0
        start_us = now_us = board.wait_state(-1, timeout_s=10.0).time_us
        next_frame_s = 0.0
        outcome = Outcome.RUNNING
        video: VideoWriter | None = None
        episodes = ticks = 0
        carry_s = 0.0
        while not self._stop.is_set():
            with self._lock:
                reset_to, self._reset_to = self._reset_to, None
            if reset_to is not None:
                enc = env.drive.encoders(env.data)
                offset = [offset[0] + enc[0], offset[1] + enc[1]]
                if video is not None:
                    video.close()
                    video = None
                seed = reset_to
                env.reset(seed)
                if episodes < cfg.videos:
                    path = cfg.out_dir / f"episode_{seed}.mp4"
                    c = self.contract
                    video = VideoWriter(path, cfg.camera_fps, (c.image_width, c.image_height),
                                        scale=VIDEO_SCALE)
                    self.videos.append(path)
                episodes += 1
                v = [0.0, 0.0]
                start_us, next_frame_s, outcome, carry_s = now_us, 0.0, Outcome.RUNNING, 0.0
                self._render(env, video, 0.0, seed, outcome)
                self._publish(env, seed, 0.0, sent=sent, v=v, outcome=outcome,
                              battery_mv=battery_mv, ticks=ticks)
                self._started.set()
                self._reset_done.set()
            state = board.wait_state(now_us, timeout_s=5.0)
            dt_s = min((state.time_us - now_us) / 1e6, 1.0)  # a stalled thread catches up
            now_us = state.time_us
            # the emulator's motor model, applied here: v -> duty * max_speed, first order
            alpha = 1.0 - math.exp(-dt_s / self.tau_s)
            for i, duty in enumerate((state.duty_signed_left, state.duty_signed_right)):
                v[i] += (duty * self.max_speed_mm_s - v[i]) * alpha
            env.drive.set_tracks(env.data, v[0], v[1])
            carry_s += dt_s
            n = int(carry_s / substep_s + 1e-9)
            carry_s -= n * substep_s
            if n > 0:
                env.drive.step(env.data, n)
                mujoco.mj_forward(env.model, env.data)  # contacts and cameras
            enc = env.drive.encoders(env.data)
            sent = (offset[0] + enc[0], offset[1] + enc[1])
            board.set_wheels(*sent)
            ticks += 1
            # battery: drain with motor use, sent now and then (a command with an answer)
            duty_abs = abs(state.duty_signed_left) + abs(state.duty_signed_right)
            battery_mv = max(cfg.battery_floor_mv,
                             battery_mv - cfg.battery_drain_mv_s * duty_abs / 2 * dt_s)
            if now_us - battery_sent_us >= 500_000:
                board.set_battery(battery_mv)
                battery_sent_us = now_us
            time_s = (now_us - start_us) / 1e6
            if outcome is Outcome.RUNNING:
                stopped = max(abs(v[0]), abs(v[1])) < STOPPED_MM_S and duty_abs < 0.05
                # the env's own judge: collision, wrong cube, success (STOP at the target)
                outcome = env.outcome(Action.STOP if stopped else Action.FORWARD)
                if outcome is Outcome.RUNNING and time_s >= cfg.time_limit_s:
                    outcome = Outcome.TIMEOUT
                if outcome is not Outcome.RUNNING and video is not None:
                    self._render(env, video, time_s, seed, outcome)
            if time_s >= next_frame_s:
                next_frame_s = max(next_frame_s + frame_s, time_s)
                self._render(env, video, time_s, seed, outcome)
            self._publish(env, seed, time_s, sent=sent, v=v, outcome=outcome,
                          battery_mv=battery_mv, ticks=ticks)
        if video is not None:
            video.close()

    def _render(self, env: ZimaEnv, video: VideoWriter | None, time_s: float, seed: int,
                outcome: Outcome) -> None:
        for camera in self.contract.cameras:
            image = env.render(camera)  # [H, W, 3] uint8 RGB
            self.hub.publish(camera, image)
            if camera == "forward" and video is not None:
                video.add(image, [f"seed {seed}  t {time_s:5.1f} s  {outcome.value}"])

    def _publish(self, env: ZimaEnv, seed: int, time_s: float, *, sent: tuple[int, int],
                 v: list[float], outcome: Outcome, battery_mv: float, ticks: int) -> None:
        snap = WorldSnapshot(seed, time_s, env.robot_pose(), sent, (v[0], v[1]), outcome,
                             battery_mv, ticks, None)
        with self._lock:
            self._snapshot = snap


# ---- MQTT ------------------------------------------------------------------------------


def _free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Mosquitto:
    """A throwaway Mosquitto on a free loopback port, anonymous clients (loopback only),
    its files in ``folder``. Start it from the event loop's thread (:func:`die_with_parent`
    follows the starting thread), then wait for it with :meth:`wait_ready`."""

    def __init__(self, binary: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        conf = folder / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "mosquitto")
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        f"user {user}\nlog_dest stderr\n")
        self._log = (folder / "mosquitto.log").open("wb")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 -- argv of our own making
                [binary, "-c", str(conf)], stderr=self._log,
                preexec_fn=die_with_parent())  # noqa: PLW1509 -- a prctl, before exec
        except OSError:
            self._log.close()
            raise

    def wait_ready(self) -> None:
        """Block until the broker accepts connections (OSError if it does not start)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise OSError("mosquitto did not start")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")


# ---- the session -----------------------------------------------------------------------


@dataclass
class TelemetryLog:
    """The MCU's TELEMETRY sampled by the episode loop (one row per new frame)."""

    columns: tuple[str, ...] = ("t_s", "battery_mv", "target_left_mm_s", "vel_left_mm_s",
                                "target_right_mm_s", "vel_right_mm_s", "out_left_permille",
                                "out_right_permille")
    rows: list[tuple[float, ...]] = field(default_factory=list)
    episodes: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, outcome
    _last_seq: int = -1
    _t0_ms: int | None = None

    def sample(self, runtime: Runtime) -> None:
        state = runtime.link.state if runtime.link.connected else None
        if state is None or state.seq == self._last_seq:
            return
        self._last_seq = state.seq
        t = state.telemetry
        if self._t0_ms is None:
            self._t0_ms = t.mcu_time_ms
        self.rows.append(((t.mcu_time_ms - self._t0_ms) / 1000.0, t.battery_mv,
                          t.target_left_mm_s, t.vel_left_mm_s, t.target_right_mm_s,
                          t.vel_right_mm_s, t.out_left_permille, t.out_right_permille))

    def now_s(self) -> float:
        return self.rows[-1][0] if self.rows else 0.0

    def array(self) -> np.ndarray:
        """[n_rows, len(columns)] float64."""
        return np.array(self.rows, np.float64).reshape(-1, len(self.columns))


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
        self.board = EmulatedBoard(EmulatorConfig(
            firmware=cfg.firmware, binary=cfg.emulator, speed=cfg.realtime_factor,
            state_hz=cfg.state_hz, battery_mv=cfg.battery_start_mv))
        self.world = SimWorld(self.board, self.hub, cfg, contract)
        self.telemetry = TelemetryLog()
        self.mqtt_port: int | None = None
        self.web_url: str | None = None  # the console's address, token included
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
        for path, how in ((cfg.firmware, "make firmware"), (cfg.emulator, "make emulator")):
            if not path.exists():
                raise HilStartError(f"{path} does not exist: build it with `{how}`")
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
            web=self._web_config())
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
            self.report(f"web console: {self.web_url}")
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
        port = cfg.web_port or _free_port()
        self.web_url = f"http://127.0.0.1:{port}/?token={read_token(token_file)}"
        return WebConfig(enabled=True, host="127.0.0.1", port=port, token_file=token_file)

    async def _start_mqtt(self, stack: contextlib.AsyncExitStack) -> MqttSection:
        """A local Mosquitto for the runtime's telemetry, when asked for and one starts."""
        if self.cfg.mqtt == "off":
            return MqttSection(enabled=False)
        binary = find_mosquitto()
        if binary is None:
            self.report("no Mosquitto: running without telemetry")
            return MqttSection(enabled=False)
        assert self.run_folder is not None
        try:
            broker = _Mosquitto(binary, self.run_folder.path / "mqtt")  # on the loop's thread
        except OSError as exc:
            self.report(f"no Mosquitto ({exc}): running without telemetry")
            return MqttSection(enabled=False)
        stack.callback(broker.close)
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


# ---- the plot --------------------------------------------------------------------------


def plot_telemetry(log: TelemetryLog, path: Path) -> Path:
    """Battery voltage, each track's target and measured speed, and motor duty over time."""
    import matplotlib  # noqa: PLC0415 -- only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    data = log.array()  # [n, columns]
    col = {name: data[:, i] for i, name in enumerate(log.columns)}
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(col["t_s"], col["battery_mv"] / 1000, color="tab:green")
    axes[0].set_ylabel("battery (V)")
    for ax, side in ((axes[1], "left"), (axes[2], "right")):
        ax.plot(col["t_s"], col[f"target_{side}_mm_s"], label="target", color="tab:gray")
        ax.plot(col["t_s"], col[f"vel_{side}_mm_s"], label="measured", color="tab:blue")
        ax.set_ylabel(f"{side} track (mm/s)")
        ax.legend(loc="upper right", fontsize="small")
    for side, color in (("left", "tab:orange"), ("right", "tab:purple")):
        axes[3].plot(col["t_s"], col[f"out_{side}_permille"] / 10, label=side, color=color)
    axes[3].set_ylabel("motor duty (%)")
    axes[3].set_xlabel("MCU time (s)")
    axes[3].legend(loc="upper right", fontsize="small")
    for start, end, outcome in log.episodes:
        for ax in axes:
            ax.axvspan(start, end, color="tab:green" if outcome == "success" else "tab:red",
                       alpha=0.06)
        axes[0].annotate(outcome, ((start + end) / 2, 1.0), xycoords=("data", "axes fraction"),
                         ha="center", va="bottom", fontsize="small")
    fig.suptitle("MCU telemetry (TELEMETRY frames through the onboard runtime)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
