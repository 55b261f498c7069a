"""A critical battery stops the robot and clears: the emulated pack falls to 9.7 V while the
policy drives (the firmware latches BATT_CRITICAL after its filter and debounce: the runtime
reports low_battery and the motors stop), then comes back to 12.0 V. Once the pack is above
the firmware's clear threshold (batt_crit_mv + batt_hyst_mv), an operator's request for
idle clears the MCU's latch, and driving modes are accepted again."""

from __future__ import annotations

from tests.onboard.helpers import run

from .stack import Stack, as_float, board_until, driving_forward, heartbeats, motors_off

CRITICAL_MV, HYSTERESIS_MV = 9_900, 200  # firmware/PROTOCOL.md's defaults
CLEAR_MV = CRITICAL_MV + HYSTERESIS_MV


def test_a_critical_battery_stops_the_robot_and_clears_when_the_pack_is_back(
        stack: Stack) -> None:
    board = stack.board

    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            stack.start_runtime()
            await stack.ready(op)
            await op.request_mode("autonomous")
            await board_until(board, driving_forward, 10.0, "driving forward")

            start = op.mark()
            board.set_battery(9_700)
            await op.wait("telemetry/mode", lambda m: m.get("mode") == "low_battery",
                          after=start, timeout_s=15.0, what="low_battery")
            await board_until(board, motors_off, 5.0, "with the motors off")

            critical = await op.wait("telemetry/battery", lambda m: m.get("level") == "critical",
                                     after=start, timeout_s=5.0, what="critical")

            start = op.mark()
            board.set_battery(12_000)
            await op.wait("telemetry/battery",
                          lambda m: as_float(m.get("battery_mv")) >= 11_500, after=start,
                          timeout_s=15.0, what="back above 11.5 V")
            idle = await op.request_mode("idle")
            cleared = op.after(idle)
            await op.wait("telemetry/faults",
                          lambda m: "BATT_CRITICAL" not in m.get("active"), after=cleared,
                          timeout_s=5.0, what="without BATT_CRITICAL (the MCU's latch cleared)")
            ok = await op.wait("telemetry/battery", lambda m: m.get("level") == "ok",
                               after=cleared, timeout_s=5.0, what="ok")
            await op.request_mode("autonomous")
            await board_until(board, driving_forward, 10.0, "driving forward again")
            # What the operator is told (zima battery, zima status): latched or not, and
            # above which voltage asking for idle clears it.
            assert critical.get("latched") is True, critical.body
            assert critical.get("clear_mv") == CLEAR_MV, critical.body
            assert ok.get("latched") is False, ok.body

    try:
        run(main, guard_s=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- runtime log:\n{stack.log_tail()}") from exc
