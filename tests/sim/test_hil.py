"""Hardware in the loop, the real chain: the firmware on the emulated board with external
wheels, MuJoCo on its own thread, and the onboard runtime with a tiny constant policy.

What moved is read from MuJoCo (the robot's pose) and from the firmware (TELEMETRY's
encoder counts), so both directions of the loop are checked: the firmware's motor duty
moves the MuJoCo tracks, and the MuJoCo wheels produce the firmware's encoder counts.
Waits are in emulated time (the world's episode clock); wall-clock limits are hang guards.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.onboard.helpers import run
from tests.onboard.test_runtime import constant_policy
from zima.contract import DEFAULT, Action
from zima.episodes import EpisodeReader
from zima.onboard.safety import DriveMode, SafetyConfig
from zima.onboard.web import read_token
from zima.onboard.web.client import console_session
from zima.sim import cli
from zima.sim.hil import HilSession
from zima.sim.hil_config import HilConfig, HilStartError
from zima.sim.hil_world import WorldSnapshot

TICKS_PER_M = 4000.0  # the firmware's default ticks_per_m (and the sim robot's)


@pytest.fixture
def hil_config(firmware_elf: Path, emulator_binary: Path, tmp_path: Path) -> HilConfig:
    return HilConfig(firmware=firmware_elf, emulator=emulator_binary, mqtt="off", videos=0,
                     model_path=tmp_path / "policy.onnx", out_dir=tmp_path / "out",
                     time_limit_s=120.0)


async def drive_for(hil: HilSession, mode_s: float) -> list[WorldSnapshot]:
    """AUTONOMOUS for ``mode_s`` emulated seconds, then IDLE until the tracks and the
    encoder walk have stopped; the world's snapshots, one per 20 ms, from start to end."""
    snaps = [hil.world.snapshot()]
    await hil.mode(DriveMode.AUTONOMOUS)
    start_s = hil.world.snapshot().time_s
    while snaps[-1].time_s < start_s + mode_s:
        await hil.sleep(0.02)
        snaps.append(hil.world.snapshot())
    await hil.mode(DriveMode.IDLE)
    while True:
        await hil.sleep(0.02)
        snaps.append(hil.world.snapshot())
        state = hil.board.latest_state
        assert state is not None
        if (max(map(abs, snaps[-1].track_mm_s)) < 1.0 and state.wheels_lag_left_ticks == 0
                and state.wheels_lag_right_ticks == 0):
            break
    await hil.sleep(0.2)  # a few TELEMETRY frames after the last edge
    snaps.append(hil.world.snapshot())
    return snaps


def test_forward_policy_moves_the_mujoco_robot_and_its_wheels_count_in_the_firmware(
    hil_config: HilConfig,
) -> None:
    constant_policy(hil_config.model_path, Action.FORWARD)

    async def main() -> tuple[list[WorldSnapshot], tuple[int, int]]:
        async with HilSession(hil_config) as hil:
            # The policy drives unattended: no operator heartbeat to wait for.
            assert hil.runtime.safety.config.operator_timeout_s == 0
            snaps = await drive_for(hil, 2.0)
            state = hil.runtime.link.state
            assert state is not None
            return snaps, (state.telemetry.enc_left_ticks, state.telemetry.enc_right_ticks)

    snaps, firmware_ticks = run(main, guard_s=90)
    (x0, y0, yaw0), (x1, y1, yaw1) = snaps[0].pose, snaps[-1].pose
    along = (x1 - x0) * math.cos(yaw0) + (y1 - y0) * math.sin(yaw0)
    across = -(x1 - x0) * math.sin(yaw0) + (y1 - y0) * math.cos(yaw0)
    # FORWARD is 300 mm/s: about 0.6 m in 2 s; generous bounds, no speed measurement
    assert 0.15 < along < 1.5, snaps[-1]
    assert abs(across) < 0.05 + 0.1 * along
    assert abs(math.remainder(yaw1 - yaw0, math.tau)) < 0.15
    sim_ticks = snaps[-1].sim_ticks
    for sim, firmware in zip(sim_ticks, firmware_ticks, strict=True):
        assert sim > 0.5 * along * TICKS_PER_M  # the wheels turned as far as the base went
        assert abs(firmware - sim) <= 2, (sim_ticks, firmware_ticks)  # every edge arrived
    assert snaps[-1].ticks > snaps[0].ticks  # physics followed the emulator's state lines
    # The emulator's pack drained with the motors' use, at most the full-duty rate.
    drained_mv = snaps[0].battery_mv - snaps[-1].battery_mv
    elapsed_s = snaps[-1].time_s - snaps[0].time_s
    assert 0 < drained_mv <= hil_config.battery_drain_mv_s * elapsed_s + 0.2, snaps[-1]


def test_left_policy_turns_the_mujoco_robot_counter_clockwise(hil_config: HilConfig) -> None:
    constant_policy(hil_config.model_path, Action.LEFT)

    async def main() -> list[WorldSnapshot]:
        async with HilSession(hil_config) as hil:
            return await drive_for(hil, 2.0)

    snaps = run(main, guard_s=90)
    yaw = np.unwrap([s.pose[2] for s in snaps])  # 20 ms apart: well under half a turn
    (x0, y0, _), (x1, y1, _) = snaps[0].pose, snaps[-1].pose
    assert yaw[-1] - yaw[0] > 0.5  # turning in place at 150 mm/s: about 2 rad in 2 s
    assert math.hypot(x1 - x0, y1 - y0) < 0.1
    left, right = snaps[-1].sim_ticks
    assert left < 0 < right


def test_sim_run_writes_the_video_and_the_telemetry_plot(
    hil_config: HilConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = constant_policy(tmp_path / "forward.onnx", Action.FORWARD)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "demo"
    args = parser.parse_args(["run", "--episodes", "1", "--time-limit", "3", "--model",
                              str(model), "--out", str(out), "--seed", "100000"])
    assert cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "episode 1/1 seed 100000" in printed
    assert "success 0/1" in printed  # driving straight on never stops at the cube
    # Closing the link at the end is no loss: the count is the losses the link reported
    # (0 on a quiet machine; a loaded one can starve the pty past the telemetry timeout).
    lost = sum("MCU link lost" in r.getMessage() for r in caplog.records)
    assert f"MCU link losses: {lost}" in printed
    image = cv2.imread(str(out / "telemetry.png"))
    assert image is not None
    assert image.shape[0] > 100
    video = cv2.VideoCapture(str(out / "episode_100000.mp4"))
    try:
        ok, frame = video.read()
        assert ok
        assert frame.shape == (DEFAULT.image_height * 4, DEFAULT.image_width * 4, 3)
        assert video.get(cv2.CAP_PROP_FRAME_COUNT) > 10
    finally:
        video.release()


def test_a_missing_firmware_build_says_how_to_build_it(hil_config: HilConfig,
                                                      tmp_path: Path) -> None:
    constant_policy(hil_config.model_path, Action.FORWARD)
    missing = HilConfig(firmware=tmp_path / "nowhere.elf", emulator=hil_config.emulator,
                        model_path=hil_config.model_path, mqtt="off")

    async def main() -> None:
        async with HilSession(missing):
            pass

    with pytest.raises(HilStartError, match="make firmware"):
        run(main, guard_s=30)


def test_an_operator_drives_the_sim_robot_through_the_web_console(
    hil_config: HilConfig,
) -> None:
    cfg = replace(hil_config, drive="operator", web_port=0)  # no model needed to drive by hand

    async def main() -> list[WorldSnapshot]:
        async with HilSession(cfg) as hil:
            assert hil.web_url is not None
            assert hil.runtime.model_sha256 is None
            # A person is at the console: the operator rule keeps its default.
            assert hil.runtime.safety.config.operator_timeout_s == SafetyConfig().operator_timeout_s
            assert hil.web_token_file is not None
            base = hil.web_url
            async with console_session(base, read_token(hil.web_token_file)) as http:
                async with http.get(base + "/") as page:  # signed in: the console itself
                    assert page.status == 200
                    assert "<html" in (await page.text()).lower()
                async with http.ws_connect(f"{base}/ws", origin=base) as ws:
                    await ws.send_json({"t": "mode", "mode": "teleop"})
                    await ws.send_json({"t": "record", "action": "start"})
                    snaps = [hil.world.snapshot()]
                    while snaps[-1].time_s < snaps[0].time_s + 1.5:  # W held for 1.5 s
                        await ws.send_json({"t": "drive", "v": 0.3, "w": 0.0})
                        await hil.sleep(0.05)
                        snaps.append(hil.world.snapshot())
                    await ws.send_json({"t": "drive", "v": 0.0, "w": 0.0})  # key released
                    released_s = hil.world.snapshot().time_s
                    while (snap := hil.world.snapshot()).time_s < released_s + 3.0:
                        if max(map(abs, snap.track_mm_s)) < 20:
                            break
                        await hil.sleep(0.05)
                    snaps.append(snap)
                    await ws.send_json({"t": "record", "action": "stop", "outcome": "success"})
                    while not list((cfg.out_dir / "episodes").glob("*.h5")):
                        await hil.sleep(0.05)
            return snaps

    snaps = run(main, guard_s=90)
    (x0, y0, yaw0), (x1, y1, _) = snaps[0].pose, snaps[-1].pose
    along = (x1 - x0) * math.cos(yaw0) + (y1 - y0) * math.sin(yaw0)
    assert along > 0.1, snaps[-1]  # 0.3 m/s for 1.5 s: about 0.45 m
    assert max(map(abs, snaps[-1].track_mm_s)) < 20  # released: stopped, within 3 s
    (episode,) = (cfg.out_dir / "episodes").glob("*.h5")
    with EpisodeReader(episode) as reader:  # the runtime's recorder, in the simulator
        assert (reader.info.source, reader.info.scene, reader.info.outcome) == (
            "sim", "arena", "success")
        assert len(reader) > 5
