"""The policy: loading and refusing models, sampling, the chunk queue's timing rule, and
the runner (partial chunks, stale inputs, early re-planning, hot reload).

The models are tiny ONNX graphs built by tests/onboard/onnx_models.py. Timing is judged
in ticks (the pure ``ActionQueue``) and with a stepped clock, never against the wall
clock: how fast real inference is belongs in a benchmark.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto

from zima.contract import DEFAULT, Action, Contract
from zima.onboard.chunking import ActionQueue, choose_actions
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import (
    ContractMismatchError,
    ModelFileError,
    ModelIOError,
    NoContractError,
    load_model,
)
from zima.onboard.policy_runner import PolicyConfig, PolicyRunner, Step

from .onnx_models import build_model, history_chunk

GUARD_S = 20.0


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` under a wall-clock guard."""

    async def guarded() -> None:
        async with asyncio.timeout(GUARD_S):
            await main()

    asyncio.run(guarded())


def fresh_fusion(contract: Contract, now_s: float) -> FrameFusion:
    fusion = FrameFusion(contract)
    feed(fusion, now_s)
    return fusion


def feed(fusion: FrameFusion, now_s: float) -> None:
    for cam in fusion.contract.cameras:
        fusion.push(cam, np.zeros((96, 128, 3), np.uint8), now_s)


# ---- loading and refusing -------------------------------------------------------------


def test_a_model_loads_with_its_hash_and_predicts(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    model = load_model(path, DEFAULT)
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    images = np.zeros((1, *DEFAULT.image_shape), np.uint8)
    logits = model.infer(images, np.array([[0, 0, 0, 2]], np.int64))
    assert logits.shape == (DEFAULT.chunk_len, DEFAULT.n_actions)
    assert logits.dtype == np.float32
    assert logits.argmax(-1).tolist() == history_chunk(2, DEFAULT)


def test_a_model_for_another_contract_is_refused_naming_each_mismatch(tmp_path: Path) -> None:
    other = Contract(chunk_len=8, control_hz=20.0)
    path = build_model(tmp_path / "p.onnx", DEFAULT, metadata=other)
    with pytest.raises(ContractMismatchError) as err:
        load_model(path, DEFAULT)
    assert err.value.mismatches == ("chunk_len: model 8, runtime 4",
                                    "control_hz: model 20.0, runtime 10.0")
    assert "chunk_len: model 8, runtime 4" in str(err.value)
    assert "control_hz: model 20.0, runtime 10.0" in str(err.value)


def test_a_model_without_a_readable_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoContractError, match="no contract in metadata_props"):
        load_model(build_model(tmp_path / "a.onnx", DEFAULT, metadata=""), DEFAULT)
    with pytest.raises(NoContractError, match=r"unreadable contract: .*not JSON"):
        load_model(build_model(tmp_path / "b.onnx", DEFAULT, metadata="{oops"), DEFAULT)


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "policy.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        load_model(text, DEFAULT)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path / "missing.onnx", DEFAULT)


def test_inputs_and_outputs_must_fit_the_io_contract(tmp_path: Path) -> None:
    wrong_name = build_model(tmp_path / "a.onnx", DEFAULT, images_name="image")
    with pytest.raises(ModelIOError, match=r"inputs \['action_history', 'image'\]"):
        load_model(wrong_name, DEFAULT)
    wrong_type = build_model(tmp_path / "b.onnx", DEFAULT, images_type=TensorProto.FLOAT)
    with pytest.raises(ModelIOError, match=r"images is tensor\(float\) .*expected tensor\(uint8\)"):
        load_model(wrong_type, DEFAULT)
    wrong_chunk = build_model(tmp_path / "c.onnx", DEFAULT, kind="table", chunk_len=3)
    with pytest.raises(ModelIOError, match=r"logits is tensor\(float\) \['B', 3, 4\]"):
        load_model(wrong_chunk, DEFAULT)


def test_a_model_with_random_outputs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelIOError, match="two runs on the same input differ"):
        load_model(build_model(tmp_path / "p.onnx", DEFAULT, noise=True), DEFAULT)


# ---- sampling ---------------------------------------------------------------------------


def test_temperature_zero_is_argmax() -> None:
    logits = np.array([[0, 5, 1, 2], [9, 0, 0, 0], [0, 0, 0, 1]], np.float32)
    assert choose_actions(logits, 0.0, np.random.default_rng(0)) == [1, 0, 3]


def test_sampling_follows_the_softmax_and_is_seeded() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    logits = np.log(np.tile(p, (4, 1))).astype(np.float32)  # [chunk_len, n_actions]
    rng = np.random.default_rng(7)
    draws = np.array([choose_actions(logits, 1.0, rng) for _ in range(5000)])  # [5000, 4]
    freq = np.bincount(draws.ravel(), minlength=4) / draws.size
    assert np.abs(freq - p).max() < 0.015  # 20000 draws: sd ~0.0035
    sharp = np.array([choose_actions(logits, 0.05, rng) for _ in range(500)])
    assert (sharp == 3).mean() > 0.99  # low temperature: nearly the argmax
    flat = np.array([choose_actions(logits, 100.0, rng) for _ in range(2500)])
    assert np.abs(np.bincount(flat.ravel(), minlength=4) / flat.size - 0.25).max() < 0.03
    again = [choose_actions(logits, 1.0, np.random.default_rng(7)) for _ in range(3)]
    assert again[0] == again[1] == again[2] == draws[0].tolist()
    with pytest.raises(ValueError, match="temperature"):
        choose_actions(logits, -1.0, rng)


# ---- the queue's timing rule, in ticks -------------------------------------------------


def test_the_queue_executes_the_first_k_of_a_chunk_in_order() -> None:
    queue = ActionQueue(DEFAULT, execute_k=2)
    queue.install([1, 2, 3, 0])
    assert [queue.pop(), queue.pop(), queue.pop()] == [1, 2, None]
    with pytest.raises(ValueError, match="execute_k=5"):
        ActionQueue(DEFAULT, execute_k=5)


def simulate_ticks(latency_s: float, execute_k: int, ticks: int = 200) -> list[int | None]:
    """Run the queue's rule tick by tick with an inference of ``latency_s`` (the clock is
    the tick count): the actions popped, None for a dry tick. Chunks are numbered."""
    hz = DEFAULT.control_hz
    queue = ActionQueue(DEFAULT, execute_k)
    queue.latency.add(latency_s)
    ready_s: float | None = None  # when the plan in flight finishes
    plans = 0
    popped: list[int | None] = []
    for tick in range(ticks):
        now_s = tick / hz
        if ready_s is not None and ready_s <= now_s:
            queue.install([plans * 10 + j for j in range(DEFAULT.chunk_len)])
            ready_s = None
        popped.append(queue.pop())
        if queue.should_plan(in_flight=ready_s is not None):
            plans += 1
            ready_s = now_s + latency_s
    return popped


@pytest.mark.parametrize("execute_k", [1, 2, 3, 4])
def test_the_queue_never_runs_dry_while_latency_is_below_k_periods(execute_k: int) -> None:
    period_s = 1 / DEFAULT.control_hz
    for fraction in (0.01, 0.3, 0.6, 0.99):
        latency_s = fraction * execute_k * period_s / 1.5  # the margin's share included
        popped = simulate_ticks(latency_s, execute_k)
        first = next(i for i, a in enumerate(popped) if a is not None)
        assert first == max(1, math.ceil(latency_s / period_s))  # the first plan's wait
        assert None not in popped[first:], (latency_s, execute_k, popped[:20])
        # Every chunk is executed exactly: its first k actions, in order.
        done = [a for a in popped[first:] if a is not None]
        chunks, steps = [a // 10 for a in done], [a % 10 for a in done]
        assert steps[: 3 * execute_k] == list(range(execute_k)) * 3
        assert all(chunks.count(c) == execute_k for c in set(chunks) - {chunks[-1]})


def test_the_queue_runs_dry_when_latency_exceeds_k_periods() -> None:
    popped = simulate_ticks(latency_s=0.45, execute_k=4)
    assert None in popped[10:]
    queue = ActionQueue(DEFAULT, execute_k=4)
    queue.latency.add(0.45)
    assert not queue.keeps_up
    assert queue.lead == 3  # planning as early as it can


def test_lead_grows_with_the_recent_worst_latency() -> None:
    queue = ActionQueue(DEFAULT, execute_k=4, latency_margin=1.0)
    leads = []
    for latency_s in (0.001, 0.099, 0.101, 0.25, 0.01):
        queue.latency.add(latency_s)
        leads.append(queue.lead)
    assert leads == [0, 0, 1, 2, 2]  # the recent worst, not the last


# ---- the runner -------------------------------------------------------------------------


class SteppedClock:
    """A clock that moves only when the test says so. The policy's worker thread reads it
    when an inference ends, and reads ``inference_s`` later than the loop does: an
    injected inference latency, in the test's time."""

    def __init__(self, inference_s: float = 0.0) -> None:
        self.now_s = 0.0
        self.inference_s = inference_s

    def __call__(self) -> float:
        if threading.current_thread() is threading.main_thread():
            return self.now_s
        return self.now_s + self.inference_s


async def lock_step(runner: PolicyRunner, fusion: FrameFusion, clock: SteppedClock,
                    ticks: int) -> list[Step]:
    """Tick at control_hz on the stepped clock, fresh frames each tick, each plan waited for."""
    steps = []
    for _ in range(ticks):
        feed(fusion, clock.now_s)
        steps.append(runner.tick(clock.now_s))
        await runner.wait_plan()
        clock.now_s += 1 / fusion.contract.control_hz
    return steps


def expected_history_actions(execute_k: int, ticks: int) -> list[int]:
    """The ``history`` model's argmax actions with k-of-n execution, planned when the
    queue empties (lead 0): STOP while the first plan runs, then chunk after chunk."""
    history = deque([0] * DEFAULT.action_history, maxlen=DEFAULT.action_history)
    queue: deque[int] = deque()
    out = []
    for _ in range(ticks):
        action = queue.popleft() if queue else 0
        out.append(action)
        history.append(action)
        if not queue:
            queue.extend(history_chunk(history[-1], DEFAULT)[:execute_k])
    return out


@pytest.mark.parametrize("execute_k", [1, 2, 4])
def test_runner_executes_k_of_n_then_replans(tmp_path: Path, execute_k: int) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    clock = SteppedClock()
    fusion = FrameFusion(DEFAULT)
    config = PolicyConfig(model_path=path, execute_k=execute_k, temperature=0.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            steps = await lock_step(runner, fusion, clock, 13)
            assert steps[0] == Step(Action.STOP, "waiting for the first plan")
            assert [int(s.action) for s in steps] == expected_history_actions(execute_k, 13)
            assert all(s.reason is None for s in steps[1:])
            assert runner.status.dry_ticks == 0

    run(main)


def test_runner_stops_on_stale_input_and_drops_its_plan(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    clock = SteppedClock()
    fusion = FrameFusion(DEFAULT)
    config = PolicyConfig(model_path=path, temperature=0.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            first = runner.tick(0.0)
            assert first.action is Action.STOP
            assert first.reason == ("stale input: camera 'forward': no frame yet; "
                                    "camera 'wrist': no frame yet")
            steps = await lock_step(runner, fusion, clock, 3)
            assert [s.action for s in steps[1:]] == [Action.FORWARD, Action.RIGHT]
            late = runner.tick(clock.now_s + 0.3)  # no frame for 0.4 s
            assert late.action is Action.STOP
            assert late.reason is not None
            assert "camera 'forward': newest frame 0.400 s old" in late.reason
            assert runner.status.stale_ticks == 2
            feed(fusion, clock.now_s + 0.4)
            again = runner.tick(clock.now_s + 0.4)  # the old plan is gone: plan afresh
            assert again == Step(Action.STOP, "action queue ran dry: planning again")

    run(main)


def test_an_early_plan_sees_the_pending_actions_in_its_history(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    clock = SteppedClock()
    fusion = FrameFusion(DEFAULT)
    # A huge margin makes any latency look long: plan after the first pop of each chunk.
    config = PolicyConfig(model_path=path, execute_k=2, temperature=0.0,
                          latency_margin=1e6)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            assert runner.status.lead == 1
            steps = await lock_step(runner, fusion, clock, 6)
            # STOP; chunk(0) = 1, 3; planned after popping 1 with 3 pending: chunk(3) = 0, 2
            assert [int(s.action) for s in steps] == [0, 1, 3, 0, 2, 3]

    run(main)


def test_the_measured_latency_moves_the_start_of_the_next_plan(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    clock = SteppedClock(inference_s=0.25)  # 2.5 control periods
    fusion = FrameFusion(DEFAULT)
    config = PolicyConfig(model_path=path, execute_k=4, temperature=0.0, latency_margin=1.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            steps = await lock_step(runner, fusion, clock, 10)
            assert runner.status.latency_max_s == pytest.approx(0.25)
            assert runner.status.lead == 2  # plan with 2 actions left: they cover 0.3 s
            assert runner.status.keeps_up
            # STOP; chunk(0) = 1 3 1 3, cut short of nothing: the next plan starts after
            # the 2nd pop with [1, 3] pending, so it plans from last = 3: 0 2 0 2.
            assert [int(s.action) for s in steps] == [0, 1, 3, 1, 3, 0, 2, 0, 2, 3]

    run(main)


def test_hot_reload_swaps_in_a_verified_model(tmp_path: Path) -> None:
    old = build_model(tmp_path / "old.onnx", DEFAULT)
    table = np.zeros((DEFAULT.chunk_len, DEFAULT.n_actions), np.float32)
    table[:, int(Action.RIGHT)] = 1.0
    new = build_model(tmp_path / "new.onnx", DEFAULT, kind="table", table=table)
    clock = SteppedClock()
    fusion = FrameFusion(DEFAULT)
    config = PolicyConfig(model_path=old, execute_k=1, temperature=0.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            assert runner.model_sha256 == hashlib.sha256(old.read_bytes()).hexdigest()
            await lock_step(runner, fusion, clock, 3)
            sha = await runner.reload(new)
            assert sha == runner.model_sha256 == hashlib.sha256(new.read_bytes()).hexdigest()
            steps = await lock_step(runner, fusion, clock, 3)
            assert [s.action for s in steps[1:]] == [Action.RIGHT, Action.RIGHT]
            assert runner.status.reloads == 1

    run(main)


def test_a_refused_reload_keeps_the_old_model(tmp_path: Path) -> None:
    old = build_model(tmp_path / "old.onnx", DEFAULT)
    wrong = build_model(tmp_path / "wrong.onnx", DEFAULT, metadata=Contract(image_width=160))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not onnx")
    clock = SteppedClock()
    fusion = fresh_fusion(DEFAULT, 0.0)
    config = PolicyConfig(model_path=old, execute_k=1, temperature=0.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            sha = runner.model_sha256
            with pytest.raises(ContractMismatchError, match="image_width: model 160, runtime 128"):
                await runner.reload(wrong)
            assert runner.status.reload_error is not None
            assert "image_width" in runner.status.reload_error
            with pytest.raises(ModelFileError):
                await runner.reload(junk)
            assert runner.model_sha256 == sha
            assert runner.status.reloads == 0
            steps = await lock_step(runner, fusion, clock, 5)  # the old model still drives
            assert [int(s.action) for s in steps] == expected_history_actions(1, 5)

    run(main)
