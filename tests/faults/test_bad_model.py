"""A model that is NaN only on live frames (finite on the random image it is checked on at
load), at temperature 0 (argmax: the first NaN is FORWARD): the robot must never drive.
Every output is checked before an action is taken from it; bad ones are STOPs, counted on
telemetry/policy, and a few in a row make the model faulty and the robot idle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.onboard.helpers import run
from tests.onboard.onnx_models import build_model
from zima.contract import DEFAULT, Action

from .stack import Message, Stack, as_float, heartbeats, nonzero_motor_events

MAX_BAD_IN_ROW = 3  # PolicyConfig.max_bad_outputs' default
# The cameras' frames (tests/faults/stack.py's bright_video) have a mean of about 227 of 255;
# the random image a model is checked on at load about 127.5.
LIVE_FRAMES_ABOVE = 180.0


def nan_on_live_frames(path: Path) -> Path:
    """Finite logits that say STOP, and a NaN in FORWARD's on the live camera frames."""
    table = np.full((DEFAULT.chunk_len, DEFAULT.n_actions), -5.0, np.float32)
    table[:, int(Action.STOP)] = 5.0
    tmp = path.with_name(path.name + ".new")
    build_model(tmp, DEFAULT, kind="table", table=table, nan_above_mean=LIVE_FRAMES_ABOVE,
                nan_column=int(Action.FORWARD))
    tmp.replace(path)  # as deploy does: the runtime never sees a half-written file
    return path


def test_a_model_that_is_nan_on_live_frames_never_drives(stack: Stack) -> None:
    nan_on_live_frames(stack.model)

    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            stack.start_runtime()
            await stack.ready(op)
            policy = await op.wait("telemetry/policy", lambda m: m.get("model_hash") is not None,
                                   what="with the model loaded (it passes the load check)")
            assert policy.get("reload_error") is None, policy.body
            start = op.mark()
            autonomous = op.after(await op.request_mode("autonomous"))

            def faulty(m: Message) -> bool:
                return isinstance(m.get("faulty"), str) and \
                    as_float(m.get("bad_outputs")) >= MAX_BAD_IN_ROW

            policy = await op.wait("telemetry/policy", faulty, after=start, timeout_s=10.0,
                                   what="with the model declared faulty after bad outputs")
            assert as_float(policy.get("bad_in_row")) >= MAX_BAD_IN_ROW, policy.body
            mode = await op.wait("telemetry/mode", lambda m: m.get("mode") == "idle",
                                 after=autonomous, timeout_s=5.0, what="idle")
            reason = str(mode.get("reason"))
            assert "model" in reason or "output" in reason, f"idle, but the reason: {reason!r}"
            # The robot stays put: a second look a while later.
            await op.wait("telemetry/odometry", after=op.mark(), timeout_s=5.0)
            targets = [(m.get("target_left_mm_s"), m.get("target_right_mm_s"))
                       for m in op.received("telemetry/odometry", start)]
            assert all(t == (0, 0) for t in targets), f"track targets sent: {set(targets)}"
            assert op.received("telemetry/mode")[-1].get("mode") == "idle"

    try:
        run(main, guard_s=60)
    finally:  # whatever else failed: the motors must never have been driven
        driven = nonzero_motor_events(stack.board)
        assert not driven, f"the motors were driven: {driven[:4]}\n{stack.log_tail()}"
