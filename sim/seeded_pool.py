"""One environment per process, episodes by seed: in this process or in spawned workers.

Collection (:mod:`zima.sim.collect`) and the pick-up evaluation (:mod:`zima.sim.pick_eval`)
run each episode as a function of its seed alone on an environment made once per process.
:func:`run_seeds` does that in this process (``workers`` 1) or in a pool of *spawned*
processes: MuJoCo's EGL context must be created in the process that renders, and a forked
copy of a live context is undefined. ``setup``, ``run`` and ``close`` must be module-level
functions and ``arg`` picklable (they travel to the workers); spawned workers re-import the
calling program's main module, which needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

A = TypeVar("A")  # what setup is given
S = TypeVar("S")  # a process's state: its environment and settings
R = TypeVar("R")  # one episode's result

_state: Any = None  # this worker process's state (setup's result), made once


def _init(setup: Callable[[Any], Any], arg: Any) -> None:
    global _state  # noqa: PLW0603 -- one environment per worker process, made once
    _state = setup(arg)


def _call(run: Callable[[Any, int], Any], seed: int) -> Any:
    assert _state is not None, "pool initializer did not run"
    return run(_state, seed)


def run_seeds(setup: Callable[[A], S], run: Callable[[S, int], R], close: Callable[[S], None],
              arg: A, seeds: Sequence[int], *, workers: int) -> Iterator[R]:
    """``run(state, seed)`` for every seed, ``state = setup(arg)`` made once per process;
    the results in the order they finish (in seed order with one worker)."""
    if workers <= 1:
        state = setup(arg)
        try:
            for seed in seeds:
                yield run(state, seed)
        finally:
            close(state)
        return
    with multiprocessing.get_context("spawn").Pool(workers, _init, (setup, arg)) as pool:
        yield from pool.imap_unordered(functools.partial(_call, run), seeds)
