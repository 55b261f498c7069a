"""The real firmware on the emulated board: tracks reach their targets, the command
watchdog stops them, a stalled track is reported, servos follow ARM.

Judged in emulated time: TELEMETRY.mcu_time_ms, and the emulator's cycle counts for the
watchdog (its "motor" events and the firmware's probe markers, README.md there).
"""

import time
from collections.abc import Callable

from zima.emulator import EmulatedBoard
from zima.protocol import Arm, Drive, Fault, ParamId, Result, State, Telemetry

from .mcu import Mcu

F_CPU = 16_000_000
CONTROL_PERIOD_MS = 5  # 200 Hz
RX_PROBE = 2  # firmware/src/probe.h kRx: Controller::on_rx_bytes


def _driver(mcu: Mcu, left: int, right: int) -> Callable[[Telemetry], None]:
    """Sends one DRIVE per TELEMETRY received: 50 Hz of MCU time, whatever the pacing."""

    def on_telemetry(_t: Telemetry) -> None:
        mcu.send(Drive(left, right))

    return on_telemetry


def _reached(mcu_time_ms: int) -> Callable[[Telemetry], bool]:
    return lambda t: t.mcu_time_ms >= mcu_time_ms


def _motor_offs(board: EmulatedBoard, after: int, timeout_s: float = 5.0) -> dict[str, int]:
    """The cycle at which each track's PWM first went to 0 among the motor events after the
    first ``after``. The emulator's events come on their own stream, read by a thread: they
    may arrive after the TELEMETRY that reports the stop (on a loaded machine they did), so
    this waits for them (wall clock; the cycles are the emulator's)."""
    deadline = time.monotonic() + timeout_s
    offs: dict[str, int] = {}
    while set(offs) != {"left", "right"}:
        event = board.wait_event("motor", max(0.0, deadline - time.monotonic()), after=after)
        after += 1
        if event["duty"] == 0:
            offs.setdefault(str(event["side"]), int(str(event["cycles"])))
    return offs


def test_drive_reaches_both_targets_within_1_s_to_10_percent(
    board: EmulatedBoard, mcu: Mcu
) -> None:
    left, right = 500, -300  # mm/s; opposite signs check the direction pins too
    drive = _driver(mcu, left, right)
    mcu.send(Drive(left, right))
    start = mcu.telemetry().mcu_time_ms
    samples: list[Telemetry] = []

    def record(t: Telemetry) -> None:
        drive(t)
        samples.append(t)

    mcu.until(lambda t: t.mcu_time_ms >= start + 1500, within_ms=2000, on_telemetry=record)
    settled = [t for t in samples if t.mcu_time_ms >= start + 1000]  # 1.0 s to 1.5 s
    assert len(settled) >= 20
    for t in settled:
        assert abs(t.vel_left_mm_s - left) <= 0.10 * abs(left), t
        assert abs(t.vel_right_mm_s - right) <= 0.10 * abs(right), t
        assert t.state == State.DRIVING
        assert t.faults == 0
    # the physical side agrees: track speed, PWM at 20 kHz, direction pins
    state = board.state()
    assert abs(state.speed_left_mm_s - left) <= 0.10 * abs(left)
    assert abs(state.speed_right_mm_s - right) <= 0.10 * abs(right)
    assert (state.pwm_left_hz, state.pwm_right_hz) == (20_000, 20_000)
    assert (state.dir_left, state.dir_right) == (1, 0)
    # encoders: the MCU's counts follow the emulator's edges (within 50 ms of motion)
    last = samples[-1]
    assert abs(last.enc_left_ticks - state.enc_left_ticks) <= 0.05 * 4000 * abs(left) / 1000 + 4


def test_watchdog_stops_the_motors_in_time_20_of_20(board: EmulatedBoard, mcu: Mcu) -> None:
    watchdog_ms = 250  # the default of PROTOCOL.md section 4
    bound_cycles = (watchdog_ms + CONTROL_PERIOD_MS) * F_CPU // 1000 + 1600  # + 0.1 ms sampling
    late_ms: list[float] = []
    for trial in range(20):
        events_before = len(board.events("motor"))
        speed = 200 + 10 * trial
        drive = _driver(mcu, speed, speed)
        mcu.send(Drive(speed, speed))
        # Running first: the last trial's stop (outputs 0, WATCHDOG) must not be taken for
        # this one's.
        mcu.until(lambda t: t.out_left_permille != 0 and t.out_right_permille != 0,
                  within_ms=500, on_telemetry=drive)
        until_ms = mcu.telemetry().mcu_time_ms + 60
        mcu.until(_reached(until_ms), within_ms=500, on_telemetry=drive)
        # the last DRIVE is out; the MCU handles it when its final byte arrives
        stopped = mcu.until(
            lambda t: t.out_left_permille == 0 and t.out_right_permille == 0,
            within_ms=watchdog_ms + 200,
        )
        assert stopped.faults & Fault.WATCHDOG, stopped
        offs = _motor_offs(board, events_before)
        # The last DRIVE was accepted inside the last on_rx_bytes call: after its start, by
        # its end (a host that stalled and then sent a burst of DRIVEs makes that call
        # long). The stop comes watchdog_ms after the accept, at the next control tick.
        rx = board.probes().main[RX_PROBE]
        for side, off in offs.items():
            late_ms.append((off - rx.last_end) / F_CPU * 1000)
            assert off - rx.last_begin >= watchdog_ms * F_CPU // 1000, (trial, side, off, rx)
            assert off - rx.last_end <= bound_cycles, (trial, side, off, rx)
    assert len(late_ms) == 40  # both tracks, every trial, within [watchdog_ms, bound]


def test_a_stalled_track_is_reported(board: EmulatedBoard, mcu: Mcu) -> None:
    stall_ms = 200
    mcu.set_param(ParamId.stall_ms, stall_ms)
    drive = _driver(mcu, 400, 400)
    mcu.send(Drive(400, 400))
    mcu.until(lambda t: abs(t.vel_left_mm_s - 400) < 40, within_ms=1000, on_telemetry=drive)
    board.stall("left")
    stalled_at = mcu.telemetry().mcu_time_ms
    reported = mcu.until(lambda t: bool(t.faults & Fault.STALL_LEFT), 1500, on_telemetry=drive)
    # output saturates (integrator), then stall_ms of no motion
    assert reported.mcu_time_ms - stalled_at >= stall_ms
    assert not reported.faults & Fault.STALL_RIGHT
    assert reported.out_left_permille >= 900
    board.stall("left", on=False)
    cleared = mcu.until(lambda t: not t.faults & Fault.STALL_LEFT, 1000, on_telemetry=drive)
    assert cleared.state == State.DRIVING


def test_arm_moves_the_servo_pulses(board: EmulatedBoard, mcu: Mcu) -> None:
    # joint 0 to 180.0 deg at 360 deg/s, limited to servo_max_speed_ddeg_s (180 deg/s by
    # default); the others stay at their 90 deg start
    targets = [1800, 3600] + [0xFFFF, 0] * 5
    assert mcu.request(Arm(*targets)) == Result.OK
    start = mcu.telemetry().mcu_time_ms
    half_way = mcu.until(lambda t: t.mcu_time_ms >= start + 250, within_ms=400)
    state = board.state()
    assert 1700 < state.servo_us[0] < 2300, state.servo_us  # still moving at 180 deg/s
    mcu.until(lambda t: t.mcu_time_ms >= half_way.mcu_time_ms + 450, within_ms=600)
    state = board.state()
    # widths within 5 us: the pulse edges are set in an ISR, a few cycles of latency
    assert abs(state.servo_us[0] - 2500) <= 5, state.servo_us
    assert all(abs(us - 1500) <= 5 for us in state.servo_us[1:]), state.servo_us
    assert abs(float(str(state.raw["servo_period_us"])) - 20_000) <= 5
