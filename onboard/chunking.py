"""Action chunks: choosing actions from logits, the actions planned ahead, and when to plan.

Pure: no clock, no threads; the runner (:mod:`zima.onboard.policy_runner`) calls it at
every control-loop tick with the time, and reports each inference's latency. Times in
seconds: ``action_s = 1 / contract.control_hz`` is how long each action lasts (100 ms),
``tick_s`` the period of the loop that ticks it (20 ms at 50 Hz; a lock-step caller that
ticks once per action passes ``action_s``). The timing rule (ARCHITECTURE decision 13):

- a plan yields ``chunk_len`` actions; the first ``execute_k`` of them are queued behind
  the actions still queued (partial chunk execution: the rest is thrown away);
- an action runs for ``action_s``: the next one starts at the first tick at or after its
  end (half a tick early counts, so loop jitter under half a tick neither skips nor
  doubles a tick). When nothing is queued then, the queue has run **dry** (the runner
  STOPs), and a chunk that arrives later starts its first action at the first tick that
  finds it ready;
- the next chunk is **due** when the queued actions run out (the running action's end
  plus ``action_s`` per queued action). Its plan starts ``lead_ticks`` ticks before that:
  the least number of ticks that covers the recent worst latency times
  ``latency_margin``, and at least one (a result is taken at a tick after the one that
  started it). That is the latest tick from which the result is back in time, so the
  observation is as fresh as the latency allows: ``lead_ticks * tick_s`` old (plus its
  frames' own age) when the chunk's first action runs, one tick (20 ms) while inference
  with its margin takes under a tick. No tick runs dry while inference stays under
  ``lead_ticks * tick_s``; when that is longer than a chunk lasts
  (``execute_k * action_s``, :attr:`ActionQueue.keeps_up`), each plan starts as soon as
  the one before is back.

**Paced by the camera** (issue 16): a plan on the frames of the tick's fusion reads frames
up to a camera period old (33 ms at 30 frames/s) plus the tick it waited for. Where the
runtime reports each frame of the pacing camera (the contract's first, the one that
drives) as it arrives (:meth:`ActionQueue.frame_plan`), a plan starts on the frame itself,
between ticks: on the last frame whose result is back ``plan_lead_s`` (the recent worst
latency times the margin, not rounded up to ticks) before its chunk is due; the tick rule
above then waits for that frame while it is expected in time, and plans without it when it
is not (a stalled camera). Whether that frame is fresh at its chunk's start depends on the
camera's phase against the 100 ms schedule, which holds (3 frames an action at 30
frames/s): where the next frame would be back in time for the tick after, and fresher
there, the running action is stretched by that one tick (:meth:`ActionQueue.stretch`) and
the plan starts on the next frame. It happens once or twice after a start, and again as a
camera's clock drifts against the computer's; it keeps the observation at most about a
camera period minus a tick plus ``plan_lead_s`` old when its chunk starts (20 ms at 30
frames/s, 50 Hz and a 3 ms inference).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from zima.contract import Contract
from zima.onboard.policy import MAX_ABS_LOGIT, BadOutputError, values_problem

# A frame may come this much later than its camera's period says, and a plan's result
# must be back this long before its tick (the loop's own lateness).
FRAME_SLACK_S: Final = 0.002

__all__ = ["FRAME_SLACK_S", "ActionQueue", "FramePace", "LatencyEstimate", "Planned",
           "RecentTimes", "choose_actions", "lead_ticks"]


def choose_actions(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> list[int]:
    """One action per chunk step from ``logits`` [chunk_len, n_actions]: sampled from
    softmax(logits / temperature), or the argmax when ``temperature`` is 0.

    Logits that are not all finite, or beyond +-MAX_ABS_LOGIT, raise ``BadOutputError``
    and choose nothing: argmax would pick the first NaN's index (possibly FORWARD), and
    sampling would turn NaN into STOP without a word."""
    if logits.ndim != 2 or logits.shape[-1] < 1:
        raise ValueError(f"expected logits [chunk_len, n_actions], got {logits.shape}")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature={temperature} must be a finite number >= 0")
    problem = values_problem(logits, "logits", MAX_ABS_LOGIT)
    if problem is not None:
        raise BadOutputError(problem)
    x = logits.astype(np.float64)  # [chunk_len, n_actions], finite
    if temperature == 0:
        return [int(i) for i in x.argmax(axis=-1)]
    with np.errstate(over="ignore", under="ignore"):  # a tiny temperature: -inf, exp 0
        z = (x - x.max(axis=-1, keepdims=True)) / temperature  # <= 0: exp() cannot overflow
        p = np.exp(z)  # the largest is exp(0) = 1: the sum is >= 1
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)  # [chunk_len, n_actions]
    u = rng.random((len(cdf), 1))  # [chunk_len, 1] one uniform draw per step
    picked = (cdf < u).sum(axis=-1)  # [chunk_len] inverse CDF
    return [int(i) for i in np.minimum(picked, logits.shape[-1] - 1)]


def lead_ticks(latency_s: float, latency_margin: float, tick_s: float) -> int:
    """How many ticks before its chunk's first action is due a plan starts, for an
    inference of ``latency_s``: the fewest that cover ``latency_margin`` times it, at
    least one (the module doc's rule; the simulator models the runtime with it)."""
    return max(1, math.ceil(latency_s * latency_margin / tick_s - 1e-9))


class LatencyEstimate:
    """Recent inference latencies, seconds: their maximum and an EMA (for telemetry)."""

    def __init__(self, window: int = 20, ema_alpha: float = 0.2) -> None:
        if window < 1:
            raise ValueError(f"LatencyEstimate.window={window} must be >= 1")
        self._recent_s: deque[float] = deque(maxlen=window)
        self._alpha = ema_alpha
        self.ema_s: float | None = None
        self.count = 0

    def add(self, latency_s: float) -> None:
        self._recent_s.append(latency_s)
        self.ema_s = latency_s if self.ema_s is None else (
            self._alpha * latency_s + (1 - self._alpha) * self.ema_s)
        self.count += 1

    @property
    def max_s(self) -> float:
        """The worst of the recent latencies (0 before the first)."""
        return max(self._recent_s, default=0.0)


@dataclass(frozen=True, slots=True)
class Planned:
    """The planned action to execute at a tick."""

    action: int
    started: bool  # it starts at this tick (False: it goes on)
    tag: object | None = None  # what its chunk was queued with, when its first action starts
    arm: tuple[int, ...] | None = None  # its arm action's bins (a contract with an arm head)


class ActionQueue:
    """The actions planned ahead, when each runs, and when to plan next (module doc)."""

    def __init__(self, contract: Contract, execute_k: int, latency_margin: float = 1.5,
                 latency_window: int = 20, tick_s: float | None = None) -> None:
        if not 1 <= execute_k <= contract.chunk_len:
            raise ValueError(f"execute_k={execute_k} must be in 1..chunk_len "
                             f"({contract.chunk_len})")
        if not (math.isfinite(latency_margin) and latency_margin >= 1):
            raise ValueError(f"latency_margin={latency_margin} must be >= 1")
        self.contract = contract
        self.execute_k = execute_k
        self.latency_margin = latency_margin
        self.latency = LatencyEstimate(latency_window)
        self.action_s = 1.0 / contract.control_hz
        self.tick_s = self.action_s
        if tick_s is not None:
            self.set_tick(tick_s)
        # (action, the chunk's tag on its first action, the arm's bins or None)
        self._queue: deque[tuple[int, object | None, tuple[int, ...] | None]] = deque()
        self._running: int | None = None  # the running action
        self._running_arm: tuple[int, ...] | None = None  # ... and its arm bins
        self._ends_s = 0.0  # when the running action's period ends
        self.stretches = 0  # actions held a tick longer to start a plan on a fresher frame

    def set_tick(self, tick_s: float) -> None:
        """The period of the loop that ticks the queue (at most ``action_s``)."""
        if not (math.isfinite(tick_s) and 0 < tick_s <= self.action_s + 1e-12):
            raise ValueError(f"tick_s={tick_s} must be in (0, {self.action_s}] "
                             "(an action lasts 1 / control_hz)")
        self.tick_s = tick_s

    @property
    def pending(self) -> tuple[int, ...]:
        """The queued actions, next first (not the running one)."""
        return tuple(action for action, _, _ in self._queue)

    @property
    def running(self) -> int | None:
        """The planned action running now, or None (dry, or nothing planned yet)."""
        return self._running

    @property
    def lead_ticks(self) -> int:
        """A plan starts this many ticks before its chunk's first action is due."""
        return lead_ticks(self.latency.max_s, self.latency_margin, self.tick_s)

    @property
    def lead_s(self) -> float:
        """A plan starts this long before its chunk's first action is due."""
        return self.lead_ticks * self.tick_s

    @property
    def keeps_up(self) -> bool:
        """Whether a plan can start ``lead_s`` ahead while the chunk before still runs
        (it lasts ``execute_k`` actions); if not, the queue runs dry between chunks."""
        return self.lead_s <= self.execute_k * self.action_s + 1e-9

    def due_s(self, now_s: float) -> float:
        """When the next chunk's first action is due: the queued actions' end (``now_s``
        when nothing runs and nothing is queued)."""
        start_s = self._ends_s if self._running is not None else now_s
        return start_s + len(self._queue) * self.action_s

    def install(self, chunk: Sequence[int], tag: object | None = None,
                arm: Sequence[tuple[int, ...]] | None = None) -> None:
        """Queue the first ``execute_k`` actions of a planned chunk; ``tag`` comes back
        with its first action (:meth:`advance`); ``arm``, the chunk's arm bins (one per
        action), come back with each."""
        if len(chunk) != self.contract.chunk_len:
            raise ValueError(f"a chunk has {self.contract.chunk_len} actions, got {len(chunk)}")
        if arm is not None and len(arm) != len(chunk):
            raise ValueError(f"a chunk has {len(chunk)} arm actions, got {len(arm)}")
        for j, action in enumerate(chunk[: self.execute_k]):
            self._queue.append((int(action), tag if j == 0 else None,
                                None if arm is None else tuple(arm[j])))

    def advance(self, now_s: float) -> Planned | None:
        """The planned action to execute at ``now_s``: the running one, or the next
        queued one when the running one's time is up; None when the queue ran dry."""
        half_s = self.tick_s / 2
        if self._running is not None and now_s < self._ends_s - half_s:
            return Planned(self._running, started=False, arm=self._running_arm)
        if not self._queue:
            self._running = None
            return None
        # On schedule (within half a tick of the running action's end): keep its rhythm;
        # late (a stalled loop) or after a gap: start the schedule afresh.
        on_time = self._running is not None and now_s <= self._ends_s + half_s
        start_s = self._ends_s if on_time else now_s
        action, tag, arm = self._queue.popleft()
        self._running, self._running_arm = action, arm
        self._ends_s = start_s + self.action_s
        return Planned(action, started=True, tag=tag, arm=arm)

    def pop(self, now_s: float) -> int | None:
        """The action at ``now_s`` (see :meth:`advance`), or None when the queue ran dry."""
        planned = self.advance(now_s)
        return planned.action if planned is not None else None

    @property
    def plan_lead_s(self) -> float:
        """A plan started on a frame is back this long after it starts: the recent worst
        latency times the margin (not rounded up to whole ticks)."""
        return self.latency.max_s * self.latency_margin

    def should_plan(self, now_s: float, in_flight: bool,
                    next_frame_s: float | None = None) -> bool:
        """After this tick's :meth:`advance`: start the next plan now? ``next_frame_s``:
        when the pacing camera's next frame is expected (None: plans are not paced by a
        camera); while it is expected back in time for the chunk, the tick waits for it."""
        if in_flight:
            return False
        due_s = self.due_s(now_s)
        if now_s < due_s - self.lead_s - self.tick_s / 2:
            return False
        return next_frame_s is None or not self._in_time(next_frame_s + FRAME_SLACK_S, due_s)

    def frame_plan(self, now_s: float, frame_period_s: float, in_flight: bool) -> bool:
        """A frame of the pacing camera arrived at ``now_s`` (one comes every
        ``frame_period_s``): start the next plan on it? It may stretch the running action
        by a tick, to start the plan on the next frame instead (module doc)."""
        if in_flight:
            return False
        if self._running is None and not self._queue:
            return True  # waiting for a chunk: it starts at the first tick it is ready
        due_s = self.due_s(now_s)
        next_s = now_s + frame_period_s + FRAME_SLACK_S
        if not self._in_time(now_s, due_s):
            return True  # late (the frame the tick waited for came late): plan at once
        if self._in_time(next_s, due_s):
            return False  # a later frame is back in time too
        if (self._running is not None and frame_period_s > self.tick_s
                and self._in_time(next_s, due_s + self.tick_s)):
            # The next frame is back by the tick after and is fresher there (by a camera
            # period less a tick): hold the running action one tick longer.
            self.stretch(self.tick_s)
            return False
        return True

    def _in_time(self, start_s: float, due_s: float) -> bool:
        """Whether a plan started at ``start_s`` is back for the tick at ``due_s``."""
        return start_s + self.plan_lead_s <= due_s - FRAME_SLACK_S

    def stretch(self, seconds: float) -> None:
        """Let the running action run ``seconds`` longer (nothing when none runs)."""
        if self._running is not None:
            self._ends_s += seconds
            self.stretches += 1

    def flush(self) -> None:
        """Drop every planned action, the running one too (inputs went stale, or the
        model's output was bad: never act on an old plan)."""
        self._queue.clear()
        self._running = None


class FramePace:
    """When the pacing camera's frames arrive: its period (the median of the recent
    intervals between arrivals, so a dropped frame's double interval or two frames
    delivered back to back do not move it) and when the next one is due."""

    def __init__(self, window: int = 9) -> None:
        self._last_s: float | None = None
        self._intervals: deque[float] = deque(maxlen=window)
        self.period_s: float | None = None  # None until three intervals came

    def arrived(self, now_s: float) -> None:
        last, self._last_s = self._last_s, now_s
        if last is None or now_s <= last:
            return
        self._intervals.append(now_s - last)
        if len(self._intervals) >= 3:
            self.period_s = statistics.median(self._intervals)  # numpy's: ~10x the time

    def next_s(self, now_s: float) -> float | None:
        """When the next frame is expected; None when unknown, or overdue by more than a
        period (the camera stalled: nothing is worth waiting for)."""
        if self._last_s is None or self.period_s is None:
            return None
        next_s = self._last_s + self.period_s
        return next_s if now_s <= next_s + self.period_s else None


def percentile(values: Iterable[float], q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) in plain Python: for the few
    hundred values of a window, at a tick's rate, it costs a tenth of numpy's call."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} must be in 0..100")
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class RecentTimes:
    """A window of recent durations (seconds): the last, and percentiles (cached until
    the next one comes: ``status`` is read at every tick)."""

    def __init__(self, window: int = 200) -> None:
        if window < 1:
            raise ValueError(f"RecentTimes.window={window} must be >= 1")
        self._values: deque[float] = deque(maxlen=window)
        self._percentiles: dict[float, float] = {}

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self._percentiles.clear()

    @property
    def last_s(self) -> float | None:
        return self._values[-1] if self._values else None

    def percentile_s(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100) of the window, None while it is empty."""
        if not self._values:
            return None
        if q not in self._percentiles:
            self._percentiles[q] = percentile(self._values, q)
        return self._percentiles[q]
