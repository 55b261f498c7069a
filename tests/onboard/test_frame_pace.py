"""Plans paced by the driving camera (zima.onboard.chunking: ActionQueue.frame_plan,
FramePace): a timeline of 50 Hz ticks and 30 frame/s arrivals at every phase, inference of
a fixed latency, and the queue's own decisions; how old each chunk's frame is when its
first action starts, how many ticks ran dry, how many actions were stretched."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.contract import DEFAULT
from zima.onboard.chunking import FRAME_SLACK_S, ActionQueue, FramePace, percentile

TICK_S = 0.02
FRAME_S = 1 / 30


@dataclass
class Run:
    ages_s: list[float] = field(default_factory=list)  # frame age at each chunk's start
    dry: int = 0  # ticks with nothing planned, after the first chunk
    stretches: int = 0


def simulate(phase_s: float, latency_s: float, execute_k: int = 1, *, frame_s: float = FRAME_S,
             seconds: float = 6.0, frames_until_s: float = math.inf, paced: bool = True,
             extra_frames_s: tuple[float, ...] = ()) -> Run:
    """Ticks at k * TICK_S, frames of the pacing camera at phase_s + j * frame_s (until
    ``frames_until_s``), each plan's result back ``latency_s`` after it starts. Not
    ``paced``: frames are not reported to the queue (the tick rule alone, as before)."""
    queue = ActionQueue(DEFAULT, execute_k, tick_s=TICK_S)
    queue.latency.add(latency_s)
    pace = FramePace()
    run = Run()
    in_flight: tuple[float, float] | None = None  # (result back at, its frame's arrival)
    last_frame_s: float | None = None
    started = False
    ticks = [k * TICK_S for k in range(round(seconds / TICK_S))]
    frames = [phase_s + j * frame_s for j in range(round(seconds / frame_s))
              if phase_s + j * frame_s < frames_until_s] + list(extra_frames_s)
    # Frames first where they coincide with a tick (the camera's callback runs first).
    events = sorted([(t, 0) for t in frames] + [(t, 1) for t in ticks])

    def plan(now_s: float) -> None:
        nonlocal in_flight
        assert last_frame_s is not None
        in_flight = (now_s + latency_s, last_frame_s)

    for now_s, kind in events:
        if kind == 0:
            last_frame_s = now_s
            if not paced:
                continue
            pace.arrived(now_s)
            if pace.period_s is not None and queue.frame_plan(now_s, pace.period_s,
                                                                in_flight is not None):
                plan(now_s)
            continue
        if in_flight is not None and in_flight[0] <= now_s:
            queue.install([1] * DEFAULT.chunk_len, tag=in_flight[1])
            queue.latency.add(latency_s)
            in_flight = None
        planned = queue.advance(now_s)
        if planned is None:
            run.dry += started
        elif planned.started and planned.tag is not None:
            started = True
            assert isinstance(planned.tag, float)
            run.ages_s.append(now_s - planned.tag)
        if last_frame_s is not None and queue.should_plan(now_s, in_flight is not None,
                                                          pace.next_s(now_s)):
            plan(now_s)
    run.stretches = queue.stretches
    return run


@settings(max_examples=60, deadline=None)
@given(phase_s=st.floats(0.0, FRAME_S), latency_s=st.floats(0.001, 0.012),
       execute_k=st.sampled_from([1, 2, 4]))
def test_the_frame_is_fresh_at_every_phase(phase_s: float, latency_s: float,
                                           execute_k: int) -> None:
    run = simulate(phase_s, latency_s, execute_k)
    lead_s = 1.5 * latency_s
    bound_s = lead_s + FRAME_S - TICK_S + 2 * FRAME_SLACK_S + 1e-9
    settled = run.ages_s[3:]  # a few chunks to find the camera's phase
    assert settled
    assert max(settled) <= bound_s, (max(settled), bound_s)
    assert run.dry == 0
    assert run.stretches <= 3  # the camera keeps its phase: only a start's adjustments


def test_the_tick_rule_alone_reads_older_frames() -> None:
    """What pacing gains: the tick rule alone (a caller that reports no frames, as the
    simulator) waits a whole tick after planning, on a frame of whatever phase (37.8 ms
    at the worst of these phases, against 21.8 ms paced)."""
    phases = [j * FRAME_S / 12 for j in range(12)]
    paced = max(max(simulate(phase, 0.003).ages_s[3:]) for phase in phases)
    ticked = max(max(simulate(phase, 0.003, paced=False).ages_s[3:]) for phase in phases)
    assert paced <= 1.5 * 0.003 + FRAME_S - TICK_S + 2 * FRAME_SLACK_S + 1e-9
    assert ticked >= TICK_S + 0.015  # the lead's whole tick, and the camera's phase
    assert ticked > paced + 0.01


def test_a_drifting_camera_stretches_now_and_then_and_never_runs_dry() -> None:
    run = simulate(0.004, 0.003, 4, frame_s=FRAME_S * 1.002, seconds=30.0)
    assert run.dry == 0
    assert max(run.ages_s[3:]) <= 1.5 * 0.003 + FRAME_S * 1.002 - TICK_S + 3 * FRAME_SLACK_S
    assert 1 <= run.stretches <= 30  # 0.2% drift: a tick's worth every 10 s or so


def test_a_camera_that_stops_leaves_the_tick_rule_planning() -> None:
    """No frame is waited for once the camera is overdue: plans go on (on the old frame,
    which the runner's stale check then refuses; here only the schedule is judged)."""
    run = simulate(0.01, 0.003, 1, seconds=4.0, frames_until_s=1.0)
    assert run.dry <= 2  # the tick that expected the missing frame, at most
    assert len(run.ages_s) >= 35  # ~10 chunks a second went on after the camera stopped


def test_frame_pace_estimates_the_period_and_skips_drops() -> None:
    pace = FramePace()
    assert pace.next_s(0.0) is None
    for j in range(10):
        pace.arrived(j * FRAME_S)
    assert pace.period_s == pytest.approx(FRAME_S)
    pace.arrived(11 * FRAME_S)  # one dropped: a double interval
    assert pace.period_s == pytest.approx(FRAME_S)
    assert pace.next_s(11 * FRAME_S) == pytest.approx(12 * FRAME_S)
    assert pace.next_s(14 * FRAME_S) is None  # overdue by more than a period: stalled


def test_frames_delivered_back_to_back_at_start_do_not_fix_the_period() -> None:
    """A camera thread catching up at start-up delivers two frames a millisecond apart;
    the period must still settle on the camera's (a rule that took the first interval as
    the period and then ignored longer ones never planned on a frame again)."""
    pace = FramePace()
    for t in (0.0, 0.001, 0.002, *(0.002 + j * FRAME_S for j in range(1, 12))):
        pace.arrived(t)
    assert pace.period_s == pytest.approx(FRAME_S)
    # The same start in the timeline: still paced (fresh frames), still never dry.
    run = simulate(0.01, 0.003, 1, extra_frames_s=(0.011, 0.012))
    assert run.dry == 0
    assert max(run.ages_s[5:]) <= 1.5 * 0.003 + FRAME_S - TICK_S + 2 * FRAME_SLACK_S + 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=300),
       st.floats(0.0, 100.0))
def test_percentile_is_numpys_linear_percentile(values: list[float], q: float) -> None:
    """The windows' plain-Python percentile (the loop reads it at every tick) gives what
    np.percentile gives; empty windows and q out of 0..100 are refused."""
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)),
                                                  rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="no values"):
        percentile([], q)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile(values, q + 100.5)


def test_frame_pace_median_of_an_even_window() -> None:
    """Three intervals set the period (their median); a fourth, even count takes the mean
    of the middle two, as np.median does."""
    pace = FramePace()
    for t in (0.0, 0.030, 0.064, 0.097):
        pace.arrived(t)
    assert pace.period_s == pytest.approx(0.033)
    pace.arrived(0.137)  # intervals 30, 34, 33, 40 ms
    assert pace.period_s == pytest.approx(float(np.median([0.030, 0.034, 0.033, 0.040])))
