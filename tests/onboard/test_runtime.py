"""The whole runtime against the real firmware on the emulated board, cameras through
OpenCV's capture path, and small ONNX policies generated here.

What the robot does is read back from the MCU itself (TELEMETRY's track targets and state),
so every check goes through the firmware. Waits are in MCU time (``until_mcu``); wall-clock
limits are only hang guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from zima.contract import DEFAULT, Action, Contract, nearest_action
from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.onboard.camera_config import CameraConfig
from zima.onboard.commands import EstopCommand, ModeCommand, ReloadCommand, TeleopCommand
from zima.onboard.config import MqttSection, RuntimeConfig
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.mcu_state import McuState
from zima.onboard.policy_runner import PolicyConfig
from zima.onboard.realtime import RealtimeConfig
from zima.onboard.recorder import RecorderConfig
from zima.onboard.runtime import Runtime
from zima.onboard.safety import DriveMode
from zima.onboard.sdnotify import Notifier
from zima.protocol import State

from .helpers import run, until_mcu
from .onnx_models import build_model
from .streams import PacedVideo, write_video

FORWARD = DEFAULT.track_command(Action.FORWARD)
LEFT = DEFAULT.track_command(Action.LEFT)


def constant_policy(path: Path, action: Action, contract: Contract = DEFAULT) -> Path:
    """An ONNX policy whose every chunk is ``action``."""
    table = np.full((contract.chunk_len, contract.n_actions), -5.0, np.float32)
    table[:, int(action)] = 5.0
    tmp = path.with_name(path.name + ".new")
    build_model(tmp, contract, kind="table", table=table)
    tmp.replace(path)  # as deploy does: the runtime never sees a half-written file
    return path


def runtime_config(tmp_path: Path, link_config: LinkConfig, **changes: object) -> RuntimeConfig:
    cameras = tuple(
        CameraConfig(name=cam, source=str(write_video(tmp_path / f"{cam}.avi", 45)), fps=30.0)
        for cam in DEFAULT.cameras)
    fields: dict[str, object] = {
        "robot_id": "zima-test",
        # A machine loaded by a parallel build can starve the link past the default 0.25 s
        # telemetry timeout; these tests are about the runtime, not link-loss detection
        # (a vanished port is still seen at once: the read fails).
        "link": dataclasses.replace(link_config, telemetry_timeout_s=1.0),
        "cameras": cameras,
        "policy": PolicyConfig(model_path=tmp_path / "policy.onnx", temperature=0.0, seed=0),
        "mqtt": MqttSection(enabled=False),
        "recorder": RecorderConfig(directory=tmp_path / "episodes"),
        # The test process's own thread runs the loop: not under SCHED_FIFO.
        "realtime": RealtimeConfig(fifo_priority=0),
    }
    fields.update(changes)
    return RuntimeConfig(**fields)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(config: RuntimeConfig, notifier: Notifier | None = None,
                  ) -> AsyncIterator[Runtime]:
    """The runtime started in a task; stopped (and its exceptions raised) on leaving."""
    runtime = Runtime(config, camera_opener=PacedVideo, notifier=notifier)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        started = asyncio.create_task(runtime.wait_started())
        await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED, timeout=15)
        if task.done():
            started.cancel()
            task.result()  # raises why it did not start
        assert started.done(), "the runtime did not start"
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def ask_mode(runtime: Runtime, mode: DriveMode) -> None:
    """Ask for ``mode``, again while the refusal is a passing one: the cameras' first
    frames not in yet (or a camera's thread starved past the stale limit at start-up), or
    the link re-handshaking, on a machine loaded enough."""
    passing = ("link down", "no frame yet", "stale camera input")
    async with asyncio.timeout(10):
        while (error := await runtime.handle(ModeCommand(mode), "test")) is not None:
            assert any(reason in error for reason in passing), error
            await runtime.link.wait_status(lambda s: s.connected)
            await asyncio.sleep(0.05)  # one control tick: Safety sees the world again


def mode_of(runtime: Runtime) -> DriveMode:
    return runtime.safety.mode  # a call: mypy must not narrow it across awaits


def sha256_of(runtime: Runtime) -> str | None:
    return runtime.model_sha256


def targets(left: int, right: int) -> Callable[[McuState], bool]:
    return lambda s: (s.telemetry.target_left_mm_s, s.telemetry.target_right_mm_s) == (left, right)


FORWARD_TARGETS = targets(FORWARD.left_mm_s, FORWARD.right_mm_s)


async def drive_forward(runtime: Runtime, within_ms: int = 2000) -> McuState:
    """Autonomy with a forward policy: the MCU's first state with the policy's targets."""
    await ask_mode(runtime, DriveMode.AUTONOMOUS)
    return await until_mcu(runtime.link, FORWARD_TARGETS, within_ms)


@contextlib.asynccontextmanager
async def driving_forward(tmp_path: Path, link_config: LinkConfig,
                          ) -> AsyncIterator[tuple[Runtime, McuLink]]:
    """The runtime with a forward policy (``tmp_path/policy.onnx``) driving autonomously;
    yields it and its link once the MCU has the policy's targets."""
    constant_policy(tmp_path / "policy.onnx", Action.FORWARD)
    async with running(runtime_config(tmp_path, link_config)) as runtime:
        await drive_forward(runtime)
        yield runtime, runtime.link


@pytest.fixture(autouse=True)
def cameras_plugged() -> None:
    PacedVideo.unplugged.clear()


def test_the_policy_drives_the_motors_through_the_real_firmware(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    constant_policy(tmp_path / "policy.onnx", Action.FORWARD)

    async def main() -> None:
        async with running(runtime_config(tmp_path, link_config)) as runtime:
            link = runtime.link
            assert mode_of(runtime) == DriveMode.IDLE
            await until_mcu(link, targets(0, 0), 500)
            state = await drive_forward(runtime)
            assert state.state == State.DRIVING
            # the tracks really turn: the firmware's PID follows the target
            await until_mcu(link, lambda s: s.telemetry.vel_left_mm_s > 150, 2000)
            assert runtime.loop_stats().ticks > 0
            await ask_mode(runtime, DriveMode.IDLE)
            await until_mcu(link, targets(0, 0), 500)

    run(main, guard_s=40)


def test_a_model_with_a_wrong_contract_is_refused_and_the_old_one_keeps_driving(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main() -> None:
        async with driving_forward(tmp_path, link_config) as (runtime, link):
            model, first = tmp_path / "policy.onnx", runtime.model_sha256
            other = Contract(chunk_len=DEFAULT.chunk_len + 2)
            constant_policy(model, Action.LEFT, other)
            error = await runtime.handle(ReloadCommand("policy"), "test")
            assert error is not None
            assert "chunk_len" in error, error
            assert runtime.model_sha256 == first
            await until_mcu(link, FORWARD_TARGETS, 500)
            constant_policy(model, Action.LEFT)  # a good one: swapped in while driving
            assert await runtime.handle(ReloadCommand("policy"), "test") is None
            assert runtime.model_sha256 != first
            await until_mcu(link, targets(LEFT.left_mm_s, LEFT.right_mm_s), 2000)

    run(main, guard_s=40)


def test_estop_from_any_mode_latches_the_mcu_and_release_returns_to_idle(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main() -> None:
        async with driving_forward(tmp_path, link_config) as (runtime, link):
            assert await runtime.handle(EstopCommand(engaged=True), "test") is None
            state = await until_mcu(link, lambda s: s.state == State.ESTOP, 500)
            assert state.telemetry.target_left_mm_s == 0
            assert mode_of(runtime) == DriveMode.ESTOP
            refused = await runtime.handle(ModeCommand(DriveMode.TELEOP), "test")
            assert refused is not None
            assert "e-stop" in refused
            assert await runtime.handle(EstopCommand(engaged=False), "test") is None
            await until_mcu(link, lambda s: s.state == State.IDLE, 1000)
            assert mode_of(runtime) == DriveMode.IDLE
            # teleop after the release: the operator drives, a silent operator stops
            await ask_mode(runtime, DriveMode.TELEOP)
            assert await runtime.handle(TeleopCommand(0.2, 0.0), "test") is None
            await until_mcu(link, targets(200, 200), 500)
            await until_mcu(link, targets(0, 0), 1500)  # no more teleop: timed out

    run(main, guard_s=40)


def test_stale_cameras_stop_the_policy_and_fresh_frames_resume_it(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main() -> None:
        async with driving_forward(tmp_path, link_config) as (_runtime, link):
            PacedVideo.unplugged.set()  # both cameras' cables pulled
            await until_mcu(link, targets(0, 0), 1500)
            PacedVideo.unplugged.clear()  # the camera threads reopen them
            await until_mcu(link, FORWARD_TARGETS, 4000)

    run(main, guard_s=40)


def test_the_serial_port_vanishing_stops_the_robot_and_it_drives_again_when_back(
    board: EmulatedBoard, board_config: EmulatorConfig, link_config: LinkConfig, tmp_path: Path
) -> None:
    second = EmulatedBoard(board_config)

    async def main() -> None:
        async with driving_forward(tmp_path, link_config) as (runtime, link):
            await asyncio.to_thread(board.close)  # USB cable pulled
            await link.wait_status(lambda s: not s.connected, timeout_s=5.0)
            async with asyncio.timeout(5):
                while runtime.last_decision is None or runtime.last_decision.reason is None:
                    await asyncio.sleep(0.02)
            assert runtime.last_decision.left_mm_s == 0
            await asyncio.to_thread(second.start)  # plugged in again: a fresh MCU
            await link.wait_status(lambda s: s.connected, timeout_s=10.0)
            # the link loss dropped the robot to IDLE: it never drives off by itself
            assert mode_of(runtime) == DriveMode.IDLE
            await drive_forward(runtime, 3000)

    try:
        run(main, guard_s=60)
    finally:
        second.close()


def test_systemd_gets_ready_and_watchdog_pings_on_a_real_notify_socket(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)  # noqa: FBT003 (the socket API)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    messages: list[str] = []

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.extend(sock.recv(4096).decode().split("\n"))

    async def main() -> None:
        with Notifier() as notifier:
            async with running(runtime_config(tmp_path, link_config), notifier):
                async with asyncio.timeout(10):
                    while messages.count("WATCHDOG=1") < 3:
                        drain()
                        await asyncio.sleep(0.05)
        drain()

    try:
        run(main, guard_s=40)
    finally:
        sock.close()
    assert "READY=1" in messages
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    assert "STOPPING=1" in messages
    assert any(m.startswith("STATUS=") for m in messages)


def test_teleop_steps_are_recorded_as_the_nearest_action() -> None:
    assert nearest_action(0, 0) == Action.STOP
    assert nearest_action(10, -10) == Action.STOP  # inside the dead band
    assert nearest_action(300, 300) == Action.FORWARD
    assert nearest_action(-150, 150) == Action.LEFT
    assert nearest_action(150, -150) == Action.RIGHT
    assert nearest_action(200, 300) == Action.FORWARD  # a gentle left curve: forward
    assert nearest_action(-300, -300) == Action.STOP  # no reverse in the contract


def test_no_model_means_no_autonomy_with_a_reason(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running(runtime_config(tmp_path, link_config)) as runtime:
            assert runtime.model_sha256 is None
            error = await runtime.handle(ModeCommand(DriveMode.AUTONOMOUS), "test")
            assert error is not None
            assert "no model" in error, error
            constant_policy(tmp_path / "policy.onnx", Action.FORWARD)
            assert await runtime.handle(ReloadCommand("policy"), "test") is None
            assert sha256_of(runtime) is not None
            await drive_forward(runtime)

    run(main, guard_s=40)





def test_mqtt_commands_drive_and_a_killed_broker_never_stops_the_loop(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path, broker: Broker
) -> None:
    constant_policy(tmp_path / "policy.onnx", Action.FORWARD)
    mqtt = broker.robot_mqtt(tmp_path, rates_hz={"mode": 20.0, "loop": 20.0},
                             reconnect_min_s=0.05, reconnect_max_s=0.3)
    config = runtime_config(tmp_path, link_config, robot_id=ROBOT, mqtt=mqtt)

    async def next_on(op: aiomqtt.Client, stream: str) -> dict[str, object]:
        async with asyncio.timeout(5):
            async for message in op.messages:
                if str(message.topic).endswith(f"/telemetry/{stream}"):
                    assert isinstance(message.payload, bytes)
                    body = json.loads(message.payload)
                    assert isinstance(body, dict)
                    return body
        raise AssertionError("unreachable")

    async def main() -> None:
        async with running(config) as runtime:
            link = runtime.link
            async with operator_client(broker) as op:
                await op.subscribe(f"zima/{ROBOT}/status", qos=1)
                async with asyncio.timeout(5):  # the robot is connected and subscribed
                    async for message in op.messages:
                        if message.payload == b"online":
                            break
                await op.subscribe(f"zima/{ROBOT}/telemetry/#")
                await op.publish(f"zima/{ROBOT}/cmd/mode", b'{"mode": "autonomous"}', qos=1)
                await until_mcu(link, targets(FORWARD.left_mm_s, FORWARD.right_mm_s), 3000)
                mode = await next_on(op, "mode")
                while mode["mode"] != "autonomous":
                    mode = await next_on(op, "mode")
                assert mode["owner"] == "policy"
                policy = await next_on(op, "policy")
                assert policy["model_hash"] == runtime.model_sha256
                cameras = await next_on(op, "cameras")
                forward = cameras["forward"]
                assert isinstance(forward, dict)
                assert forward["state"] == "streaming"
                assert forward["failures"] == 0
            ticks = runtime.loop_stats().ticks
            await asyncio.to_thread(broker.stop)  # the broker dies mid-drive
            await until_mcu(link, lambda s: False if runtime.loop_stats().ticks < ticks + 50
                            else targets(FORWARD.left_mm_s, FORWARD.right_mm_s)(s), 5000)
            await asyncio.to_thread(broker.start)
            async with operator_client(broker) as op:
                await op.subscribe(f"zima/{ROBOT}/telemetry/#")
                loop = await next_on(op, "loop")  # telemetry resumed by itself
                assert isinstance(loop["rate_hz"], float)
                assert loop["rate_hz"] > 0
                await op.publish(f"zima/{ROBOT}/cmd/estop", b'{"engaged": true}', qos=1)
                await until_mcu(link, lambda s: s.state == State.ESTOP, 3000)

    run(main, guard_s=60)


def operator_client(broker: Broker) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, username="operator",
                          password=OPERATOR_PASSWORD, identifier="operator", timeout=2.0)
