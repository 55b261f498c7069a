"""External wheels: another program supplies the wheel positions of the emulated board.

What the MuJoCo hardware-in-the-loop run does (``zima sim run``): read the tracks' speeds
(the emulator's motor model under the firmware's drive) from the state lines, move the
tracks, and send the wheel
positions back as absolute encoder counts (``EmulatedBoard.set_wheels``), which the
emulator walks onto the firmware's encoder pins as quadrature edges. Here a plant in
Python stands in for MuJoCo: its tracks move at the emulator's motor-model speeds.

Judged in emulated time (state lines' ``time_us``, TELEMETRY's ``mcu_time_ms``);
wall-clock limits are only hang guards.
"""

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zima.emulator import EmulatedBoard, EmulatorCommandError, EmulatorConfig
from zima.protocol import Drive, Telemetry

from .mcu import Mcu

STATE_HZ = 100.0  # the sim loop's rate: one plant step and one set_wheels per state line
MAX_SPEED_MM_S = 1000.0  # EmulatorConfig.max_speed_mm_s default: speed at full duty
TICKS_PER_M = 4000.0  # the firmware's default ticks_per_m
MIN_EDGE_US = 50.0  # EmulatorConfig.wheels_min_edge_us default
WALL_GUARD_S = 30.0


@pytest.fixture
def board(
    request: pytest.FixtureRequest, firmware_elf: Path, emulator_binary: Path
) -> Iterator[EmulatedBoard]:
    """The board of tests/firmware/conftest.py, with state lines at the sim loop's rate;
    paced at 1x unless a test asks for another speed (indirect parametrization)."""
    speed = float(getattr(request, "param", 1.0))
    config = EmulatorConfig(
        firmware=firmware_elf, binary=emulator_binary, state_hz=STATE_HZ, speed=speed
    )
    with EmulatedBoard(config) as running:
        yield running


def _driver(mcu: Mcu, left: int, right: int) -> Callable[[Telemetry], None]:
    """One DRIVE per TELEMETRY received: keeps the command watchdog fed."""

    def on_telemetry(_t: Telemetry) -> None:
        mcu.send(Drive(left, right))

    return on_telemetry


def _counts(t: Telemetry) -> tuple[int, int]:
    return t.enc_left_ticks, t.enc_right_ticks


def _at(left: int, right: int) -> Callable[[Telemetry], bool]:
    return lambda t: _counts(t) == (left, right)


def test_wheel_counts_reach_the_firmware_exactly(board: EmulatedBoard, mcu: Mcu) -> None:
    board.external_wheels(on=True)
    assert board.state().wheels_external
    for left, right in ((100, -50), (-200, 30), (40, -60)):  # forward, backwards past zero
        board.set_wheels(left, right)
        mcu.until(_at(left, right), within_ms=500)
        state = board.state()
        assert (state.enc_left_ticks, state.enc_right_ticks) == (left, right)
        assert (state.wheels_lag_left_ticks, state.wheels_lag_right_ticks) == (0, 0)
    # a jump too large for one interval at the closest edge spacing (12000 edges * 50 us
    # = 0.6 s): spread over longer, and the lag is reported meanwhile
    sent_at_ms = mcu.telemetry().mcu_time_ms
    board.set_wheels(12_000, -12_000)
    in_flight = board.state()
    assert in_flight.wheels_lag_left_ticks > 0, in_flight
    assert in_flight.wheels_lag_right_ticks < 0, in_flight
    assert int(str(in_flight.raw["wheels_late_left"])) >= 1
    reached = mcu.until(_at(12_000, -12_000), within_ms=2000)
    assert reached.mcu_time_ms - sent_at_ms >= 12_000 * MIN_EDGE_US / 1000 - 40
    # every count arrived and stays: nothing lost to edges too close for the encoder ISR
    later = mcu.until(lambda t: t.mcu_time_ms >= reached.mcu_time_ms + 100, within_ms=300)
    assert _counts(later) == (12_000, -12_000)
    state = board.state()
    assert (state.wheels_lag_left_ticks, state.wheels_lag_right_ticks) == (0, 0)


# Half speed: a loop delayed by a busy machine is then half as late in emulated time (the
# sim's loop has the whole machine to itself; this one shares it with the test runner).
@pytest.mark.parametrize("board", [0.5], indirect=True)
def test_the_firmware_pid_closes_the_loop_through_an_external_plant(
    board: EmulatedBoard, mcu: Mcu
) -> None:
    board.external_wheels(on=True)
    state = board.wait_state()
    position = [float(state.enc_left_ticks), float(state.enc_right_ticks)]  # counts
    speed = [0.0, 0.0]  # mm/s
    time_us = state.time_us
    drive = _driver(mcu, 300, 300)
    mcu.send(Drive(300, 300))
    start_ms: int | None = None
    settled: list[Telemetry] = []
    wall_deadline = time.monotonic() + WALL_GUARD_S
    while time.monotonic() < wall_deadline:
        state = board.wait_state(time_us)
        dt_s = (state.time_us - time_us) / 1e6
        time_us = state.time_us
        speed = [state.motor_left_mm_s, state.motor_right_mm_s]  # the emulator's motor model
        for i in range(2):
            position[i] += speed[i] / 1000 * dt_s * TICKS_PER_M
        board.set_wheels(math.floor(position[0]), math.floor(position[1]))
        if mcu.port.in_waiting:  # pump() would wait for bytes: the loop must not
            for frame in mcu.pump():
                if isinstance(frame.message, Telemetry):
                    drive(frame.message)
                    start_ms = frame.message.mcu_time_ms if start_ms is None else start_ms
                    if frame.message.mcu_time_ms - start_ms >= 1500:
                        settled.append(frame.message)
        if start_ms is not None and mcu.mcu_time_ms - start_ms >= 2500:
            break
    assert len(settled) >= 30, "the loop did not run 2.5 s of MCU time"
    # 1.5 s to 2.5 s after DRIVE: settled near the target on average. Single samples get a
    # wide band: a loop iteration delayed by a busy machine leaves the wheels still for a
    # moment (the emulator cannot walk ahead of counts it was not sent).
    for side in ("left", "right"):
        vels = [getattr(t, f"vel_{side}_mm_s") for t in settled]
        assert abs(sum(vels) / len(vels) - 300) <= 30, (side, vels)
        assert all(abs(v - 300) <= 150 for v in vels), (side, vels)
    outs = [t.out_left_permille for t in settled]
    assert 0 < sum(outs) / len(outs) < 900, outs  # driving, not saturated
    # the plant moved at the speed the firmware measured, and the counts followed it
    assert abs(speed[0] - 300) <= 45, speed
    assert abs(speed[1] - 300) <= 45, speed
    last = settled[-1]
    assert abs(last.enc_left_ticks - position[0]) <= 0.1 * TICKS_PER_M * 0.3 + 4
    assert board.state().wheels_external


def test_in_external_mode_the_built_in_tracks_do_not_move(board: EmulatedBoard, mcu: Mcu) -> None:
    board.external_wheels(on=True)
    before = board.state()
    drive = _driver(mcu, 300, 300)
    mcu.send(Drive(300, 300))
    start = mcu.telemetry().mcu_time_ms
    last = mcu.until(lambda t: t.mcu_time_ms >= start + 300, within_ms=500, on_telemetry=drive)
    state = board.state()
    assert state.duty_signed_left > 0.5, state  # pushing against wheels that do not turn
    assert state.duty_signed_right > 0.5, state
    # The motor model goes on (what the other program's tracks would do): its speed under
    # that drive, while nothing moves the encoders.
    for motor, duty in ((state.motor_left_mm_s, state.duty_signed_left),
                        (state.motor_right_mm_s, state.duty_signed_right)):
        assert 0.5 * duty * MAX_SPEED_MM_S < motor <= MAX_SPEED_MM_S, state
    assert state.speed_left_mm_s == 0.0, state
    assert (state.enc_left_ticks, state.enc_right_ticks) == (
        before.enc_left_ticks,
        before.enc_right_ticks,
    )
    assert _counts(last) == (before.enc_left_ticks, before.enc_right_ticks)
    # back to the built-in model: the same duty moves the tracks again
    board.external_wheels(on=False)
    moved = mcu.until(lambda t: t.enc_left_ticks > last.enc_left_ticks + 40, 500, drive)
    assert moved.enc_right_ticks > last.enc_right_ticks + 40
    assert not board.state().wheels_external


def test_bad_wheels_commands_are_refused_by_name(board: EmulatedBoard) -> None:
    with pytest.raises(TypeError, match="left_ticks"):
        board.set_wheels(1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="right_ticks"):
        board.set_wheels(0, 2**31)
    with pytest.raises(EmulatorCommandError, match="right_ticks"):
        board.command("wheels", left_ticks=10)
    with pytest.raises(EmulatorCommandError, match="left_ticks"):
        board.command("wheels", left_ticks=1.5, right_ticks=0)
    with pytest.raises(EmulatorCommandError, match="external"):
        board.command("wheels", external=False, left_ticks=1, right_ticks=1)
    assert not board.state().wheels_external  # nothing refused changed the mode
