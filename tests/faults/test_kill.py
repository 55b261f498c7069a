"""kill -9 of the runtime while it drives and records: no episode that was finished is lost
or changed, the MCU's own command watchdog stops the motors (PROTOCOL.md: 250 ms without a
DRIVE), the broker says ``offline`` (the last will), and the runtime starts again on the
same folder, idle."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from tests.onboard.helpers import run
from zima.emulator import EmulatedBoard
from zima.episodes import PARTIAL_SUFFIX, EpisodeReader

from .stack import Operator, Stack, as_float, board_until, driving_forward, heartbeats, motors_off

WATCHDOG_US = 250_000  # the MCU's command watchdog
STOP_WITHIN_US = WATCHDOG_US + 150_000  # + a control period and the PWM's next update


def finished(directory: Path) -> dict[Path, str]:
    """Finished episodes (renamed into place) and their sha256."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.h5"))}


async def until_finished(directory: Path, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(directory.glob("*.h5"))) < count:
        assert time.monotonic() < deadline, f"{count} finished episodes not written in time"
        await asyncio.sleep(0.05)


async def zero_duty_at(board: EmulatedBoard, after_us: int,
                       timeout_s: float = 5.0) -> dict[object, int]:
    """Side -> MCU time (us) of each track's first 0 duty after ``after_us``. The emulator's
    motor events come on their own stream, read by a thread, and may arrive after its state
    already says the motors are off: waited for, up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        zero_at: dict[object, int] = {}
        for e in board.events("motor"):
            at = int(as_float(e.get("time_us")))
            if e.get("duty") in (0, 0.0) and at > after_us:
                zero_at.setdefault(e.get("side"), at)
        if set(zero_at) == {"left", "right"} or time.monotonic() > deadline:
            return zero_at
        await asyncio.sleep(0.02)


async def record_for(op: Operator, records: int) -> None:
    """Start recording; return after ``records`` odometry records (the robot drives)."""
    start = op.mark()
    await op.publish("record", {"action": "start", "request_id": f"rec-{start}"})
    await op.wait("cmd/result", lambda m: m.get("request_id") == f"rec-{start}",
                  after=start, what="answer to record start")
    for _ in range(records):
        await op.wait("telemetry/odometry", after=op.mark())


def test_kill_9_while_recording_loses_no_finished_episode_and_the_mcu_stops(
        stack: Stack) -> None:
    board = stack.board

    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            runtime = stack.start_runtime()
            await stack.ready(op)
            await op.request_mode("autonomous")
            await board_until(board, driving_forward, 10.0, "driving forward")
            for n in (1, 2):
                await record_for(op, 5)
                await op.publish("record", {"action": "stop", "outcome": "success"})
                await until_finished(stack.episodes, n)
            kept = finished(stack.episodes)
            await record_for(op, 5)  # the third episode is being recorded ...
            before = await asyncio.to_thread(board.state)
            assert driving_forward(before), before
            start = op.mark()
            runtime.kill()  # ... when the runtime dies
            stops = await board_until(
                board, motors_off, 5.0, "with the motors off")
            zero_at = await zero_duty_at(board, before.time_us)
            assert set(zero_at) == {"left", "right"}, board.events("motor")[-4:]
            stopped_after_us = max(zero_at.values()) - before.time_us
            assert stopped_after_us <= STOP_WITHIN_US, (
                f"the motors stopped {stopped_after_us / 1000:.0f} ms of MCU time after the "
                f"kill (the board at {stops.time_us - before.time_us} us)")
            await op.wait("status", lambda m: m.body == "offline", after=start, timeout_s=10.0,
                          what="offline (the runtime's last will)")

            assert finished(stack.episodes) == kept, "a finished episode changed or vanished"
            for path in kept:
                with EpisodeReader(path) as episode:
                    assert len(episode) > 0, path
                    assert episode.info.outcome == "success", (path, episode.info)
            partials = list(stack.episodes.glob(f"*{PARTIAL_SUFFIX}"))
            assert len(partials) <= 1, partials  # the episode being recorded, if anything

            start = op.mark()
            stack.start_runtime()  # the service restarts (systemd's Restart=)
            await stack.ready(op, after=start)
            mode = await op.wait("telemetry/mode", after=start)
            assert mode.get("mode") == "idle", mode.body
            assert finished(stack.episodes) == kept

    try:
        run(main, guard_s=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- runtime log:\n{stack.log_tail()}") from exc
