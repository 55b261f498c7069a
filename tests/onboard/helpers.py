"""Helpers of the onboard tests: run a coroutine under a wall-clock guard, wait in MCU time.

Waits are judged in emulated time (``TELEMETRY.mcu_time_ms``, the MCU's own clock): the
emulator paces to the wall clock but may fall behind on a loaded machine. Wall-clock
limits exist only as failure guards, several times longer than what is waited for.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import tty
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from zima.onboard.link import McuLink
from zima.onboard.mcu_state import McuState

T = TypeVar("T")

GUARD_S = 20.0  # no test of this folder needs more than a few seconds


class ManualClock:
    """A clock that moves only when the test moves it (``now_s``): ages, expiries and
    timeouts come out exact however slow the machine."""

    def __init__(self, now_s: float = 0.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def run(main: Callable[[], Coroutine[Any, Any, T]], guard_s: float = GUARD_S) -> T:
    """``asyncio.run(main())``, failing after ``guard_s`` of wall-clock time."""

    async def guarded() -> T:
        async with asyncio.timeout(guard_s):
            return await main()

    return asyncio.run(guarded())


async def until_mcu(
    link: McuLink,
    predicate: Callable[[McuState], bool],
    within_ms: int,
    each: Callable[[McuState], Awaitable[None] | None] | None = None,
) -> McuState:
    """The first McuState for which ``predicate`` holds, within ``within_ms`` of MCU time
    (from the first state seen); ``each`` is called for every state meanwhile."""
    start_ms: int | None = None
    async with asyncio.timeout(max(5.0, 10 * within_ms / 1000)):  # wall-clock guard
        async for state in link.states():
            if each is not None:
                maybe = each(state)
                if maybe is not None:
                    await maybe
            if predicate(state):
                return state
            start_ms = state.mcu_time_ms if start_ms is None else start_ms
            if state.mcu_time_ms - start_ms > within_ms:
                raise AssertionError(f"not within {within_ms} ms of MCU time: {state}")
    raise AssertionError("the link closed")


def driving(link: McuLink, left_mm_s: int, right_mm_s: int) -> Callable[[McuState], None]:
    """One DRIVE per TELEMETRY: 50 Hz of MCU time, whatever the pacing."""
    return lambda _state: link.drive(left_mm_s, right_mm_s)


class NoisyLine:
    """A relay between the link and the board, as a second pty, that can put garbage on
    the line toward the host: the link opens ``path``, the relay copies bytes both ways,
    and ``inject`` writes bytes between (and so into the middle of) the MCU's frames."""

    def __init__(self, board_port: str, path: Path) -> None:
        self._board = os.open(board_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._master, self._slave = os.openpty()  # the slave stays open: no EIO when idle
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        path.symlink_to(os.ttyname(self._slave))
        self._lock = threading.Lock()  # one writer toward the host at a time
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="noisy-line", daemon=True)
        self._thread.start()

    muted = False  # while True the MCU's bytes are dropped: the host hears nothing

    def inject(self, data: bytes) -> None:
        with self._lock:
            os.write(self._master, data)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._board, self._master, self._slave, self._stop_r, self._stop_w):
            os.close(fd)

    def _relay(self) -> None:
        while True:
            readable, _, _ = select.select([self._board, self._master, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            for src, dst in ((self._board, self._master), (self._master, self._board)):
                if src in readable:
                    try:
                        data = os.read(src, 4096)
                    except (BlockingIOError, OSError):
                        continue
                    if src == self._board and self.muted:
                        continue
                    with self._lock:
                        os.write(dst, data)
