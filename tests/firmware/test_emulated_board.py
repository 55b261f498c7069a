"""The emulated board running the bring-up sketch: UART pty, PWM -> tracks -> encoders,
battery -> ADC, servos, watchdog, and wall-clock pacing.

Stage 1: these exercise the sketch's text commands; stage 2 rewrites them against the
real firmware and the binary protocol.
"""

import math
import time
from collections.abc import Callable

import pytest

from zima.emulator import BoardState, EmulatedBoard

from .conftest import Sketch

TAU_MS = 100.0  # EmulatorConfig defaults
MAX_SPEED_MM_S = 1000.0
DIVIDER = 4.0


def test_ready_line_names_the_pty(board: EmulatedBoard) -> None:
    assert board.ready["mcu"] == "atmega2560"
    assert board.ready["f_cpu"] == 16_000_000
    assert board.port.endswith("ttyZIMA")


def test_uart_bytes_round_trip(sketch: Sketch) -> None:
    assert sketch.ask("E hello, zima") == "E hello, zima"
    payload = "x" * 40  # longer than one 16-byte FIFO hop, shorter than the sketch's line
    assert sketch.ask("E " + payload) == "E " + payload
    assert sketch.ask("Z") == "ERR unknown"


def test_pwm_drives_tracks_first_order_and_encoders_count_with_sign(
    board: EmulatedBoard, sketch: Sketch
) -> None:
    assert sketch.ask("M 600 -300") == "OK M 600 -300"
    samples: list[BoardState] = []
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:
        samples.append(board.state())
        time.sleep(0.01)
    last = samples[-1]
    assert last.pwm_left_hz == pytest.approx(20_000, rel=1e-3)
    assert last.pwm_right_hz == pytest.approx(20_000, rel=1e-3)
    assert last.duty_left == pytest.approx(0.6)  # OCR3A = 479: 480 of 800 counts
    assert last.dir_left == 1
    assert last.duty_right == pytest.approx(0.3)
    assert last.dir_right == 0  # DIR low: reverse

    # First order: (v_ss - v2) / (v_ss - v1) = exp(-(t2 - t1) / tau), whatever the start.
    v_ss = 0.6 * MAX_SPEED_MM_S
    rising = [s for s in samples if 0.15 * v_ss < s.speed_left_mm_s < 0.95 * v_ss]
    assert len(rising) >= 3, [s.speed_left_mm_s for s in samples]
    first, later = rising[0], rising[-1]
    tau_ms = (
        (later.time_us - first.time_us)
        / 1000
        / math.log((v_ss - first.speed_left_mm_s) / (v_ss - later.speed_left_mm_s))
    )
    assert tau_ms == pytest.approx(TAU_MS, rel=0.05)
    speeds = [s.speed_left_mm_s for s in samples]
    assert speeds == sorted(speeds)  # monotonic rise, no overshoot
    assert last.speed_left_mm_s == pytest.approx(v_ss, rel=0.02)
    assert last.speed_right_mm_s == pytest.approx(-0.3 * MAX_SPEED_MM_S, rel=0.02)

    # Stop, let the tracks coast to rest, then every emulated edge must have been counted
    # by the sketch's ISRs: forward counts up, reverse down.
    assert sketch.ask("M 0 0") == "OK M 0 0"
    rest = board.wait_until(
        lambda s: abs(s.speed_left_mm_s) < 0.01 and abs(s.speed_right_mm_s) < 0.01,
        timeout_s=5,
    )
    assert rest.duty_left == 0
    assert rest.duty_right == 0
    assert rest.enc_left_ticks > 1000
    assert rest.enc_right_ticks < -500
    counted = sketch.query()
    assert counted["enc_l"] == pytest.approx(rest.enc_left_ticks, abs=1)
    assert counted["enc_r"] == pytest.approx(rest.enc_right_ticks, abs=1)


def test_stalled_track_does_not_move_and_draws_more(board: EmulatedBoard, sketch: Sketch) -> None:
    board.stall("left")
    assert sketch.ask("M 1000 0") == "OK M 1000 0"
    time.sleep(0.3)
    stalled = board.state()
    assert stalled.stall_left
    assert stalled.speed_left_mm_s == 0
    assert stalled.enc_left_ticks == 0
    assert stalled.current_ma == pytest.approx(3 * 1500)
    board.stall("left", on=False)
    moving = board.wait_until(lambda s: s.speed_left_mm_s > 500)
    assert moving.current_ma == pytest.approx(1500)


@pytest.mark.parametrize("pack_mv", [12600, 11000, 9500])
def test_battery_voltage_reaches_the_adc_through_the_divider(
    board: EmulatedBoard, sketch: Sketch, pack_mv: int
) -> None:
    board.set_battery(pack_mv)
    state = board.state()
    assert state.battery_mv == pytest.approx(pack_mv)  # motors off, no sag (idle draw 0)
    assert state.adc_pin_mv == pytest.approx(pack_mv / DIVIDER, abs=0.5)
    counted = sketch.query()
    # the datasheet's transfer function: 10 bit, truncated, AVCC = 5 V reference
    assert counted["adc"] == int(pack_mv / DIVIDER * 1024 / 5000)
    assert counted["batt_mv"] == pytest.approx(pack_mv, abs=25)  # one ADC step is 19.5 mV


def test_battery_sags_under_motor_current(board: EmulatedBoard, sketch: Sketch) -> None:
    board.set_battery(12000)
    idle = sketch.query()["batt_mv"]
    sketch.ask("M 1000 1000")
    time.sleep(0.1)
    loaded = board.state()
    assert loaded.current_ma == pytest.approx(2 * 1500)
    assert loaded.battery_mv == pytest.approx(12000 - 3.0 * 100, abs=2)  # I * 100 mOhm
    assert sketch.query()["batt_mv"] == pytest.approx(idle - 300, abs=25)


def test_servo_pulses_are_measured(board: EmulatedBoard, sketch: Sketch) -> None:
    assert sketch.ask("S 2 1000") == "OK S 2 1000"
    assert sketch.ask("S 5 2400") == "OK S 5 2400"
    state = board.wait_until(
        lambda s: abs(s.servo_us[2] - 1000) < 5 and s.raw["servo_period_us"] != 0, timeout_s=2
    )
    assert state.servo_us[5] == pytest.approx(2400, abs=5)
    assert state.servo_us[0] == pytest.approx(1500, abs=5)
    assert state.raw["servo_period_us"] == pytest.approx(20_000, abs=5)


def test_led_blinks_at_one_hertz(board: EmulatedBoard) -> None:
    on = board.wait_until(lambda s: s.led, timeout_s=2)
    off = board.wait_until(lambda s: not s.led, timeout_s=2)
    assert 0 < (off.time_us - on.time_us) <= 520_000


def test_hung_firmware_is_reset_by_the_hardware_watchdog(
    board: EmulatedBoard, sketch: Sketch
) -> None:
    assert sketch.ask("H") == "OK H"  # spins with interrupts on, no more wdt_reset()
    event = board.wait_event("reset", timeout_s=3, after=1)  # after the fixture's reset
    assert event["cause"] == "watchdog"
    assert sketch.line() == "BOOT mcusr=0x8"  # WDRF, seen before the sketch cleared it
    assert board.state().resets_watchdog == 1
    assert sketch.ask("E alive") == "E alive"  # and it did not reset-loop


def _pace_ratio(
    board: EmulatedBoard,
    wall_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Emulated seconds per wall second over about ``wall_s``, measured with ``clock``."""
    t0, s0 = clock(), board.state()
    sleep(wall_s)
    t1, s1 = clock(), board.state()
    return (s1.time_us - s0.time_us) / 1e6 / (t1 - t0)


def test_emulated_time_is_paced_to_the_wall_clock(board: EmulatedBoard, sketch: Sketch) -> None:
    ratio = _pace_ratio(board, 1.5)
    lag = board.state().raw["lag_dropped_s"]
    # A host too busy to give the emulator about 1/2.5 of a core cannot keep pace; the
    # emulator then says how much wall time it gave up on (lag_dropped_s).
    assert ratio == pytest.approx(1.0, abs=0.05), f"emulator behind the wall clock, lag {lag} s"
    # and the firmware's own millis() (Timer0 at 16 MHz) agrees with the emulated clock
    q0, s0 = sketch.query(), board.state()
    time.sleep(0.5)
    q1, s1 = sketch.query(), board.state()
    assert (q1["t_ms"] - q0["t_ms"]) == pytest.approx((s1.time_us - s0.time_us) / 1000, abs=15)
    assert s1.raw["lag_dropped_s"] == 0
