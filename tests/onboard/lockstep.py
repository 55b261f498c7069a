"""Lock-step runner helpers for the policy tests, local (test_policy.py) and remote
(test_remote_policy.py): the runner ticks on a stepped clock, so the actions it takes are
exact whatever the machine's speed or the network's delay.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from zima.contract import DEFAULT
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy_runner import PolicyRunner, Step

from .helpers import ManualClock
from .onnx_models import history_chunk


class SteppedClock(ManualClock):
    """A ``ManualClock`` that the policy's worker thread, reading it when an inference
    ends, reads ``inference_s`` later than the loop does: an injected inference latency,
    in the test's time."""

    def __init__(self, inference_s: float = 0.0) -> None:
        super().__init__()
        self.inference_s = inference_s

    def __call__(self) -> float:
        if threading.current_thread() is threading.main_thread():
            return self.now_s
        return self.now_s + self.inference_s


def feed(fusion: FrameFusion, now_s: float) -> None:
    """A black frame from every camera of the contract, captured at ``now_s``."""
    for cam in fusion.contract.cameras:
        fusion.push(cam, np.zeros((96, 128, 3), np.uint8), now_s)


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
