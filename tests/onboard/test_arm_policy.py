"""The policy's arm head in the runtime (issue 17, item 4): the model I/O with ``arm_state``
and ``arm_logits``, the output guard on the arm's logits, the runner's arm bins in each
``Step``, and the bins as the console's jog.

The models are built with the ``onnx`` helper API (no torch): ``logits`` a constant table,
``arm_logits`` a constant table plus ``0 * log(sum(arm_state))``, finite for the warm-up's
state (its sum is positive) and NaN for a state whose sum is negative: a model that passes
its load and turns bad on a live state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zima.contract import ARM_STATE_DIMS, DEFAULT, METADATA_KEY, PICK, Action, Contract
from zima.onboard.arm_policy import (
    arm_jog_command,
    arm_jog_velocities,
    choose_arm_bins,
    hold_bins,
)
from zima.onboard.chunking import ActionQueue
from zima.onboard.commands import ARM_JOG_LIMITS
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import (
    ACTION_HISTORY_INPUT,
    ARM_LOGITS_OUTPUT,
    ARM_STATE_INPUT,
    IMAGES_INPUT,
    LOGITS_OUTPUT,
    BadOutputError,
    ContractMismatchError,
    check_arm_output,
    load_model,
)
from zima.onboard.policy_runner import PolicyConfig, PolicyRunner, Step, default_execute_k

from .lockstep import SteppedClock, feed
from .onnx_models import zero_of_inputs
from .test_policy import run

GOOD_STATE = np.array([0.15, 0.0, 0.0, 1.0, 0.0, 0.02], np.float32)  # sum > 0: finite
BAD_STATE = np.array([0.15, 0.0, -2.0, 1.0, 0.0, 0.02], np.float32)  # sum < 0: NaN


def arm_table(bins: tuple[int, ...], contract: Contract = PICK) -> np.ndarray:
    """Arm logits [chunk_len, arm_dims, levels] whose argmax is ``bins`` at every step."""
    table = np.zeros((contract.chunk_len, contract.arm_dims, contract.n_arm_levels), np.float32)
    for d, b in enumerate(bins):
        table[:, d, b] = 20.0
    return table


def build_arm_model(path: Path, contract: Contract = PICK, *, drive: Action = Action.LEFT,
                    bins: tuple[int, ...] = (4, 2, 0, 2, 2, 1)) -> Path:
    """A model with an arm head (module doc): argmax ``drive`` and ``bins`` every step."""
    c = contract
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    table = np.zeros((1, c.chunk_len, c.n_actions), np.float32)
    table[..., int(drive)] = 20.0
    nodes = [
        *zero_of_inputs(const),
        helper.make_node("Add", ["z3", const("table", table)], [LOGITS_OUTPUT]),
        helper.make_node("ReduceSum", [ARM_STATE_INPUT, const("ax1s", np.array([1], np.int64))],
                         ["arm_sum"], keepdims=0),  # [B]
        helper.make_node("Log", ["arm_sum"], ["arm_log"]),  # NaN where the sum is negative
        helper.make_node("Mul", ["arm_log", "zero"], ["arm_z"]),
        helper.make_node("Unsqueeze", ["arm_z", const("ax123", np.array([1, 2, 3], np.int64))],
                         ["arm_z4"]),  # [B, 1, 1, 1]
        helper.make_node("Add", ["arm_z4", const("arm_table", arm_table(bins, c)[None])],
                         [ARM_LOGITS_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arm_policy",
        [helper.make_tensor_value_info(IMAGES_INPUT, TensorProto.UINT8, ["B", *c.image_shape]),
         helper.make_tensor_value_info(ACTION_HISTORY_INPUT, TensorProto.INT64,
                                       ["B", c.action_history]),
         helper.make_tensor_value_info(ARM_STATE_INPUT, TensorProto.FLOAT, ["B", ARM_STATE_DIMS])],
        [helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT,
                                       ["B", c.chunk_len, c.n_actions]),
         helper.make_tensor_value_info(ARM_LOGITS_OUTPUT, TensorProto.FLOAT,
                                       ["B", c.chunk_len, c.arm_dims, c.n_arm_levels])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=METADATA_KEY, value=c.to_json())
    onnx.save(model, str(path))
    return path


# ---- loading ------------------------------------------------------------------------------


def test_an_arm_model_loads_under_the_pick_contract_and_infers_both_heads(
        tmp_path: Path) -> None:
    model = load_model(build_arm_model(tmp_path / "arm.onnx"), PICK)
    images = np.zeros((1, *PICK.image_shape), np.uint8)
    logits, arm = model.infer_arm(images, np.zeros((1, PICK.action_history), np.int64),
                                  GOOD_STATE[None])
    assert logits.shape == (PICK.chunk_len, PICK.n_actions)
    assert arm.shape == (PICK.chunk_len, PICK.arm_dims, PICK.n_arm_levels)
    assert arm.argmax(-1).tolist() == [[4, 2, 0, 2, 2, 1]] * PICK.chunk_len


def test_arm_and_drive_only_models_are_refused_under_the_other_contract(
        tmp_path: Path) -> None:
    """The contract in the file says whether a model has an arm head: a runtime of the find
    task refuses a pick model (and the other way round), naming arm_dims."""
    with pytest.raises(ContractMismatchError, match="arm_dims: model 6, runtime 0"):
        load_model(build_arm_model(tmp_path / "arm.onnx"), DEFAULT)
    drive_only = build_arm_model(tmp_path / "fake.onnx")
    proto = onnx.load(str(drive_only))
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=DEFAULT.to_json())
    onnx.save(proto, str(drive_only))
    with pytest.raises(ContractMismatchError, match="arm_dims: model 0, runtime 6"):
        load_model(drive_only, PICK)


# ---- the output guard -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2e4])
def test_the_guard_refuses_arm_logits_that_are_not_finite_or_out_of_range(bad: float) -> None:
    arm = arm_table((2,) * 6)
    arm[1, 3, 0] = bad
    with pytest.raises(BadOutputError, match="arm_logits are"):
        check_arm_output(arm, PICK)
    check_arm_output(arm_table((2,) * 6), PICK)  # a good one passes
    with pytest.raises(BadOutputError, match=r"expected float32 \[4, 6, 5\]"):
        check_arm_output(arm_table((2,) * 6)[:, :5], PICK)


async def _steps(path: Path, state: np.ndarray, n: int) -> list[Step]:
    """``n`` lock-step ticks of a runner on ``path`` whose arm_state is ``state``."""
    fusion = FrameFusion(PICK)
    clock = SteppedClock()
    steps = []
    async with PolicyRunner(PolicyConfig(model_path=path, temperature=0.0, seed=0), PICK,
                            fusion, clock=clock, arm_state=lambda: state) as runner:
        for i in range(n):
            clock.now_s = i * 0.1
            feed(fusion, clock.now_s)
            steps.append(runner.tick(clock.now_s))
            await runner.wait_plan()
    return steps


def test_the_runner_carries_each_steps_arm_bins(tmp_path: Path) -> None:
    path = build_arm_model(tmp_path / "arm.onnx")
    got: list[Step] = []

    async def main() -> None:
        got.extend(await _steps(path, GOOD_STATE, 6))

    run(main)
    assert got[0] == Step(Action.STOP, "waiting for the first plan")  # the arm holds
    assert all(s == Step(Action.LEFT, None, (4, 2, 0, 2, 2, 1)) for s in got[1:])


def test_nan_arm_logits_move_nothing_and_make_the_model_faulty(tmp_path: Path) -> None:
    """Finite at load (the warm-up's state), NaN on the live state: every step is a STOP
    with the reason and no arm action, and three in a row make the model faulty."""
    path = build_arm_model(tmp_path / "arm.onnx")
    got: list[Step] = []

    async def main() -> None:
        got.extend(await _steps(path, BAD_STATE, 6))

    run(main)
    assert all(s.action is Action.STOP and s.arm is None for s in got)
    reasons = [s.reason or "" for s in got[1:]]
    assert any("bad model output: arm_logits are not finite" in r for r in reasons)
    assert "model faulty" in reasons[-1]


def test_an_arm_contract_needs_the_arm_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arm head needs arm_state"):
        PolicyRunner(PolicyConfig(model_path=tmp_path / "x.onnx"), PICK, FrameFusion(PICK))


def test_an_arm_model_plans_every_action_unless_the_config_says_otherwise(
        tmp_path: Path) -> None:
    """A grasp is closed-loop work: with no execute_k configured a pick model's chunks run
    one action each, a driving model's four; a configured value is kept for either."""
    def runner(contract: Contract, execute_k: int | None = None) -> PolicyRunner:
        config = PolicyConfig(model_path=tmp_path / "x.onnx", execute_k=execute_k)
        return PolicyRunner(config, contract,
                            FrameFusion(contract), arm_state=lambda: GOOD_STATE)

    assert default_execute_k(PICK) == runner(PICK).execute_k == 1
    assert default_execute_k(DEFAULT) == runner(DEFAULT).execute_k == 4
    assert runner(PICK, execute_k=3).execute_k == 3
    assert runner(DEFAULT, execute_k=2).execute_k == 2


# ---- bins and jogs ------------------------------------------------------------------------


def test_arm_bins_are_sampled_per_dimension_and_argmax_at_temperature_zero() -> None:
    rng = np.random.default_rng(0)
    assert choose_arm_bins(arm_table((0, 1, 2, 3, 4, 2)), 0.0, rng) == [(0, 1, 2, 3, 4, 2)] * 4
    sampled = choose_arm_bins(np.zeros((4, 6, 5), np.float32), 1.0, rng)
    assert len(sampled) == 4
    assert all(len(b) == 6 and set(b) <= set(range(5)) for b in sampled)
    with pytest.raises(BadOutputError):
        choose_arm_bins(np.full((4, 6, 5), np.nan, np.float32), 1.0, rng)


def test_bins_become_the_consoles_jog_within_its_limits() -> None:
    lim = ARM_JOG_LIMITS
    jog = arm_jog_command(PICK, (4, 0, 3, 1, 2, 4))
    assert jog.velocity == pytest.approx((lim.linear_m_per_s, -lim.linear_m_per_s,
                                          0.2 * lim.linear_m_per_s,
                                          -0.2 * lim.angular_rad_per_s, 0.0,
                                          lim.gripper_m_per_s))
    assert not arm_jog_command(PICK, hold_bins(PICK)).moving
    with pytest.raises(ValueError, match="6 bins"):
        arm_jog_velocities(PICK, (2, 2))


def test_the_action_queue_keeps_each_actions_arm_bins() -> None:
    queue = ActionQueue(PICK, execute_k=2, tick_s=0.02)
    arm = [(i, 2, 2, 2, 2, 2) for i in range(4)]
    queue.install([1, 2, 3, 0], tag="chunk", arm=arm)
    planned = [queue.advance(t) for t in (0.0, 0.04, 0.1)]  # starts, goes on, the next
    assert [(p.started, p.arm) for p in planned if p is not None] == [
        (True, arm[0]), (False, arm[0]), (True, arm[1])]
    with pytest.raises(ValueError, match="arm actions"):
        queue.install([1, 2, 3, 0], arm=arm[:2])
