"""Action chunks: choosing actions from logits, the action queue, and when to plan again.

A continuous policy's chunk queues a track command beside each step's (nearest) action:
the queue and its timing rule are the same for both kinds of model.

Pure: no clock, no threads; the runner (:mod:`zima.onboard.policy_runner`) calls it once
per control tick and reports each inference's latency. The timing rule, in ticks of
``1 / control_hz`` seconds:

- a plan yields ``chunk_len`` actions; the first ``execute_k`` of them are queued behind
  the actions still queued (partial chunk execution: the rest is thrown away);
- each tick pops one action. After the pop, when ``r`` actions remain and no inference is
  running, and ``r <= lead``, the next plan starts. Its chunk is needed at the tick after
  the ``r`` remaining ones, so it is in time if inference takes less than
  ``(r + 1) / control_hz``. ``lead`` is the least ``r`` for which that holds for the
  recent worst latency times ``latency_margin``, at most ``execute_k - 1``: so the queue
  never runs dry while inference takes less than ``execute_k / control_hz``, and every
  chunk still executes exactly ``execute_k`` actions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from zima.contract import Contract, TrackCommand
from zima.onboard.policy import MAX_ABS_LOGIT, BadOutputError, values_problem

__all__ = ["ActionQueue", "LatencyEstimate", "choose_actions"]


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


class ActionQueue:
    """The actions planned ahead and the rule for starting the next plan (module doc)."""

    def __init__(self, contract: Contract, execute_k: int, latency_margin: float = 1.5,
                 latency_window: int = 20) -> None:
        if not 1 <= execute_k <= contract.chunk_len:
            raise ValueError(f"execute_k={execute_k} must be in 1..chunk_len "
                             f"({contract.chunk_len})")
        if not (math.isfinite(latency_margin) and latency_margin >= 1):
            raise ValueError(f"latency_margin={latency_margin} must be >= 1")
        self.contract = contract
        self.execute_k = execute_k
        self.latency_margin = latency_margin
        self.latency = LatencyEstimate(latency_window)
        self._queue: deque[tuple[int, TrackCommand | None]] = deque()

    @property
    def pending(self) -> tuple[int, ...]:
        """The queued actions, next first."""
        return tuple(action for action, _ in self._queue)

    @property
    def lead(self) -> int:
        """Plan again once this many actions (or fewer) remain after a tick's pop."""
        budget_ticks = self.latency.max_s * self.latency_margin * self.contract.control_hz
        return min(max(math.ceil(budget_ticks) - 1, 0), self.execute_k - 1)

    @property
    def keeps_up(self) -> bool:
        """Whether the recent latency (with margin) fits the ``execute_k`` ticks a chunk
        lasts; if not, the queue runs dry between chunks."""
        period_s = self.execute_k / self.contract.control_hz
        return self.latency.max_s * self.latency_margin < period_s

    def install(self, chunk: Sequence[int],
                tracks: Sequence[TrackCommand] | None = None) -> None:
        """Queue the first ``execute_k`` actions of a planned chunk, with the track
        command of each step when the model is continuous (``tracks`` [chunk_len])."""
        if len(chunk) != self.contract.chunk_len:
            raise ValueError(f"a chunk has {self.contract.chunk_len} actions, got {len(chunk)}")
        if tracks is not None and len(tracks) != len(chunk):
            raise ValueError(f"a chunk of {len(chunk)} actions got {len(tracks)} track commands")
        commands = tracks if tracks is not None else [None] * len(chunk)
        self._queue.extend((int(a), t) for a, t in zip(chunk[: self.execute_k],
                                                      commands[: self.execute_k], strict=True))

    def pop(self) -> int | None:
        """The action of this tick, or None when the queue ran dry."""
        planned = self.pop_planned()
        return planned[0] if planned is not None else None

    def pop_planned(self) -> tuple[int, TrackCommand | None] | None:
        """The action of this tick and its track command (None from a discrete model),
        or None when the queue ran dry."""
        return self._queue.popleft() if self._queue else None

    def should_plan(self, in_flight: bool) -> bool:
        """After this tick's pop: start the next plan now?"""
        return not in_flight and len(self._queue) <= self.lead

    def flush(self) -> None:
        """Drop every queued action (inputs went stale: never act on an old plan)."""
        self._queue.clear()
