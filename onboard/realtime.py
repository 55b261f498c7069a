"""What keeps the control loop on its period: the process's real-time settings.

The runtime is one Python process: the 50 Hz control loop on the event loop, a capture
thread per camera (OpenCV releases the GIL while it decodes), the inference worker thread
(onnxruntime releases it while it runs), MQTT on the event loop. Measured with
``bench/runtime_bench.py --remedies`` (one run per setting, the broker on; the README
lists the figures), what makes a DRIVE late:

- **the GIL's switch interval.** A thread that wants the GIL waits for its holder to drop
  it, up to ``sys.getswitchinterval()`` (5 ms by default) while the holder runs Python
  (a camera thread between two OpenCV calls, the worker choosing actions). The loop's tick
  then starts late by up to that much. ``switch_interval_s`` sets it shorter;
- **garbage collection.** A full collection walks every object the runtime made at start-up
  (the model's session, OpenCV, aiomqtt: hundreds of thousands), a few milliseconds at a
  tick that happens to trigger it. ``gc_freeze``: after start-up every object lives in the
  permanent generation (``gc.freeze()``), which collections skip; the loop's own garbage
  is young and cheap;
- **epoll's millisecond.** ``asyncio.sleep`` ends in ``epoll_wait``, whose timeout is in
  whole milliseconds, rounded up: every tick woke 0-1 ms late, at random.
  ``tick_spin_s``: the loop sleeps until a millisecond before its tick and spins the rest
  (:func:`sleep_until`; about 0.5 ms a tick, 2.5 % of a core);
- **the scheduler.** On two cores the cameras, the worker and the broker compete with the
  loop. ``fifo_priority`` (> 0) runs the event loop's thread under ``SCHED_FIFO`` once the
  cameras run (where the kernel allows it: CAP_SYS_NICE, or an RLIMIT_RTPRIO at least
  that high, which the systemd unit's ``LimitRTPRIO`` gives); ``cpu_affinity`` pins the
  process to cores.

The settings are the ``[realtime]`` table of the runtime's config; :func:`apply` sets the
process-wide ones before start-up, :func:`after_start` the rest once it is done. Settings the system
refuses (``SCHED_FIFO`` without the capability) are logged and left, never fatal: the robot
runs, a little less punctually.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import sys
import time
from dataclasses import dataclass

__all__ = ["RealtimeConfig", "after_start", "apply", "restore", "sleep_until"]

log = logging.getLogger("zima.onboard.realtime")


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    """The ``[realtime]`` table (module doc)."""

    # The GIL's switch interval (Python's default: 0.005 s).
    switch_interval_s: float = 0.0005
    # After start-up, move every object to the permanent generation (gc.freeze()).
    gc_freeze: bool = True
    # SCHED_FIFO priority for the control loop's thread (1-99; 0: the normal scheduler).
    # The systemd unit allows up to 20 (LimitRTPRIO); refused elsewhere, with a warning.
    fifo_priority: int = 10
    # Cores the process may run on (empty: all).
    cpu_affinity: tuple[int, ...] = ()
    # The control loop sleeps on the event loop until this long before its tick (rounded
    # down to whole milliseconds: epoll_wait's resolution, which makes a plain sleep wake
    # up to 1 ms late), then spins the rest, letting other threads run each turn. 0: a
    # plain asyncio.sleep.
    tick_spin_s: float = 0.001

    def __post_init__(self) -> None:
        if not (math.isfinite(self.switch_interval_s) and 1e-5 <= self.switch_interval_s <= 0.1):
            raise ValueError(f"realtime.switch_interval_s={self.switch_interval_s} must be in "
                             "[1e-5, 0.1]")
        if not 0 <= self.fifo_priority <= 99:
            raise ValueError(f"realtime.fifo_priority={self.fifo_priority} must be in 0..99")
        if not (math.isfinite(self.tick_spin_s) and 0 <= self.tick_spin_s <= 0.005):
            raise ValueError(f"realtime.tick_spin_s={self.tick_spin_s} must be in [0, 0.005]")
        if any(core < 0 for core in self.cpu_affinity):
            raise ValueError(f"realtime.cpu_affinity={self.cpu_affinity}: cores are >= 0")


def apply(config: RealtimeConfig) -> list[str]:
    """Before start-up: the switch interval and the cores; what the system refused, each
    as a sentence (also logged)."""
    sys.setswitchinterval(config.switch_interval_s)
    refused = []
    if config.cpu_affinity:
        try:
            os.sched_setaffinity(0, config.cpu_affinity)
        except OSError as exc:
            refused.append(f"cpu_affinity {list(config.cpu_affinity)}: {exc.strerror}")
    return _log_refused(refused)


def after_start(config: RealtimeConfig) -> list[str]:
    """Once start-up is done (the camera threads run): freeze the heap, and put the
    calling thread (the event loop's) under ``SCHED_FIFO``; threads it starts later (the
    inference worker's first plan) inherit it. What the system refused (also logged)."""
    if config.gc_freeze:
        gc.collect()
        gc.freeze()
        log.info("realtime: %d objects frozen out of garbage collection", gc.get_freeze_count())
    refused = []
    if config.fifo_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(config.fifo_priority))
        except OSError as exc:
            refused.append(f"SCHED_FIFO priority {config.fifo_priority}: {exc.strerror} "
                           "(needs CAP_SYS_NICE or RLIMIT_RTPRIO: the systemd unit's "
                           "LimitRTPRIO)")
    return _log_refused(refused)


async def sleep_until(loop: asyncio.AbstractEventLoop, deadline_s: float,
                      spin_s: float) -> None:
    """Return when ``loop.time()`` reaches ``deadline_s``: asleep on the event loop (other
    tasks run) until about ``spin_s`` before it, in whole milliseconds, then spinning
    (``time.sleep(0)`` each turn lets the other threads take the GIL)."""
    delay = deadline_s - loop.time()
    if spin_s <= 0:
        await asyncio.sleep(max(delay, 0.0))
        return
    await asyncio.sleep(max(math.floor((delay - spin_s) * 1e3) / 1e3, 0.0))
    while loop.time() < deadline_s:
        time.sleep(0)


def restore(switch_interval_s: float) -> None:
    """As the runtime stops: the switch interval it found, the frozen objects collectable
    again and the thread back under the normal scheduler (a process that goes on, as a
    test run, keeps none of it)."""
    sys.setswitchinterval(switch_interval_s)
    gc.unfreeze()
    if os.sched_getscheduler(0) == os.SCHED_FIFO:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _log_refused(refused: list[str]) -> list[str]:
    for what in refused:
        log.warning("realtime: %s; running without it", what)
    return refused
