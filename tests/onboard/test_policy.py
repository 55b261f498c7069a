"""The policy: loading and refusing models, sampling, the chunk queue's timing rule, and
the runner (partial chunks, stale inputs, early re-planning, hot reload).

The models are tiny ONNX graphs built by tests/onboard/onnx_models.py. Timing is judged
in ticks (the pure ``ActionQueue``) and with a stepped clock, never against the wall
clock: how fast real inference is belongs in a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto

from zima.contract import DEFAULT, Action, Contract
from zima.onboard.chunking import ActionQueue, choose_actions
from zima.onboard.config import RuntimeConfig
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import (
    ContractMismatchError,
    ModelFileError,
    ModelIOError,
    NoContractError,
    load_model,
)
from zima.onboard.policy_runner import PlanTrace, PolicyConfig, PolicyRunner, Step
from zima.onboard.runtime import Runtime
from zima.onboard.safety import BatteryLevel, DriveMode

from .lockstep import SteppedClock, expected_history_actions, feed, lock_step
from .onnx_models import build_model, history_chunk

GUARD_S = 20.0


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` under a wall-clock guard."""

    async def guarded() -> None:
        async with asyncio.timeout(GUARD_S):
            await main()

    asyncio.run(guarded())


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """The default test model (its chunk follows from the action history) for DEFAULT."""
    return build_model(tmp_path / "p.onnx", DEFAULT)


@pytest.fixture
def fusion() -> FrameFusion:
    return FrameFusion(DEFAULT)


def fresh_fusion(contract: Contract, now_s: float) -> FrameFusion:
    fusion = FrameFusion(contract)
    feed(fusion, now_s)
    return fusion


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


# ---- the queue's timing rule, on the loop's ticks -----------------------------------------

TICK_S = 0.02  # the runtime's control loop: 50 Hz
ACTION_S = 1 / DEFAULT.control_hz  # an action lasts 100 ms
TICKS_PER_ACTION = 5


def test_the_queue_executes_the_first_k_of_a_chunk_in_order() -> None:
    queue = ActionQueue(DEFAULT, execute_k=2)
    queue.install([1, 2, 3, 0])
    assert [queue.pop(0.0), queue.pop(0.1), queue.pop(0.2)] == [1, 2, None]
    with pytest.raises(ValueError, match="execute_k=5"):
        ActionQueue(DEFAULT, execute_k=5)
    with pytest.raises(ValueError, match=r"tick_s=0\.2"):
        ActionQueue(DEFAULT, execute_k=2, tick_s=0.2)


@dataclass
class Timeline:
    """What the queue did, tick by tick, with an inference of constant latency."""

    actions: list[int | None]  # per tick: the planned action running, None when dry
    plans_s: list[float]  # when each plan started
    chunks_s: list[float]  # when each chunk's first action started
    ready_s: list[float]  # when each plan's result was ready
    lead_ticks: int


def simulate(latency_s: float, execute_k: int, ticks: int = 400, tick_s: float = TICK_S,
             jitter_s: Callable[[int], float] = lambda i: 0.0) -> Timeline:
    """Run the queue's rule at every tick ``i`` (at ``i * tick_s + jitter_s(i)``) with an
    inference of ``latency_s``: a result is installed at the first tick at or after it is
    ready. Chunk ``n``'s actions are numbered ``10 n + j``."""
    queue = ActionQueue(DEFAULT, execute_k, tick_s=tick_s)
    queue.latency.add(latency_s)
    timeline = Timeline([], [], [], [], queue.lead_ticks)
    ready_s: float | None = None  # when the plan in flight finishes
    for i in range(ticks):
        now_s = i * tick_s + jitter_s(i)
        if ready_s is not None and ready_s <= now_s:
            n = len(timeline.ready_s)
            queue.install([n * 10 + j for j in range(DEFAULT.chunk_len)])
            timeline.ready_s.append(ready_s)
            ready_s = None
        planned = queue.advance(now_s)
        timeline.actions.append(planned.action if planned is not None else None)
        if planned is not None and planned.started and planned.action % 10 == 0:
            timeline.chunks_s.append(now_s)
        if queue.should_plan(now_s, in_flight=ready_s is not None):
            timeline.plans_s.append(now_s)
            ready_s = now_s + latency_s
    return timeline


@pytest.mark.parametrize("execute_k", [1, 2, 4])
@pytest.mark.parametrize("latency_s", [0.001, 0.004, 0.013, 0.02, 0.05])
def test_a_plan_starts_as_late_as_its_latency_allows_and_no_tick_runs_dry(
        execute_k: int, latency_s: float) -> None:
    timeline = simulate(latency_s, execute_k)
    # The lead: the least whole ticks covering 1.5 x the latency, at least one.
    assert timeline.lead_ticks == max(1, math.ceil(1.5 * latency_s / TICK_S - 1e-9))
    lead_s = timeline.lead_ticks * TICK_S
    # The first chunk: its first action at the first tick after its result is ready.
    first = timeline.actions.index(0)
    assert first == math.ceil(latency_s / TICK_S)
    assert timeline.chunks_s[0] == pytest.approx(first * TICK_S)
    # Every later plan starts lead_s before its chunk's first action is due, and that
    # action runs exactly then: at the tick the chunk before ends.
    chunk_s = execute_k * ACTION_S
    for n in range(1, len(timeline.chunks_s)):
        assert timeline.chunks_s[n] == pytest.approx(timeline.chunks_s[0] + n * chunk_s)
        assert timeline.plans_s[n] == pytest.approx(timeline.chunks_s[n] - lead_s)
    # No dry tick after the first chunk; each action lasts 100 ms (5 ticks); each chunk
    # runs its first k actions, in order.
    actions = timeline.actions[first:]
    assert None not in actions
    last_chunk = actions[-1]
    assert last_chunk is not None
    whole = [a for a in actions if a is not None and a // 10 < last_chunk // 10]
    assert whole == [10 * n + j for n in range(last_chunk // 10) for j in range(execute_k)
                     for _ in range(TICKS_PER_ACTION)]


def test_the_rhythm_survives_loop_jitter_under_half_a_tick() -> None:
    rng = np.random.default_rng(0)
    late_s = rng.uniform(0.0, 0.45 * TICK_S, 400)  # [ticks] a loop wakes late, never early
    timeline = simulate(0.004, execute_k=4, jitter_s=lambda i: float(late_s[i]))
    first = timeline.actions.index(0)
    actions = timeline.actions[first:]
    assert None not in actions
    runs = [len(list(group)) for _, group in itertools.groupby(actions)]
    assert set(runs[:-1]) == {TICKS_PER_ACTION}  # not one action cut short or held over


def test_lock_step_ticks_once_per_action_plan_one_action_ahead() -> None:
    """Ticked once per action (the old lock-step callers), the rule plans when the last
    queued action starts, and its chunk follows it without a gap."""
    timeline = simulate(0.0, execute_k=4, ticks=40, tick_s=ACTION_S)
    assert timeline.lead_ticks == 1
    assert timeline.actions[:10] == [None, 0, 1, 2, 3, 10, 11, 12, 13, 20]


def test_the_queue_runs_dry_when_latency_exceeds_k_actions() -> None:
    timeline = simulate(latency_s=0.45, execute_k=4)
    assert None in timeline.actions[50:]
    queue = ActionQueue(DEFAULT, execute_k=4, tick_s=TICK_S)
    queue.latency.add(0.45)
    assert not queue.keeps_up
    queue.latency.add(0.2)
    assert not queue.keeps_up  # the recent worst is still 0.45 s
    for _ in range(30):
        queue.latency.add(0.2)
    assert queue.keeps_up


def test_lead_grows_with_the_recent_worst_latency() -> None:
    queue = ActionQueue(DEFAULT, execute_k=4, latency_margin=1.0, tick_s=TICK_S)
    leads = []
    for latency_s in (0.001, 0.019, 0.021, 0.05, 0.01):
        queue.latency.add(latency_s)
        leads.append(queue.lead_ticks)
    assert leads == [1, 1, 2, 3, 3]  # the recent worst, not the last
    assert queue.lead_s == pytest.approx(0.06)


# ---- the runner -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stepped_runner(fusion: FrameFusion, model_path: Path, *, inference_s: float = 0.0,
                         **config: Any) -> AsyncIterator[tuple[PolicyRunner, SteppedClock]]:
    """A runner of ``model_path`` (``config``: the rest of its ``PolicyConfig``) reading
    ``fusion`` on a ``SteppedClock`` whose inferences take ``inference_s``."""
    clock = SteppedClock(inference_s)
    async with PolicyRunner(PolicyConfig(model_path=model_path, **config), DEFAULT, fusion,
                            clock=clock) as runner:
        yield runner, clock


@pytest.mark.parametrize("execute_k", [1, 2, 4])
def test_runner_executes_k_of_n_then_replans(model_path: Path, fusion: FrameFusion,
                                             execute_k: int) -> None:
    async def main() -> None:
        async with stepped_runner(fusion, model_path, execute_k=execute_k,
                                  temperature=0.0) as (runner, clock):
            steps = await lock_step(runner, fusion, clock, 13)
            assert steps[0] == Step(Action.STOP, "waiting for the first plan")
            assert [int(s.action) for s in steps] == expected_history_actions(execute_k, 13)
            assert all(s.reason is None for s in steps[1:])
            assert runner.status.dry_ticks == 0

    run(main)


def test_runner_stops_on_stale_input_and_drops_its_plan(model_path: Path,
                                                        fusion: FrameFusion) -> None:
    async def main() -> None:
        async with stepped_runner(fusion, model_path, temperature=0.0) as (runner, clock):
            first = runner.tick(0.0)
            assert first.action is Action.STOP
            assert first.reason == ("stale input: camera 'forward': no frame yet; "
                                    "camera 'wrist': no frame yet")
            steps = await lock_step(runner, fusion, clock, 3)  # frames at 0.0 .. 0.2
            assert [s.action for s in steps[1:]] == [Action.FORWARD, Action.RIGHT]
            assert runner.tick(0.3).action is Action.FORWARD  # frames 0.1 s old: fine
            assert runner.tick(0.4).action is Action.RIGHT  # and plans the next chunk
            await runner.wait_plan()
            late = runner.tick(0.5)  # no frame for 0.3 s
            assert late.action is Action.STOP
            assert late.reason is not None
            assert "camera 'forward': newest frame 0.300 s old" in late.reason
            assert runner.status.stale_ticks == 2
            feed(fusion, 0.6)
            again = runner.tick(0.6)  # the old plan is gone: plan afresh
            assert again == Step(Action.STOP, "action queue ran dry: planning again")

    run(main)


def test_an_early_plan_sees_the_pending_actions_in_its_history(model_path: Path,
                                                               fusion: FrameFusion) -> None:
    async def main() -> None:
        # A huge margin makes any latency look long: plan as soon as the last plan is back.
        async with stepped_runner(fusion, model_path, execute_k=2, temperature=0.0,
                                  latency_margin=1e6) as (runner, clock):
            assert not runner.status.keeps_up
            steps = await lock_step(runner, fusion, clock, 6)
            # STOP; chunk(0) = 1, 3; planned after popping 1 with 3 pending: chunk(3) = 0, 2
            assert [int(s.action) for s in steps] == [0, 1, 3, 0, 2, 3]

    run(main)


def test_the_measured_latency_moves_the_start_of_the_next_plan(model_path: Path,
                                                               fusion: FrameFusion) -> None:
    async def main() -> None:
        # inferences of 2.5 action periods, ticked once per action
        async with stepped_runner(fusion, model_path, execute_k=4, temperature=0.0,
                                  latency_margin=1.0, inference_s=0.25) as (runner, clock):
            steps = await lock_step(runner, fusion, clock, 12)
            assert runner.status.latency_max_s == pytest.approx(0.25)
            assert runner.status.lead_s == pytest.approx(0.3)  # 3 ticks cover 0.25 s
            assert runner.status.keeps_up
            assert runner.status.dry_ticks == 0
            # STOP while the first plan runs (0.25 s: its result is taken at the tick at
            # 0.3 s); chunk(0) = 1 3 1 3; the next plan starts 0.3 s before the chunk ends
            # (at its 2nd action, [1, 3] pending) so it plans from last = 3: 0 2 0 2, then
            # from 2: 3 1 3 1.
            assert [int(s.action) for s in steps] == [0, 0, 0, 1, 3, 1, 3, 0, 2, 0, 2, 3]

    run(main)


# ---- the runner at the control loop's resolution -----------------------------------------


async def loop_ticks(runner: PolicyRunner, fusion: FrameFusion, clock: SteppedClock,
                     ticks: range, *, frames: bool = True) -> list[Step]:
    """Tick ``i`` at ``i * TICK_S`` on the stepped clock (fresh frames first unless
    ``frames`` is False), each plan waited for: its result is taken at the first tick
    at or after its modelled latency."""
    steps = []
    for i in ticks:
        clock.now_s = i * TICK_S
        if frames:
            feed(fusion, clock.now_s)
        steps.append(runner.tick(clock.now_s))
        await runner.wait_plan()
    return steps


@pytest.mark.parametrize(("inference_s", "lead_ticks"), [(0.004, 1), (0.013, 1), (0.02, 2),
                                                         (0.05, 4)])
def test_the_runner_plans_at_the_loops_resolution(model_path: Path, fusion: FrameFusion,
                                                   inference_s: float, lead_ticks: int) -> None:
    clock = SteppedClock(inference_s)
    traces: list[PlanTrace] = []
    # latency_window=1: the plans' own latency, not the load's warm-up (wall clock).
    config = PolicyConfig(model_path=model_path, execute_k=4, temperature=0.0, latency_window=1)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock, on_plan=traces.append,
                                tick_s=TICK_S) as runner:
            steps = await loop_ticks(runner, fusion, clock, range(100))
            st_ = runner.status
            assert st_.lead_s == pytest.approx(lead_ticks * TICK_S)
            assert st_.dry_ticks == 0
            # The first chunk: its first action at the first tick after it is ready.
            ready_tick = math.ceil(inference_s / TICK_S - 1e-9)
            first = traces[0]
            assert (first.tick_s, first.acted_s) == pytest.approx((0.0, ready_tick * TICK_S))
            assert all(s.reason == "waiting for the first plan" for s in steps[:ready_tick])
            # Every later one: planned lead_ticks before it is due, due when the chunk
            # before ends, its observation exactly that old when its first action runs.
            for n, trace in enumerate(traces[1:], start=1):
                assert trace.acted_s == pytest.approx(first.acted_s + n * 4 * ACTION_S)
                assert trace.tick_s == pytest.approx(trace.acted_s - lead_ticks * TICK_S)
                assert trace.captured_s == (trace.tick_s, trace.tick_s)
            assert len(traces) == 5
            assert st_.obs_age_s == pytest.approx(lead_ticks * TICK_S)
            assert st_.obs_age_p99_s == pytest.approx(lead_ticks * TICK_S)
            # Each action holds for 5 ticks, the chunks follow each other without a gap.
            actions = [int(s.action) for s in steps[ready_tick:]]
            runs = [(a, len(list(g))) for a, g in itertools.groupby(actions)]
            assert all(n == TICKS_PER_ACTION for _, n in runs[:-1])
            assert all(s.reason is None for s in steps[ready_tick:])
            # The history holds one entry per action (not per tick): the last four.
            assert [a for a, _ in runs[-4:]] == (
                fusion.observe(clock.now_s).action_history[0].tolist())

    run(main)


def test_stale_frames_stop_the_runner_between_loop_ticks(model_path: Path,
                                                         fusion: FrameFusion) -> None:
    clock = SteppedClock(0.004)
    config = PolicyConfig(model_path=model_path, execute_k=4, temperature=0.0, latency_window=1)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock, tick_s=TICK_S) as runner:
            await loop_ticks(runner, fusion, clock, range(10))  # frames up to 0.18 s
            blind = await loop_ticks(runner, fusion, clock, range(10, 30), frames=False)
            # Fresh enough up to 0.25 s after the last frame (tick 21 at 0.42 s): then STOP.
            assert all(s.reason is None for s in blind[:12])
            assert all(s.action is Action.STOP and s.reason is not None
                       and s.reason.startswith("stale input") for s in blind[12:])
            assert runner.status.stale_ticks == 8
            again = await loop_ticks(runner, fusion, clock, range(30, 33))
            assert again[0] == Step(Action.STOP, "action queue ran dry: planning again")
            assert [s.reason for s in again[1:]] == [None, None]  # planned afresh

    run(main)


def test_a_runner_not_ticked_for_an_action_forgets_its_plan(model_path: Path,
                                                            fusion: FrameFusion) -> None:
    """Autonomy paused (the runtime stops ticking it): a queued chunk is old news."""
    clock = SteppedClock()
    config = PolicyConfig(model_path=model_path, execute_k=4, temperature=0.0)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock, tick_s=TICK_S) as runner:
            await loop_ticks(runner, fusion, clock, range(3))
            assert runner.status.plans == 1
            back = await loop_ticks(runner, fusion, clock, range(20, 22))
            assert back[0] == Step(Action.STOP, "waiting for the first plan")
            assert back[1].reason is None
            assert runner.status.dry_ticks == 0

    run(main)


def test_bad_output_stops_at_once_and_faults_at_the_loops_rate(tmp_path: Path) -> None:
    table = np.zeros((DEFAULT.chunk_len, DEFAULT.n_actions), np.float32)
    table[:, int(Action.LEFT)] = 20.0
    path = build_model(tmp_path / "nan.onnx", DEFAULT, kind="table", table=table,
                       nan_above_mean=140.0)
    clock = SteppedClock(0.004)
    fusion = FrameFusion(DEFAULT)
    config = PolicyConfig(model_path=path, execute_k=4, temperature=0.0, latency_window=1)

    def bright(fusion: FrameFusion, now_s: float) -> None:
        for cam in fusion.contract.cameras:
            fusion.push(cam, np.full((96, 128, 3), 250, np.uint8), now_s)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock, tick_s=TICK_S) as runner:
            good = await loop_ticks(runner, fusion, clock, range(10))
            assert good[-1] == Step(Action.LEFT)
            steps = []
            for i in range(10, 30):  # bright frames: every plan's output is NaN
                clock.now_s = i * TICK_S
                bright(fusion, clock.now_s)
                steps.append(runner.tick(clock.now_s))
                await runner.wait_plan()
            reasons = [s.reason or s.action.name for s in steps]
            # The chunk running keeps on until the next plan (due 0.02 s before it ends,
            # on bright frames) comes back bad: then STOP at once, never LEFT again.
            cut = reasons.index(next(r for r in reasons if r.startswith("bad model output")))
            assert set(reasons[:cut]) == {"LEFT"}
            assert all(r.startswith(("bad model output", "model faulty")) for r in reasons[cut:])
            assert reasons[-1].startswith("model faulty: 3 bad outputs in a row")
            assert runner.status.bad_outputs == 3

    run(main)


def test_the_runtime_ticks_the_runner_at_its_loop_rate_and_reports_the_age(
        tmp_path: Path) -> None:
    """The runtime's policy tick, once per loop tick: the runner plans one 20 ms tick
    ahead (not one 100 ms action), and telemetry/policy says how old its view was."""
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    clock = SteppedClock(0.004)
    runtime = Runtime(RuntimeConfig(loop_hz=50.0), clock=clock)
    config = PolicyConfig(model_path=path, temperature=0.0, latency_window=1)

    async def main() -> None:
        async with PolicyRunner(config, DEFAULT, runtime.fusion, clock=clock,
                                tick_s=1.0 / runtime.config.loop_hz) as runner:
            runtime._runner = runner  # the runtime's policy as _start_policy builds it
            runtime.safety.update(now_s=0.0, link_up=True, battery=BatteryLevel.OK,
                                  estop_latched_on_mcu=False, policy_ready=True)
            runtime.safety.request_mode(DriveMode.AUTONOMOUS, source="test", now_s=0.0)
            for i in range(60):
                clock.now_s = i * TICK_S
                feed(runtime.fusion, clock.now_s)
                runtime._policy_tick(clock.now_s)
                await runner.wait_plan()
            record = runtime.telemetry_record("policy")
            assert record is not None
            assert runner.tick_s == TICK_S
            assert (record["obs_age_ms"], record["obs_age_p50_ms"], record["obs_age_p99_ms"],
                    record["lead_ms"], record["dry_ticks"]) == (20.0, 20.0, 20.0, 20.0, 0)
            loop = runtime.telemetry_record("loop")
            assert loop is not None
            assert {"jitter_p50_ms", "jitter_p99_ms", "jitter_max_ms"} <= set(loop)

    run(main)


def test_hot_reload_swaps_in_a_verified_model(tmp_path: Path) -> None:
    old = build_model(tmp_path / "old.onnx", DEFAULT)
    table = np.zeros((DEFAULT.chunk_len, DEFAULT.n_actions), np.float32)
    table[:, int(Action.RIGHT)] = 1.0
    new = build_model(tmp_path / "new.onnx", DEFAULT, kind="table", table=table)
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, old, execute_k=1, temperature=0.0) as (runner, clock):
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
    fusion = fresh_fusion(DEFAULT, 0.0)

    async def main() -> None:
        async with stepped_runner(fusion, old, execute_k=1, temperature=0.0) as (runner, clock):
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
