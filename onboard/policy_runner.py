"""``PolicyRunner``: the policy in the control loop, with inference off the loop.

An async context manager. Entering loads and verifies the model (``ModelError`` at
start-up: a wrong model is found before the robot moves). The control loop then calls
``tick(now_s)`` at every one of its ticks (``tick_s`` apart: 20 ms in the runtime); it
never blocks and returns the ``Step`` to execute::

    async with PolicyRunner(PolicyConfig(model_path=path), contract, fusion,
                            tick_s=1 / 50) as runner:
        while True:
            for frame in rig.new_frames():
                fusion.push(frame.camera, frame.image_rgb, frame.captured_s)
            step = runner.tick(clock())           # Step(action, reason, tracks)
            command = step.tracks or contract.track_command(step.action)
            safety.policy_step(left_mm_s=command.left_mm_s, ...)  # Safety drives

The runner decides itself, at the loop's resolution, when an action starts and when to
plan (:mod:`zima.onboard.chunking`): each action lasts the contract's action period
(``1 / control_hz``, 100 ms); a plan starts the fewest whole ticks before its chunk's
first action is due that cover the recent worst latency with margin (one tick, 20 ms,
for the demo model), so its observation is that fresh when the action runs; a chunk that
arrives while nothing runs starts at the first tick that finds it ready. Each tick: take
a finished inference's chunk into the queue; if any camera is stale, drop the planned
actions (and the plan in flight) and STOP; else the running action, or the next one when
its period is over, or STOP when the queue ran dry; start the next plan when it is due.
Every STOP the runner forces carries a ``reason``. An executed action enters the fusion's
action history once, when it starts (``action_started`` says the tick did); a forced STOP
once per action period. A runner not ticked for longer than an action (autonomy paused)
forgets its plan and starts afresh. Inference runs on one worker thread (onnxruntime
releases the GIL); its latency, from submission to result, is measured with the injected
clock, and a result is not taken before that clock reaches its end (a lock-step caller's
clock can model a latency; a real one is always past it).

``status`` tells the operator how fresh the robot's view is: ``obs_age_s`` (the last),
``obs_age_p50_s`` and ``obs_age_p99_s`` (recent chunks): the observation's age when its
chunk's first action starts, from the capture of its oldest camera's newest frame.

Both kinds of model run this way (:mod:`zima.onboard.policy`). A discrete model's logits
give each step's action (sampled at ``temperature``). A continuous model's track speeds
give each step's track command (clipped to +-``forward_mm_s``,
:meth:`~zima.contract.Contract.clipped_command`; no sampling, ``temperature`` is unused)
in ``Step.tracks``, and its ``action`` is the command's
:func:`~zima.contract.nearest_action`: that is what enters the action history, the
recordings and the simulator's success test. A forced STOP never carries a track command.

**Every output is checked before an action is taken from it**
(:func:`~zima.onboard.policy.check_output`: finite, logits within +-MAX_ABS_LOGIT, track
speeds within +-TRACKS_LIMIT_FACTOR * forward_mm_s). A bad one queues nothing, drops what
was queued, and each tick until the next good plan is a STOP with the reason ``"bad model
output: ..."``; ``status`` counts them (``bad_outputs`` in all, ``bad_in_row`` since the
last good one, ``last_bad_output`` its text). After ``PolicyConfig.max_bad_outputs`` in a
row the model is **faulty**: ``status.faulty`` says why, no more plans start, and every
tick is a STOP with the reason ``"model faulty: ..."`` until a successful ``reload``
clears it (the runtime puts the robot in ``idle`` while it is set). An inference that
raises (an onnxruntime error) is a STOP with the reason ``"no plan: inference failed: ..."``.

``on_plan`` (optional, a callback on the event loop) receives a ``PlanTrace`` for every
plan whose chunk's first action starts, at that tick: when it passed each stage, on the
injected clock. It is how
bench/runtime_bench.py splits the camera-to-command latency; nothing else depends on it.

``reload(path)`` loads and verifies a new file on another thread while the old model
keeps driving, and swaps it in only if it passed (one assignment: plans started after
the swap use it). Verifying runs the model on the sample observations the file ships, if
any (``zima export --samples``): a model that is bad on them is refused. A refused file
raises ``ModelError`` and leaves the old model in place (and a faulty one faulty);
``status`` reports both, and ``model_sha256`` the file in use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from zima.contract import Action, Contract, TrackCommand, nearest_action
from zima.onboard.chunking import ActionQueue, Planned, RecentTimes, choose_actions
from zima.onboard.fusion import FrameFusion, Observation
from zima.onboard.policy import (
    BadOutputError,
    ModelError,
    PolicyModel,
    check_output,
    load_model,
)

__all__ = ["PlanTrace", "PolicyConfig", "PolicyRunner", "PolicyStatus", "Step"]

log = logging.getLogger("zima.onboard.policy")

OBS_AGE_WINDOW = 200  # chunks the observation age's percentiles are taken over


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy runner. Times in seconds."""

    model_path: Path = Path("/var/lib/zima/policy.onnx")  # where deploy puts the model
    execute_k: int = 4  # actions executed per chunk before the next takes over (1..chunk_len)
    temperature: float = 1.0  # softmax sampling temperature (the prototype's); 0 = argmax;
    # unused by a continuous model (its track speeds are driven as they are)
    seed: int | None = None  # sampling seed (None: fresh entropy); tests and replays fix it
    latency_margin: float = 1.5  # plan as if inference took this times the recent worst
    latency_window: int = 20  # inferences the recent worst latency is taken over
    intra_op_threads: int = 1  # onnxruntime threads: leave cores to cameras and the link
    max_bad_outputs: int = 3  # bad outputs in a row that make the model faulty (until reload)

    def __post_init__(self) -> None:
        if self.execute_k < 1:
            raise ValueError(f"PolicyConfig.execute_k={self.execute_k} must be >= 1")
        if not self.temperature >= 0:
            raise ValueError(f"PolicyConfig.temperature={self.temperature} must be >= 0")
        if self.intra_op_threads < 1:
            raise ValueError("PolicyConfig.intra_op_threads must be >= 1")
        if self.max_bad_outputs < 1:
            raise ValueError(f"PolicyConfig.max_bad_outputs={self.max_bad_outputs} must be >= 1")


@dataclass(frozen=True, slots=True)
class Step:
    """What to do this tick: the policy's action, or a STOP with the reason for it."""

    action: Action  # a continuous model's step: the nearest action of ``tracks``
    reason: str | None = None  # set when the runner forced STOP
    tracks: TrackCommand | None = None  # a continuous model's command to drive, mm/s


@dataclass(frozen=True, slots=True)
class PlanTrace:
    """When one queued plan passed each stage (seconds on the runner's clock)."""

    captured_s: tuple[float, ...]  # the observation's newest frame of each camera
    tick_s: float  # the control tick that started the plan
    submitted_s: float  # handed to the worker thread
    started_s: float  # the worker thread began it
    inferred_s: float  # the model's logits were back
    finished_s: float  # its actions were chosen: the result went back to the event loop
    collected_s: float  # the control tick that queued its chunk
    queued_ahead: int  # actions queued ahead of the chunk's then (not counting a running one)
    acted_s: float = math.nan  # the control tick its first action started at


@dataclass(frozen=True, slots=True)
class _Inference:
    actions: list[int]
    tracks: list[TrackCommand] | None  # a continuous model's commands, one per action
    started_s: float
    inferred_s: float
    finished_s: float


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """Telemetry of the runner."""

    model_sha256: str
    plans: int  # inferences finished
    dry_ticks: int  # ticks that found the queue empty (after the first plan)
    stale_ticks: int  # ticks refused because a camera was stale
    latency_max_s: float  # recent worst inference latency
    latency_ema_s: float | None
    lead_s: float  # a plan starts this long before its first action is due (whole ticks)
    keeps_up: bool  # lead_s fits in the execute_k actions a chunk lasts
    reloads: int  # models swapped in by reload()
    reload_error: str | None  # why the last refused reload was refused
    reload_failures: int = 0  # reloads refused so far (a new refusal shows as a new count)
    bad_outputs: int = 0  # inferences whose output failed check_output, in all
    bad_in_row: int = 0  # ... since the last good one (or the last successful reload)
    last_bad_output: str | None = None  # what was wrong with the newest bad output
    faulty: str | None = None  # why the model is faulty (every tick STOPs); None: it is not
    # The observation's age when its chunk's first action starts (now minus the capture
    # time of its oldest camera's newest frame): the last one, and over the recent ones.
    obs_age_s: float | None = None
    obs_age_p50_s: float | None = None
    obs_age_p99_s: float | None = None


class PolicyRunner:
    """See the module docstring."""

    def __init__(
        self,
        config: PolicyConfig,
        contract: Contract,
        fusion: FrameFusion,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_plan: Callable[[PlanTrace], None] | None = None,
        tick_s: float | None = None,
    ) -> None:
        if fusion.contract != contract:
            raise ValueError("PolicyRunner: the fusion was built for another contract")
        self.config, self.contract, self.fusion = config, contract, fusion
        self._clock = clock
        self.on_plan = on_plan
        self._rng = np.random.default_rng(config.seed)  # used on the worker thread only
        self._queue = ActionQueue(contract, config.execute_k, config.latency_margin,
                                  config.latency_window, tick_s)
        self._model: PolicyModel | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: asyncio.Future[_Inference] | None = None
        self._in_flight_since_s = 0.0
        self._in_flight_trace: tuple[tuple[float, ...], float, float] = ((), 0.0, 0.0)
        self._discard_in_flight = False
        self._last_tick_s: float | None = None
        self._waiting = True  # no chunk has started since start-up (or a pause)
        self._stop_ends_s: float | None = None  # the end of a forced STOP's action period
        self.action_started = False  # the last tick started an action (the recorder's cue)
        self._obs_age = RecentTimes(OBS_AGE_WINDOW)
        self._plans = self._dry = self._stale = self._reloads = 0
        self._reload_error: str | None = None
        self._reload_failures = 0
        self._no_plan: str | None = None  # why the last inference gave no plan: a STOP reason
        self._bad_outputs = self._bad_in_row = 0
        self._last_bad_output: str | None = None
        self._faulty: str | None = None

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._model = await asyncio.to_thread(self._load, self.config.model_path)
        self._queue.latency.add(self._model.warmup_latency_s)  # the first lead's estimate
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="policy")
        log.info("policy %s (sha256 %s) loaded", self._model.path, self._model.sha256[:12])
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])  # let the worker finish; result unused
            self._in_flight.exception()  # retrieved: no "never retrieved" warning
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ---- the control loop's side --------------------------------------------------------
    @property
    def model_sha256(self) -> str:
        return self._loaded().sha256

    @property
    def faulty(self) -> str | None:
        """Why the model is faulty (``status.faulty``, without building the status)."""
        return self._faulty

    @property
    def tick_s(self) -> float:
        """The period of the loop that ticks the runner (the contract's action period
        unless set: a lock-step caller ticks once per action)."""
        return self._queue.tick_s

    @tick_s.setter
    def tick_s(self, value: float) -> None:
        self._queue.set_tick(value)

    def tick(self, now_s: float) -> Step:
        """The step to execute now; call at every tick of the control loop (period
        ``tick_s``) from the event loop. ``action_started`` then says whether an action
        (a planned one, or a forced STOP's period) started at this tick."""
        self.action_started = False
        queue = self._queue
        if self._last_tick_s is not None and (
                now_s - self._last_tick_s > queue.action_s + queue.tick_s / 2):
            self._restart()  # not ticked for a while (idle, a stalled loop): its plan is old
        self._last_tick_s = now_s
        self._collect(now_s)
        if self._faulty is not None:  # no plan starts until a reload clears it
            return self._forced_stop(now_s, f"model faulty: {self._faulty}")
        reasons = self.fusion.stale_reasons(now_s)
        if reasons:
            self._stale += 1
            queue.flush()
            self._discard_in_flight = self._in_flight is not None
            return self._forced_stop(now_s, "stale input: " + "; ".join(reasons))
        planned = queue.advance(now_s)
        if planned is None:
            step = self._forced_stop(now_s, self._dry_reason(now_s))
        else:
            step = Step(Action(planned.action), tracks=planned.tracks)
            if planned.started:
                self._start(now_s, planned)
        if queue.should_plan(now_s, self._in_flight is not None):
            self._plan(self.fusion.observe(now_s, queue.pending), now_s)
        return step

    async def wait_plan(self) -> None:
        """Wait until the plan in flight (if any) has finished; the next tick takes it.
        For lock-step use (the simulator, tests); a real-time loop never waits."""
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])

    @property
    def status(self) -> PolicyStatus:
        latency = self._queue.latency
        return PolicyStatus(
            model_sha256=self.model_sha256, plans=self._plans, dry_ticks=self._dry,
            stale_ticks=self._stale, latency_max_s=latency.max_s, latency_ema_s=latency.ema_s,
            lead_s=self._queue.lead_s, keeps_up=self._queue.keeps_up, reloads=self._reloads,
            reload_error=self._reload_error, reload_failures=self._reload_failures,
            bad_outputs=self._bad_outputs, bad_in_row=self._bad_in_row,
            last_bad_output=self._last_bad_output, faulty=self._faulty,
            obs_age_s=self._obs_age.last_s, obs_age_p50_s=self._obs_age.percentile_s(50),
            obs_age_p99_s=self._obs_age.percentile_s(99))

    async def reload(self, path: Path | None = None) -> str:
        """Verify the model at ``path`` (default: the configured one) and swap it in;
        its sha256. A refused model raises ``ModelError``; the old one keeps running.
        A model swapped in clears ``faulty`` and ``bad_in_row``."""
        old = self._loaded()
        try:
            new = await asyncio.to_thread(self._load, path or self.config.model_path)
        except ModelError as exc:
            self._reload_error = str(exc)
            self._reload_failures += 1
            log.error("reload refused, keeping model %s: %s", old.sha256[:12], exc)
            raise
        self._model = new  # atomic for the loop: the next plan uses it
        self._reloads += 1
        self._reload_error = None
        if self._faulty is not None:
            log.warning("policy no longer faulty: reloaded %s", new.sha256[:12])
        self._faulty = None
        self._bad_in_row = 0
        self._no_plan = None  # the old model's last failure is not the new one's
        log.info("policy reloaded: %s -> %s", old.sha256[:12], new.sha256[:12])
        return new.sha256

    # ---- internals ----------------------------------------------------------------------
    def _load(self, path: Path) -> PolicyModel:
        return load_model(path, self.contract, self.config.intra_op_threads)

    def _loaded(self) -> PolicyModel:
        if self._model is None:
            raise RuntimeError("PolicyRunner used outside its `async with`")
        return self._model

    def _forced_stop(self, now_s: float, reason: str) -> Step:
        """A STOP the runner forces; it enters the action history once per action period
        (a chunk that arrives meanwhile starts at once)."""
        if self._stop_ends_s is None or now_s >= self._stop_ends_s - self._queue.tick_s / 2:
            self._stop_ends_s = now_s + self._queue.action_s
            self.fusion.record_action(Action.STOP)
            self.action_started = True
        return Step(Action.STOP, reason)

    def _dry_reason(self, now_s: float) -> str:
        """Why nothing planned runs now; counts the dry tick (not while the first chunk
        is awaited)."""
        if self._waiting and self._no_plan is None:
            return "waiting for the first plan"
        self._dry += 1
        if self._no_plan is not None:
            return self._no_plan
        if self._in_flight is not None:
            running_s = now_s - self._in_flight_since_s
            return (f"action queue ran dry: inference running for {running_s:.3f} s "
                    f"(recent worst {self._queue.latency.max_s:.3f} s)")
        return "action queue ran dry: planning again"

    def _start(self, now_s: float, planned: Planned) -> None:
        """A planned action starts at this tick: into the history; a chunk's first one
        also ends the wait for it, and gives its observation's age and its trace."""
        self._stop_ends_s = None
        self.action_started = True
        self.fusion.record_action(planned.action)
        trace = planned.tag
        if isinstance(trace, PlanTrace):
            self._waiting = False
            self._obs_age.add(now_s - min(trace.captured_s))
            if self.on_plan is not None:
                self.on_plan(dataclasses.replace(trace, acted_s=now_s))

    def _restart(self) -> None:
        """Forget the plan (queued, running and in flight): as at start-up."""
        self._queue.flush()
        self._discard_in_flight = self._in_flight is not None
        self._waiting = True
        self._stop_ends_s = None

    def _plan(self, obs: Observation, now_s: float) -> None:
        model, executor = self._loaded(), self._executor
        loop = asyncio.get_running_loop()
        submitted_s = self._clock()
        self._in_flight = loop.run_in_executor(executor, self._infer, model, obs)
        self._in_flight_since_s = now_s
        self._in_flight_trace = (obs.newest_s, now_s, submitted_s)
        self._discard_in_flight = False

    def _infer(self, model: PolicyModel, obs: Observation) -> _Inference:
        """On the worker thread: the model's output, checked (``BadOutputError``), then
        the chunk's actions (and track commands), and when each was done."""
        started_s = self._clock()
        out = model.infer(obs.images, obs.action_history)  # [chunk_len, n_actions | 2]
        inferred_s = self._clock()
        check_output(out, model.output, self.contract)  # before any action is taken from it
        if not model.continuous:
            actions = choose_actions(out, self.config.temperature, self._rng)
            return _Inference(actions, None, started_s, inferred_s, self._clock())
        tracks = [self.contract.clipped_command(float(left), float(right))
                  for left, right in out]  # [chunk_len]
        actions = [int(nearest_action(t.left_mm_s, t.right_mm_s)) for t in tracks]
        return _Inference(actions, tracks, started_s, inferred_s, self._clock())

    def _collect(self, now_s: float) -> None:
        done = self._in_flight
        if done is None or not done.done():
            return
        if done.exception() is None and done.result().finished_s > now_s:
            return  # a lock-step caller's clock: the modelled latency is not over yet
        self._in_flight = None
        try:
            result = done.result()
        except BadOutputError as exc:
            self._bad_output(str(exc))
            return
        except Exception as exc:  # onnxruntime's errors share no other base
            self._no_plan = f"no plan: inference failed: {exc}"
            log.exception("inference failed")
            return
        self._no_plan = None
        self._bad_in_row = 0
        self._plans += 1
        captured_s, tick_s, submitted_s = self._in_flight_trace
        # The latency from submission: a starved worker thread is latency too, not only
        # session.run.
        self._queue.latency.add(result.finished_s - submitted_s)
        if not self._discard_in_flight:
            trace = PlanTrace(captured_s, tick_s, submitted_s, result.started_s,
                              result.inferred_s, result.finished_s, now_s,
                              len(self._queue.pending))
            self._queue.install(result.actions, result.tracks, tag=trace)

    def _bad_output(self, problem: str) -> None:
        """An inference's output failed check_output: nothing of it is queued, what was
        queued is dropped, and enough in a row make the model faulty."""
        self._queue.flush()
        self._bad_outputs += 1
        self._bad_in_row += 1
        self._last_bad_output = problem
        self._no_plan = f"bad model output: {problem}"
        if self._bad_in_row == 1:  # once per run of bad outputs: status counts the rest
            log.error("bad model output: %s", problem)
        if self._faulty is None and self._bad_in_row >= self.config.max_bad_outputs:
            self._faulty = (f"{self._bad_in_row} bad outputs in a row, the last: {problem}; "
                            "reload a model to clear")
            log.error("policy model %s is faulty: %s", self._loaded().sha256[:12], self._faulty)
