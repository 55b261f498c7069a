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
            step = runner.tick(clock())           # Step(action, reason)
            command = contract.track_command(step.action)
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

The model's logits give each step's action, sampled at ``temperature``
(:mod:`zima.onboard.policy`). A model with an arm head (``contract.arm_dims``) also
gives each step's arm bins (:mod:`zima.onboard.arm_policy`), from the ``arm_state`` the
caller's ``arm_state`` callback returns when the plan starts (the commanded tool pose);
``Step.arm`` carries them (None on a forced STOP: the arm holds), and its arm logits are
checked like the driving ones.

**Every output is checked before an action is taken from it**
(:func:`~zima.onboard.policy.check_output`: finite, logits within +-MAX_ABS_LOGIT). A bad
one queues nothing, drops what was queued, and each tick until the next good plan is a
STOP with the reason ``"bad model output: ..."``; ``status`` counts them (``bad_outputs``
in all, ``bad_in_row`` since the last good one, ``last_bad_output`` its text). After
``PolicyConfig.max_bad_outputs`` in a row the model is **faulty**: ``status.faulty`` says
why, no more plans start, and every tick is a STOP with the reason ``"model faulty:
..."`` until a successful ``reload`` clears it (the runtime puts the robot in ``idle``
while it is set). An inference that raises (an onnxruntime error) is a STOP with the
reason ``"no plan: inference failed: ..."``.

``on_plan`` (optional, a callback on the event loop) receives a ``PlanTrace`` for every
plan whose chunk's first action starts, at that tick: when it passed each stage, on the
injected clock. It is how
bench/runtime_bench.py splits the camera-to-command latency; nothing else depends on it.

**The remote backend** (``backend = "remote"``, :mod:`zima.onboard.remote_policy`): the
model runs on another computer (``zima serve``) and everything else stays here, the same:
the server's contract is checked at each connection as a file's is (a mismatch refused),
every output passes ``check_output`` here, and the chunk queue plans ahead by the measured
latency, which is now the round trip (submission to result), so the queue does not run
dry while the round trip with its margin fits in a chunk. A request that times out
(``request_timeout_s``) or a connection that breaks empties the queue at the next tick:
a STOP with the reason (``"remote policy lost: ..."``), then ``"remote policy ... not
connected ..."`` while the client reconnects by itself. With a ``fallback_model`` the
onboard model plans at once instead, until the server is back. ``status`` adds
``backend`` ("local", "remote" or "fallback"), ``connected``, the round trip (last, p99),
``reconnects``, ``losses`` and ``remote_error``.

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
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self

import numpy as np

from zima.contract import Action, Contract
from zima.onboard.arm_policy import choose_arm_bins
from zima.onboard.chunking import ActionQueue, FramePace, Planned, RecentTimes, choose_actions
from zima.onboard.fusion import FrameFusion, Observation
from zima.onboard.policy import (
    BadOutputError,
    ModelError,
    PolicyModel,
    check_arm_output,
    check_output,
    load_model,
)
from zima.onboard.remote_policy import RemotePolicy, RemotePolicyError
from zima.onboard.remote_protocol import parse_server, read_key

__all__ = ["PlanTrace", "PolicyConfig", "PolicyRunner", "PolicyStatus", "Step"]

log = logging.getLogger("zima.onboard.policy")

OBS_AGE_WINDOW = 200  # chunks the observation age's percentiles are taken over
BACKENDS: Final = ("local", "remote")


class InferenceModel(Protocol):
    """What the runner plans with: a local :class:`~zima.onboard.policy.PolicyModel` or a
    :class:`~zima.onboard.remote_policy.RemotePolicy`."""

    name: str  # for log lines: the file, or the server
    sha256: str
    warmup_latency_s: float

    def infer(self, images: np.ndarray, action_history: np.ndarray) -> np.ndarray: ...


def default_execute_k(contract: Contract) -> int:
    """Actions executed per chunk when the config names none: driving plans 4 at a time; a
    model with an arm head plans every action on a fresh frame, since a grasp is closed-loop
    work at millimetres (the first pick policy: 14 of 40 pick-ups against 3 of 40 with 4)."""
    return 1 if contract.arm_dims else min(4, contract.chunk_len)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy runner. Times in seconds."""

    model_path: Path = Path("/var/lib/zima/policy.onnx")  # where deploy puts the model
    # Actions executed per chunk before the next takes over (1..chunk_len); None: the
    # model's task decides (default_execute_k).
    execute_k: int | None = None
    temperature: float = 1.0  # softmax sampling temperature (the prototype's); 0 = argmax
    # The arm head's bins (a contract with an arm head): 0 = each dimension's argmax. Six
    # dimensions sampled independently jitter the arm: a 3 % chance of a non-hold bin per
    # dimension is a 17 % chance per step that some joint moves.
    arm_temperature: float = 0.0
    seed: int | None = None  # sampling seed (None: fresh entropy); tests and replays fix it
    latency_margin: float = 1.5  # plan as if inference took this times the recent worst
    latency_window: int = 20  # inferences the recent worst latency is taken over
    intra_op_threads: int = 1  # onnxruntime threads: leave cores to cameras and the link
    max_bad_outputs: int = 3  # bad outputs in a row that make the model faulty (until reload)
    # Where the model runs: "local" (model_path, onnxruntime here) or "remote" (`zima serve`
    # at server; the robot keeps the chunk queue, the output check and the safety rules).
    backend: str = "local"
    server: str | None = None  # remote: "host:port" of `zima serve`
    key_file: Path | None = None  # remote: the shared key (one line, 16+ characters)
    tls: bool = False  # remote: wss://, the server's certificate checked (system CAs)
    ca_file: Path | None = None  # remote: ... checked against this CA or self-signed
    # certificate instead (implies tls)
    request_timeout_s: float = 0.25  # remote: no answer this long is a lost link (STOP)
    reconnect_max_s: float = 5.0  # remote: the longest wait between reconnection attempts
    fallback_model: Path | None = None  # remote: an onboard model that plans while the
    # server is away (None: the robot STOPs until it is back)

    def __post_init__(self) -> None:
        if self.execute_k is not None and self.execute_k < 1:
            raise ValueError(f"PolicyConfig.execute_k={self.execute_k} must be >= 1")
        if not (self.temperature >= 0 and self.arm_temperature >= 0):
            raise ValueError(f"PolicyConfig.temperature={self.temperature} and arm_temperature="
                             f"{self.arm_temperature} must be >= 0")
        if self.intra_op_threads < 1:
            raise ValueError("PolicyConfig.intra_op_threads must be >= 1")
        if self.max_bad_outputs < 1:
            raise ValueError(f"PolicyConfig.max_bad_outputs={self.max_bad_outputs} must be >= 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"PolicyConfig.backend={self.backend!r} must be one of "
                             f"{list(BACKENDS)}")
        for name in ("request_timeout_s", "reconnect_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PolicyConfig.{name}={value} must be a positive number")
        if self.backend == "remote":
            if self.server is None or self.key_file is None:
                raise ValueError('backend = "remote" needs server ("host:port") and key_file')
            parse_server(self.server)  # ValueError naming it


@dataclass(frozen=True, slots=True)
class Step:
    """What to do this tick: the policy's action, or a STOP with the reason for it."""

    action: Action
    reason: str | None = None  # set when the runner forced STOP
    arm: tuple[int, ...] | None = None  # the arm action's bins (arm head); None: hold


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
    started_s: float
    inferred_s: float
    finished_s: float
    arm: list[tuple[int, ...]] | None = None  # per chunk step (a model with an arm head)


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
    # Where plans run: "local"; "remote" (the server), "fallback" (the onboard fallback
    # model while the server is away). The rest is None/0 for a local backend.
    backend: str = "local"
    connected: bool | None = None  # remote: connected to the server and verified
    round_trip_s: float | None = None  # remote: the last request's round trip (wall clock)
    round_trip_p99_s: float | None = None  # ... p99 over the recent ones
    reconnects: int = 0  # remote: connections made after the first
    losses: int = 0  # remote: connections lost (a request timed out, the link broke)
    remote_error: str | None = None  # remote: why the last connection ended or was refused
    # Actions held a tick longer so that a plan starts on a fresher frame (chunking).
    stretches: int = 0


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
        arm_state: Callable[[], np.ndarray] | None = None,
    ) -> None:
        if fusion.contract != contract:
            raise ValueError("PolicyRunner: the fusion was built for another contract")
        if contract.arm_dims and (arm_state is None or config.backend != "local"):
            raise ValueError("PolicyRunner: a contract with an arm head needs arm_state "
                             "(the commanded tool pose) and a local model")
        self.config, self.contract, self.fusion = config, contract, fusion
        self.arm_state = arm_state  # [ARM_STATE_DIMS] float32 at plan time (arm head)
        self._clock = clock
        self.on_plan = on_plan
        self._rng = np.random.default_rng(config.seed)  # used on the worker thread only
        execute_k = default_execute_k(contract) if config.execute_k is None else config.execute_k
        self._queue = ActionQueue(contract, execute_k, config.latency_margin,
                                  config.latency_window, tick_s)
        self._model: InferenceModel | None = None  # a PolicyModel or the RemotePolicy
        self._remote: RemotePolicy | None = None  # backend "remote"
        self._fallback: PolicyModel | None = None  # its fallback_model, when configured
        self._losses_seen = 0
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
        self._pace = FramePace()  # the pacing camera's frames, when on_frame reports them
        self._plans = self._dry = self._stale = self._reloads = 0
        self._reload_error: str | None = None
        self._reload_failures = 0
        self._no_plan: str | None = None  # why the last inference gave no plan: a STOP reason
        self._bad_outputs = self._bad_in_row = 0
        self._last_bad_output: str | None = None
        self._faulty: str | None = None

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self.config.backend == "remote":
            self._remote, self._fallback = await self._open_remote(require=False)
            self._model = self._remote
        else:
            self._model = await asyncio.to_thread(self._load, self.config.model_path)
        model = self._current()
        self._queue.latency.add(model.warmup_latency_s)  # the first lead's estimate
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="policy")
        log.info("policy %s (sha256 %s) loaded", model.name, model.sha256[:12])
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])  # let the worker finish; result unused
            self._in_flight.exception()  # retrieved: no "never retrieved" warning
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._remote is not None:
            await self._remote.close()

    # ---- the control loop's side --------------------------------------------------------
    @property
    def execute_k(self) -> int:
        """Actions executed per chunk: the config's, or the model's task's default."""
        return self._queue.execute_k

    @property
    def model_sha256(self) -> str:
        """The sha256 of the model plans run on now (a remote one: as the server stated;
        empty before it first answered)."""
        return self._current().sha256

    @property
    def faulty(self) -> str | None:
        """Why the model is faulty (``status.faulty``, without building the status)."""
        return self._faulty

    @property
    def remote_unready(self) -> str | None:
        """Why a remote backend cannot plan (its fallback model plans meanwhile), None when
        local or connected; ``status``'s ``backend``/``connected``/``remote_error`` without
        building the status (the control loop asks at every tick)."""
        remote = self._remote
        if remote is None or remote.connected:
            return None
        return remote.last_error or "not connected"

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
        self._check_remote()
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
            step = Step(Action(planned.action), arm=planned.arm)
            if planned.started:
                self._start(now_s, planned)
        if queue.should_plan(now_s, self._in_flight is not None, self._pace.next_s(now_s)):
            self._plan_now(now_s)
        return step

    def on_frame(self, now_s: float) -> None:
        """A frame of the pacing camera (the contract's first) was fused at ``now_s``,
        between ticks: start the next plan on it when it is the last one back in time for
        its chunk (:meth:`ActionQueue.frame_plan`). Only while the loop ticks the runner;
        a caller that never reports frames gets the tick rule alone."""
        self._pace.arrived(now_s)
        period_s, last_tick_s = self._pace.period_s, self._last_tick_s
        if (period_s is None or last_tick_s is None
                or now_s - last_tick_s > self._queue.action_s or self._faulty is not None
                or self.fusion.stale_reasons(now_s)):
            return  # the rhythm unknown yet, not driving, or a tick will STOP
        if self._queue.frame_plan(now_s, period_s, self._in_flight is not None):
            self._plan_now(now_s)

    def _plan_now(self, now_s: float) -> None:
        model = self._plan_model()
        if model is not None:
            self._plan(model, self.fusion.observe(now_s, self._queue.pending), now_s)
        elif self._remote is not None:
            self._no_plan = self._remote.unavailable

    async def wait_plan(self) -> None:
        """Wait until the plan in flight (if any) has finished; the next tick takes it.
        For lock-step use (the simulator, tests); a real-time loop never waits."""
        if self._in_flight is not None:
            await asyncio.wait([self._in_flight])

    @property
    def status(self) -> PolicyStatus:
        latency = self._queue.latency
        status = PolicyStatus(
            model_sha256=self.model_sha256, plans=self._plans, dry_ticks=self._dry,
            stale_ticks=self._stale, latency_max_s=latency.max_s, latency_ema_s=latency.ema_s,
            lead_s=self._queue.lead_s, keeps_up=self._queue.keeps_up, reloads=self._reloads,
            reload_error=self._reload_error, reload_failures=self._reload_failures,
            bad_outputs=self._bad_outputs, bad_in_row=self._bad_in_row,
            last_bad_output=self._last_bad_output, faulty=self._faulty,
            obs_age_s=self._obs_age.last_s, obs_age_p50_s=self._obs_age.percentile_s(50),
            obs_age_p99_s=self._obs_age.percentile_s(99), stretches=self._queue.stretches)
        return status if self._remote is None else self._remote_status(status, self._remote)

    @property
    def backend(self) -> str:
        """Where plans run now: "local", "remote", or "fallback" (status.backend)."""
        remote = self._remote
        if remote is None:
            return "local"
        return "fallback" if not remote.connected and self._fallback is not None else "remote"

    async def reload(self, path: Path | None = None) -> str:
        """Verify the model at ``path`` (default: the configured one) and swap it in;
        its sha256. A refused model raises ``ModelError``; the old one keeps running.
        A model swapped in clears ``faulty`` and ``bad_in_row``.

        A remote backend connects afresh (``path`` unused) and verifies the server's model
        and the ``fallback_model`` file; the old connection serves until the new one has
        passed, and is closed once its plan in flight is back."""
        old = self._current()
        if self._remote is not None:
            return await self._reload_remote(old)
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

    def _loaded(self) -> InferenceModel:
        if self._model is None:
            raise RuntimeError("PolicyRunner used outside its `async with`")
        return self._model

    def _current(self) -> InferenceModel:
        """The model plans run on now: the fallback's while it stands in."""
        if self._fallback is not None and self.backend == "fallback":
            return self._fallback
        return self._loaded()

    def _plan_model(self) -> InferenceModel | None:
        """What the next plan runs on; None: nothing can (remote away, no fallback)."""
        remote = self._remote
        if remote is None or remote.connected:
            return self._loaded()
        return self._fallback

    # ---- the remote backend -------------------------------------------------------------
    async def _open_remote(self, *, require: bool) -> tuple[RemotePolicy, PolicyModel | None]:
        """The remote backend's client, started (``require``: connected and verified, else
        ``ModelError``), and its fallback model loaded when configured."""
        config = self.config
        assert config.server is not None
        assert config.key_file is not None
        try:
            key = read_key(config.key_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"policy key_file {config.key_file}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ModelError(f"policy key_file {config.key_file}: {exc}") from exc
        tls: ssl.SSLContext | None = None
        if config.ca_file is not None or config.tls:
            try:
                tls = ssl.create_default_context(cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ModelError(f"policy ca_file {config.ca_file}: {exc}") from exc
        fallback = None
        if config.fallback_model is not None:
            fallback = await asyncio.to_thread(self._load, config.fallback_model)
        remote = RemotePolicy(config.server, key, self.contract,
                              timeout_s=config.request_timeout_s, tls=tls,
                              reconnect_max_s=config.reconnect_max_s)
        await remote.start(require=require)
        return remote, fallback

    def _check_remote(self) -> None:
        """A lost remote link (a request timed out, the connection broke) empties the
        queue: the robot STOPs with the reason until a plan comes (from the fallback
        model at once, when there is one)."""
        remote = self._remote
        if remote is None or remote.losses == self._losses_seen:
            return
        self._losses_seen = remote.losses
        self._queue.flush()
        self._discard_in_flight = self._in_flight is not None
        self._no_plan = f"remote policy lost: {remote.last_error}"

    def _remote_status(self, status: PolicyStatus, remote: RemotePolicy) -> PolicyStatus:
        return dataclasses.replace(
            status, backend=self.backend, connected=remote.connected,
            round_trip_s=remote.round_trip.last_s,
            round_trip_p99_s=remote.round_trip.percentile_s(99), reconnects=remote.reconnects,
            losses=remote.losses, remote_error=remote.last_error)

    async def _reload_remote(self, old: InferenceModel) -> str:
        try:
            remote, fallback = await self._open_remote(require=True)
        except ModelError as exc:
            self._reload_error = str(exc)
            self._reload_failures += 1
            log.error("reload refused, keeping %s: %s", old.name, exc)
            raise
        previous = self._remote
        self._remote, self._model, self._fallback = remote, remote, fallback
        self._losses_seen = remote.losses
        self._reloads += 1
        self._reload_error = None
        self._faulty = None
        self._bad_in_row = 0
        self._no_plan = None
        log.info("policy reloaded: %s -> %s (%s)", old.sha256[:12], remote.sha256[:12],
                 remote.name)
        await self.wait_plan()  # a plan in flight on the old connection comes back first
        if previous is not None:
            await previous.close()
        return remote.sha256

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
        remote = self._remote
        away = remote is not None and self._in_flight is None and self._plan_model() is None
        if self._waiting and self._no_plan is None and not away:
            return "waiting for the first plan"
        self._dry += 1
        if self._no_plan is not None:
            return self._no_plan
        if remote is not None and away:
            return remote.unavailable
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

    def _plan(self, model: InferenceModel, obs: Observation, now_s: float) -> None:
        executor = self._executor
        loop = asyncio.get_running_loop()
        submitted_s = self._clock()
        arm_state = None if self.arm_state is None else self.arm_state()[None]  # [1, S]
        self._in_flight = loop.run_in_executor(executor, self._infer, model, obs, arm_state)
        self._in_flight_since_s = now_s
        self._in_flight_trace = (obs.newest_s, now_s, submitted_s)
        self._discard_in_flight = False

    def _infer(self, model: InferenceModel, obs: Observation,
               arm_state: np.ndarray | None = None) -> _Inference:
        """On the worker thread: the model's logits, checked (``BadOutputError``), then
        the chunk's actions (and arm bins), and when each was done."""
        started_s = self._clock()
        arm_out = None
        if arm_state is not None and isinstance(model, PolicyModel):  # an arm head
            out, arm_out = model.infer_arm(obs.images, obs.action_history, arm_state)
        else:
            out = model.infer(obs.images, obs.action_history)  # [chunk_len, n_actions]
        inferred_s = self._clock()
        check_output(out, self.contract)  # before any action is taken from it
        if arm_out is not None:
            check_arm_output(arm_out, self.contract)
        actions = choose_actions(out, self.config.temperature, self._rng)
        arm = None if arm_out is None else choose_arm_bins(
            arm_out, self.config.arm_temperature, self._rng)
        return _Inference(actions, started_s, inferred_s, self._clock(), arm)

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
        except RemotePolicyError as exc:  # logged by the client, once per outage
            self._no_plan = f"no plan: {exc}"
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
            self._queue.install(result.actions, tag=trace, arm=result.arm)

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
