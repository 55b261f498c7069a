"""Operator presence in autonomous mode: with ``[safety] operator_timeout_s = 1.0``, the
policy drives while an operator's heartbeats come in on ``cmd/heartbeat`` (through the
sample ACL, as an operator's tool would send them), and when they stop the robot goes to
idle within the timeout, saying why."""

from __future__ import annotations

import time

from tests.onboard.helpers import run

from .stack import Stack, at_rest, board_until, driving_forward, heartbeats

OPERATOR_TIMEOUT_S = 1.0
DRIVE_FOR_S = 3 * OPERATOR_TIMEOUT_S  # well past the timeout: the heartbeats are heard


def test_autonomy_needs_an_operator_heartbeat(stack: Stack) -> None:
    board = stack.board

    async def main() -> None:
        async with stack.operator() as op:
            stack.start_runtime(safety={"operator_timeout_s": OPERATOR_TIMEOUT_S})
            await stack.ready(op)
            async with heartbeats(op, period_s=OPERATOR_TIMEOUT_S / 4):
                started = op.after(await op.request_mode("autonomous"))
                t0 = time.monotonic()
                await op.wait("telemetry/odometry", lambda m: m.received_s > t0 + DRIVE_FOR_S,
                              after=started, timeout_s=DRIVE_FOR_S + 5.0)
                changes = [m.body for m in op.received("telemetry/mode", started)
                           if m.get("mode") != "autonomous"]
                assert not changes, f"autonomy ended despite the heartbeats: {changes}"
                await board_until(board, driving_forward, 2.0, "still driving forward")
            silent = op.mark()
            silent_s = time.monotonic()
            idle = await op.wait("telemetry/mode", lambda m: m.get("mode") == "idle",
                                 after=silent, timeout_s=OPERATOR_TIMEOUT_S + 4.0,
                                 what="idle once the heartbeats stopped")
            assert idle.received_s - silent_s <= OPERATOR_TIMEOUT_S + 1.0, (
                f"idle {idle.received_s - silent_s:.2f} s after the last heartbeat")
            assert "operator" in str(idle.get("reason")).lower(), idle.body
            await board_until(board, at_rest, 5.0, "at rest")

    try:
        run(main, guard_s=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- runtime log:\n{stack.log_tail()}") from exc
