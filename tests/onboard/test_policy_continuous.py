"""A continuous policy (output ``tracks``, mm/s) in the runtime: loading it, refusing
outputs that are neither kind, and the runner executing its chunks as track commands.

The models are tiny ONNX graphs (tests/onboard/onnx_models.py, kind ``tracks``); the
runner runs on a stepped clock, as in tests/onboard/test_policy.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zima.contract import DEFAULT, Action, TrackCommand
from zima.onboard.config import RuntimeConfig
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import LOGITS_OUTPUT, TRACKS_OUTPUT, ModelIOError, load_model
from zima.onboard.policy_runner import PolicyConfig, PolicyRunner, Step
from zima.onboard.runtime import Runtime
from zima.onboard.safety import BatteryLevel, DriveMode

from .onnx_models import build_model
from .test_policy import SteppedClock, feed, lock_step, run, stepped_runner

# Track speeds of each chunk step, mm/s: forward, a left turn, a right turn faster than
# the tracks may go, a crawl inside the STOP dead band.
TABLE = np.array([[300, 300], [-150, 150], [400, -400], [10, -5]], np.float32)


def test_a_continuous_model_loads_and_says_its_kind(tmp_path: Path) -> None:
    model = load_model(build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks", table=TABLE),
                       DEFAULT)
    assert model.output == TRACKS_OUTPUT
    assert model.continuous
    tracks = model.infer(np.zeros((1, *DEFAULT.image_shape), np.uint8),
                         np.zeros((1, DEFAULT.action_history), np.int64))
    assert tracks.dtype == np.float32
    assert tracks.tolist() == TABLE.tolist()  # [chunk_len, 2] mm/s
    discrete = load_model(build_model(tmp_path / "d.onnx", DEFAULT), DEFAULT)
    assert discrete.output == LOGITS_OUTPUT
    assert not discrete.continuous


def test_outputs_that_are_neither_kind_are_refused_naming_them(tmp_path: Path) -> None:
    third = build_model(tmp_path / "a.onnx", DEFAULT, extra_output="value")
    with pytest.raises(ModelIOError, match=r"outputs \['logits', 'value'\], expected exactly "
                                           r"one of 'logits' .* or 'tracks'"):
        load_model(third, DEFAULT)
    both = build_model(tmp_path / "b.onnx", DEFAULT, kind="tracks", extra_output="logits")
    with pytest.raises(ModelIOError, match=r"outputs \['tracks', 'logits'\]"):
        load_model(both, DEFAULT)
    short = build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks", chunk_len=3,
                        table=TABLE[:3])
    with pytest.raises(ModelIOError, match=r"tracks is tensor\(float\) \['B', 3, 2\], "
                                           r"expected tensor\(float\) \[B, 4, 2\]"):
        load_model(short, DEFAULT)
    nan = build_model(tmp_path / "d.onnx", DEFAULT, kind="tracks",
                      table=np.full((DEFAULT.chunk_len, 2), np.nan, np.float32))
    with pytest.raises(ModelIOError, match="tracks are not finite"):
        load_model(nan, DEFAULT)


def test_the_runner_drives_a_continuous_chunk_as_clipped_track_commands(tmp_path: Path) -> None:
    path = build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks", table=TABLE)
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, path, execute_k=3, temperature=1.0,
                                  seed=0) as (runner, clock):
            steps = await lock_step(runner, fusion, clock, 5)
            assert steps == [
                Step(Action.STOP, "waiting for the first plan"),  # no command: STOP
                Step(Action.FORWARD, tracks=TrackCommand(300, 300)),
                Step(Action.LEFT, tracks=TrackCommand(-150, 150)),
                Step(Action.RIGHT, tracks=TrackCommand(300, -300)),  # clipped
                Step(Action.FORWARD, tracks=TrackCommand(300, 300)),  # k = 3: a new chunk
            ]
            # The nearest actions went into the action history (STOP, FORWARD, LEFT,
            # RIGHT, FORWARD: the newest four).
            history = fusion.observe(clock.now_s).action_history[0].tolist()
            assert history == [1, 2, 3, 1]
            late = runner.tick(clock.now_s + 0.5)  # stale frames: STOP, no command
            assert late.action is Action.STOP
            assert late.tracks is None
            assert late.reason is not None
            assert late.reason.startswith("stale input")

    run(main)


def test_a_step_inside_the_dead_band_is_a_stop_with_its_command(tmp_path: Path) -> None:
    table = np.tile(TABLE[3], (DEFAULT.chunk_len, 1))  # [chunk_len, 2] 10 and -5 mm/s
    path = build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks", table=table)
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, path, execute_k=2) as (runner, clock):
            steps = await lock_step(runner, fusion, clock, 3)
            # Not a forced STOP (no reason): the policy's own, with its command.
            assert steps[1:] == [Step(Action.STOP, tracks=TrackCommand(10, -5))] * 2
            assert runner.status.plans == 1

    run(main)


def test_the_runtime_hands_a_continuous_step_to_safety_unchanged(tmp_path: Path) -> None:
    """The runtime's policy tick passes the step's track command (not its action's) to
    Safety, which stays the one that decides what reaches the motors."""
    path = build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks", table=TABLE)
    clock = SteppedClock()
    runtime = Runtime(RuntimeConfig(), clock=clock)
    safety = runtime.safety
    config = PolicyConfig(model_path=path, execute_k=3)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, runtime.fusion, clock=clock) as runner:
            runtime._runner = runner  # the runtime's policy, without its I/O
            safety.update(now_s=0.0, link_up=True, battery=BatteryLevel.OK,
                          estop_latched_on_mcu=False, policy_ready=True)
            safety.request_mode(DriveMode.AUTONOMOUS, source="test", now_s=0.0)
            decided = []
            for _ in range(4):
                feed(runtime.fusion, clock.now_s)
                runtime._policy_tick(clock.now_s)
                await runner.wait_plan()
                decision = safety.decide(now_s=clock.now_s)
                decided.append((decision.left_mm_s, decision.right_mm_s, decision.owner))
                clock.now_s += 1 / DEFAULT.control_hz
            assert decided == [(0, 0, "policy"), (300, 300, "policy"), (-150, 150, "policy"),
                               (300, -300, "policy")]

    run(main)
