"""The real firmware on the emulated board: battery low and critical.

The emulator injects the pack voltage (through the 4:1 divider) into ADC0; the firmware
samples it at 20 Hz. Debounces are shortened by PARAM_SET to keep the test fast; the
filter is switched off so the thresholds are crossed when the voltage is set.
"""

from zima.emulator import EmulatedBoard
from zima.protocol import Clear, Drive, Fault, ParamId, Result, State, Telemetry

from .mcu import Mcu

LOW_DEBOUNCE_MS = 200
CRIT_DEBOUNCE_MS = 100


def test_battery_low_then_critical_then_recovery(board: EmulatedBoard, mcu: Mcu) -> None:
    mcu.set_param(ParamId.batt_filter_ms, 0)
    mcu.set_param(ParamId.batt_low_debounce_ms, LOW_DEBOUNCE_MS)
    mcu.set_param(ParamId.batt_crit_debounce_ms, CRIT_DEBOUNCE_MS)
    full = mcu.telemetry()
    assert abs(full.battery_mv - board.state().battery_mv) <= 25  # one ADC step is 19.5 mV

    def drive(_t: Telemetry) -> None:
        mcu.send(Drive(300, 300))

    mcu.send(Drive(300, 300))
    mcu.until(lambda t: t.out_left_permille > 0, within_ms=200, on_telemetry=drive)

    # low (10.5 V) but not critical (9.9 V): BATT_LOW after its debounce, motion goes on
    board.set_battery(10_250)
    below = mcu.until(lambda t: t.battery_mv < 10_500, within_ms=200, on_telemetry=drive)
    low = mcu.until(lambda t: bool(t.faults & Fault.BATT_LOW), 1000, on_telemetry=drive)
    # the first sample below can be up to one sampling period (50 ms) before `below`
    assert low.mcu_time_ms - below.mcu_time_ms >= LOW_DEBOUNCE_MS - 50 - 20
    assert low.state == State.DRIVING
    assert low.out_left_permille > 0

    # critical: latched, motors off, DRIVE refused
    board.set_battery(9_500)
    crit = mcu.until(lambda t: bool(t.faults & Fault.BATT_CRITICAL), 1000)
    assert crit.state == State.FAULT
    assert (crit.out_left_permille, crit.out_right_permille) == (0, 0)
    mcu.until(lambda t: t.mcu_time_ms >= crit.mcu_time_ms + 20, within_ms=100)
    state = board.state()
    assert (state.duty_left, state.duty_right) == (0, 0)
    assert mcu.request(Drive(300, 300)) == Result.BATTERY_CRITICAL
    assert mcu.request(Clear(int(Fault.BATT_CRITICAL))) == Result.CONDITION_ACTIVE

    # recovery: above crit + hysteresis the latch may be cleared; low clears by itself
    board.set_battery(12_000)
    mcu.until(lambda t: not t.faults & Fault.BATT_LOW and t.battery_mv > 11_500, 1000)
    still = mcu.telemetry()
    assert still.faults & Fault.BATT_CRITICAL  # latched until CLEAR
    assert mcu.request(Drive(300, 300)) == Result.BATTERY_CRITICAL
    assert mcu.request(Clear(int(Fault.BATT_CRITICAL))) == Result.OK
    mcu.send(Drive(300, 300))
    moving = mcu.until(lambda t: t.out_left_permille > 0, within_ms=200, on_telemetry=drive)
    assert moving.faults == 0
    assert moving.state == State.DRIVING
