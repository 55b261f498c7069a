"""The runtime under faults, against the real firmware on the emulated board: a part that
fails (restarted, reported, autonomy stopped; given up past its limit), an MCU e-stop that
was latched before the runtime started, a critical battery latch that an operator clears,
and the freshness of what the runtime publishes when the MCU goes silent.

Each was a defect found by trying the robot as a failing robot would (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zima.contract import Action
from zima.emulator import EmulatedBoard
from zima.onboard.commands import ModeCommand, TeleopCommand
from zima.onboard.config import RuntimeConfig
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.policy_runner import PlanTrace
from zima.onboard.runtime import PART_RESTARTS, PartFailedError, Runtime
from zima.onboard.safety import DriveMode
from zima.protocol import Fault, State

from .helpers import run, until_mcu
from .streams import PacedVideo
from .test_runtime import (
    FORWARD,
    ask_mode,
    constant_policy,
    mode_of,
    runtime_config,
    targets,
)


@pytest.fixture(autouse=True)
def cameras_plugged() -> None:
    PacedVideo.unplugged.clear()


class FailingHook:
    """An ``on_plan`` hook (it runs inside the control loop's tick) that raises on its
    first ``failures`` calls: a bug in the loop, as a part's failure."""

    def __init__(self, failures: int) -> None:
        self.left = failures

    def __call__(self, _trace: PlanTrace) -> None:
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("injected control-loop failure")


@contextlib.asynccontextmanager
async def started(runtime: Runtime) -> AsyncIterator[tuple[McuLink, asyncio.Task[None]]]:
    """``runtime`` run in a task; yields its MCU link and the task once it has started."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    waiting = asyncio.create_task(runtime.wait_started())
    await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED, timeout=15)
    if task.done():
        waiting.cancel()
        task.result()
    try:
        yield runtime.link, task
    finally:
        stop.set()
        with contextlib.suppress(PartFailedError):
            await asyncio.wait_for(task, 10)


def config_for(tmp_path: Path, link_config: LinkConfig) -> RuntimeConfig:
    constant_policy(tmp_path / "policy.onnx", Action.FORWARD)
    return runtime_config(tmp_path, link_config)


@pytest.fixture
def runtime(link_config: LinkConfig, tmp_path: Path) -> Runtime:
    """A runtime for the emulated board (``link_config``), driving forward by its policy,
    with the paced test videos as cameras; not started."""
    return Runtime(config_for(tmp_path, link_config), camera_opener=PacedVideo)


def test_a_failing_control_loop_is_restarted_reported_and_stops_autonomy(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = FailingHook(0)
    runtime = Runtime(config_for(tmp_path, link_config), camera_opener=PacedVideo,
                      on_plan=hook)

    async def main() -> None:
        async with started(runtime) as (link, _task):
            await ask_mode(runtime, DriveMode.AUTONOMOUS)
            await until_mcu(link, targets(FORWARD.left_mm_s, FORWARD.right_mm_s), 2000)
            hook.left = 1  # the next plan's tick fails
            await until_mcu(link, targets(0, 0), 1000)
            assert mode_of(runtime) == DriveMode.IDLE  # unsure: autonomy stopped
            mode = runtime.telemetry_record("mode")
            assert mode is not None
            assert str(mode["reason"]).startswith("part_failed: runtime part control-loop")
            faults = runtime.telemetry_record("faults")
            assert faults is not None
            part = faults["parts"]["control-loop"]  # type: ignore[index]
            assert part["failures"] == 1
            assert "injected control-loop failure" in part["last_error"]
            # restarted: the robot can be sent off again, and drives
            await ask_mode(runtime, DriveMode.AUTONOMOUS)
            await until_mcu(link, targets(FORWARD.left_mm_s, FORWARD.right_mm_s), 2000)
            assert runtime.telemetry_record("faults")["parts"][  # type: ignore[index]
                "control-loop"]["state"] == "running"

    with caplog.at_level(logging.ERROR, logger="zima.onboard.runtime"):
        run(main, guard_s=40)
    assert any("control-loop failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_control_loop_that_keeps_failing_ends_the_runtime_with_the_tracks_stopped(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path,
) -> None:
    runtime = Runtime(config_for(tmp_path, link_config), camera_opener=PacedVideo,
                      on_plan=FailingHook(10**6))

    async def main() -> None:
        async with started(runtime) as (_link, task):
            # Each failure stops autonomy; an operator (this loop) keeps sending the robot
            # off again, so the loop keeps failing until the runtime gives it up.
            async with asyncio.timeout(30):
                while not task.done():
                    await runtime.handle(ModeCommand(DriveMode.AUTONOMOUS), "test")
                    await asyncio.sleep(0.1)
            with pytest.raises(PartFailedError, match="control-loop"):
                task.result()
            faults = runtime.telemetry_record("faults")
            assert faults is not None
            part = faults["parts"]["control-loop"]  # type: ignore[index]
            assert part["failures"] == PART_RESTARTS + 1
            assert part["state"] == "failed"

    run(main, guard_s=40)
    # the runtime is gone; the motors are stopped (our stop, else the MCU's watchdog)
    board.wait_until(lambda s: s.duty_left == 0 and s.duty_right == 0, timeout_s=5.0)


def test_an_estop_latched_before_start_reads_estop_and_is_logged_once(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def latch() -> None:
        async with McuLink(link_config) as link:
            await link.estop()
            await until_mcu(link, lambda s: s.state == State.ESTOP, 500)

    run(latch)
    caplog.clear()  # the latching link's own goodbye DRIVE was refused: not the runtime's
    runtime = Runtime(config_for(tmp_path, link_config), camera_opener=PacedVideo)

    async def main() -> None:
        async with started(runtime) as (link, _task):
            await until_mcu(link, lambda s: s.state == State.ESTOP, 200)
            await asyncio.sleep(1.0)  # 50 control ticks with the latch held
            assert mode_of(runtime) == DriveMode.ESTOP
            record = runtime.telemetry_record("mode")
            assert record is not None
            assert record["mode"] == "estop"
            refused = await runtime.handle(ModeCommand(DriveMode.TELEOP), "test")
            assert refused is not None
            assert "e-stop" in refused

    with caplog.at_level(logging.WARNING):
        run(main, guard_s=40)
    refusals = [r for r in caplog.records if "refused DRIVE" in r.getMessage()]
    assert len(refusals) <= 1, [r.getMessage() for r in refusals]
    assert sum("e-stop is latched" in r.getMessage() for r in caplog.records) == 1


def test_a_critical_battery_latch_clears_when_an_operator_asks_for_idle(
    board: EmulatedBoard, runtime: Runtime,
) -> None:
    async def main() -> None:
        async with started(runtime) as (link, _task):
            await ask_mode(runtime, DriveMode.TELEOP)
            await asyncio.to_thread(board.set_battery, 9700)
            await until_mcu(link, lambda s: Fault.BATT_CRITICAL in s.faults, 4000)
            await until_mcu(link, targets(0, 0), 500)
            async with asyncio.timeout(5):
                while mode_of(runtime) != DriveMode.LOW_BATTERY:
                    await asyncio.sleep(0.02)
            battery = runtime.telemetry_record("battery")
            assert battery is not None
            assert battery["latched"] is True
            # still flat: the latch stays and the refusal says what to do
            refused = await runtime.handle(ModeCommand(DriveMode.IDLE), "test")
            assert refused is not None
            assert "charge" in refused, refused
            assert mode_of(runtime) == DriveMode.LOW_BATTERY
            # the pack is back: once the filtered voltage is above the clear threshold,
            # an operator's idle clears the MCU's latch and the robot goes on
            await asyncio.to_thread(board.set_battery, 12000)
            clear_mv = battery["clear_mv"]
            assert isinstance(clear_mv, int)
            assert clear_mv > 9700
            await until_mcu(link, lambda s: s.telemetry.battery_mv > clear_mv + 200, 5000)
            assert await runtime.handle(ModeCommand(DriveMode.IDLE), "test") is None
            assert mode_of(runtime) == DriveMode.IDLE
            await until_mcu(link, lambda s: Fault.BATT_CRITICAL not in s.faults, 500)
            await ask_mode(runtime, DriveMode.TELEOP)
            assert await runtime.handle(TeleopCommand(0.2, 0.0), "test") is None
            await until_mcu(link, targets(200, 200), 500)
            battery = runtime.telemetry_record("battery")
            assert battery is not None
            assert battery["latched"] is False

    run(main, guard_s=60)


def test_what_a_lost_mcu_said_last_is_published_as_stale_not_current(
    board: EmulatedBoard, runtime: Runtime,
) -> None:
    async def main() -> None:
        async with started(runtime) as (link, _task):
            await until_mcu(link, lambda s: s.telemetry.battery_mv > 0, 2000)
            for stream in ("odometry", "faults", "battery"):
                record = runtime.telemetry_record(stream)
                assert record is not None
                assert record["stale"] is False, (stream, record)
                assert 0 <= record["age_s"] < 1.0  # type: ignore[operator]
            await asyncio.to_thread(board.close)  # the USB cable pulled
            await link.wait_status(lambda s: not s.connected, timeout_s=5.0)
            await asyncio.sleep(0.5)
            ages = {}
            for stream in ("odometry", "faults", "battery"):
                record = runtime.telemetry_record(stream)
                assert record is not None
                assert record["stale"] is True, (stream, record)
                ages[stream] = record["age_s"]
            await asyncio.sleep(0.3)
            for stream, age in ages.items():  # the data grows old; it is never restamped
                record = runtime.telemetry_record(stream)
                assert record is not None
                assert record["age_s"] >= age + 0.25  # type: ignore[operator]
            link_record = runtime.telemetry_record("link")
            assert link_record is not None
            assert link_record["connected"] is False

    run(main, guard_s=40)
