"""The console's arm controls end to end: headless Chromium (tests/onboard/browser.py)
against the runtime on the emulated board. Jog keys and the gamepad move the tool, and stop
when let go; the named-pose and gripper buttons put the servos where the kinematics say.
What the arm does is read back from the MCU (its ARM_STATE) and the runtime's arm record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver

from zima.emulator import EmulatedBoard
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M, NAMED_POSES, gripper_closing_m
from zima.onboard.arm_teleop import ArmTeleop
from zima.onboard.commands import LeaseCommand
from zima.onboard.config import RuntimeConfig
from zima.onboard.kinematics import ARM, ToolPose
from zima.onboard.link_config import LinkConfig
from zima.onboard.runtime import Runtime
from zima.onboard.safety import DriveMode, SafetyConfig

from .browser import WAIT_S, browse, text_of, until, wait_text
from .helpers import run
from .test_runtime import runtime_config
from .test_web_console import FAKE_PAD, choose_mode, click, key_down, key_up, signed_in

STATIC = Path(__file__).resolve().parents[2] / "onboard" / "web" / "static"


def servo(runtime: Runtime) -> tuple[int, ...] | None:
    state = runtime.link.arm_state
    return None if state is None else (state.pos0_ddeg, state.pos1_ddeg, state.pos2_ddeg,
                                       state.pos3_ddeg, state.pos4_ddeg, state.pos5_ddeg)


def reached(runtime: Runtime, want: tuple[int | None, ...]) -> Callable[[], bool]:
    """The servos' present commands are ``want`` (None: any)."""
    def check() -> bool:
        now = servo(runtime)
        return now is not None and all(w is None or s == w for s, w in zip(now, want,
                                                                            strict=True))
    return check


def commanded_tool(runtime: Runtime) -> ToolPose:
    """The tool pose of the targets last sent (0.1 deg: within a servo step of the plan)."""
    record = runtime.status().arm
    assert record is not None
    ddeg = record.commanded_ddeg[:-1]
    assert None not in ddeg
    return ARM.tool_pose([j.servo.value_from_ddeg(d)
                          for j, d in zip(ARM.joints, ddeg, strict=True) if d is not None])


def commanded(runtime: Runtime) -> list[int | None]:
    record = runtime.status().arm
    assert record is not None
    return record.commanded_ddeg


async def settled(runtime: Runtime) -> list[int | None]:
    """The arm targets once no new ones came for 0.6 s (twice the teleop timeout: a jog
    still coming would have sent some); the messages already on their way when a key was
    let go land first."""
    async with asyncio.timeout(10):
        while True:
            before = commanded(runtime)
            await asyncio.sleep(0.6)
            if commanded(runtime) == before:
                return before


def shows_x(text: str, x_m: float) -> bool:
    """The page's tool readout ("x 0.234 y ...") says ``x_m``, within a servo step."""
    words = text.split()
    try:
        return words[0] == "x" and abs(float(words[1]) - x_m) < 0.003
    except (IndexError, ValueError):
        return False


async def press_until(page: WebDriver, button: str, done: Callable[[], bool]) -> None:
    """Click ``button`` until ``done``: on a loaded machine the emulated MCU's link may drop
    for a moment, and a click then is refused ("link down"), as a real operator's would be."""
    async with asyncio.timeout(WAIT_S):
        while True:
            await browse(click, page, button)
            with contextlib.suppress(TimeoutError):
                await until(done, 2.0)
                return


async def to_ready(page: WebDriver, runtime: Runtime) -> ToolPose:
    await press_until(page, "pose-ready", reached(runtime, ArmTeleop().pose("ready").targets_ddeg))
    return ARM.tool_pose(NAMED_POSES["ready"].joints_rad)


def test_the_page_opens_the_gripper_as_wide_as_the_kinematics_say() -> None:
    assert f"const GRIPPER_OPEN_M = {GRIPPER_MAX_OPENING_M};" in (STATIC / "app.js").read_text()


def test_jog_keys_move_the_tool_and_stop_when_let_go_and_the_buttons_pose_it(
    robot_config: RuntimeConfig, page: WebDriver
) -> None:
    async def main() -> None:
        async with signed_in(page, robot_config, DriveMode.TELEOP) as (runtime, _url):
            await until(lambda: servo(runtime) is not None)
            stowed = ARM.tool_pose(NAMED_POSES["stowed"].joints_rad)
            await browse(wait_text, page, "tool", lambda t: shows_x(t, stowed.x))
            start = await to_ready(page, runtime)
            await browse(key_down, page, "i")  # tool forward
            await until(lambda: commanded_tool(runtime).x > start.x + 0.01)
            decision = runtime.last_decision
            assert decision is not None
            assert (decision.left_mm_s, decision.right_mm_s) == (0, 0)  # no track moves
            await browse(key_up, page, "i")
            await settled(runtime)
            moved = commanded_tool(runtime)
            assert abs(moved.z - start.z) < 0.002  # along x only
            await until(reached(runtime, tuple(commanded(runtime))))
            await browse(wait_text, page, "tool", lambda t: shows_x(t, moved.x))

            start = await to_ready(page, runtime)  # well inside the reach again
            await browse(key_down, page, "u")  # tool up
            await until(lambda: commanded_tool(runtime).z > start.z + 0.01)
            await browse(key_up, page, "u")
            await settled(runtime)

            grip = ARM.gripper.servo
            closed = grip.ddeg(gripper_closing_m(0.0))
            await press_until(page, "grip-close", reached(runtime, (None,) * 5 + (closed,)))
            await press_until(page, "grip-open", reached(runtime, (None,) * 5 + (grip.ddeg(0.0),)))
            await press_until(page, "pose-look_down",
                              reached(runtime, ArmTeleop().pose("look_down").targets_ddeg))
            assert await browse(text_of, page, "jog") == "stop"

    run(main, guard_s=90)


def test_a_gamepad_jogs_the_tool_and_a_watcher_cannot(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path, page: WebDriver
) -> None:
    async def main() -> None:
        # The other client's lease lasts while the page is checked (it sends no renewals).
        config = runtime_config(tmp_path, link_config, safety=SafetyConfig(lease_timeout_s=5.0))
        async with signed_in(page, config) as (runtime, _url):
            await browse(page.execute_script, FAKE_PAD)
            await browse(wait_text, page, "gamepad", lambda t: "test pad" in t)
            await choose_mode(page, runtime, DriveMode.TELEOP)
            await until(lambda: servo(runtime) is not None)
            start = await to_ready(page, runtime)
            await browse(page.execute_script, "window.testPad.axes = [0, 0, 0, -1];")
            await until(lambda: commanded_tool(runtime).x > start.x + 0.01)  # stick up
            await browse(page.execute_script, "window.testPad.axes = [0, 0, 0, 0];")
            await settled(runtime)
            start = await to_ready(page, runtime)  # well inside the reach again
            await browse(page.execute_script, "window.testPad.buttons[5].pressed = true;")
            await until(lambda: commanded_tool(runtime).z > start.z + 0.01)  # RB: up
            await browse(page.execute_script, "window.testPad.buttons[5].pressed = false;")
            await settled(runtime)

            # Another client holds the lease: this page watches, its jog moves nothing.
            holder = runtime.status().lease_holder
            assert holder is not None
            assert await runtime.handle(LeaseCommand("give"), holder) is None
            assert await runtime.handle(LeaseCommand("take"), "mqtt") is None
            before = commanded(runtime)
            await browse(key_down, page, "i")
            await browse(wait_text, page, "message", lambda t: "holds the teleop lease" in t)
            await browse(key_up, page, "i")
            assert commanded(runtime) == before

    run(main, guard_s=90)
