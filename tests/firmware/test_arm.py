"""The real firmware on the emulated board: the arm's loss-of-host rules (PROTOCOL.md ARM).

An arm move interrupted by session loss (2000 ms without a frame) or by ESTOP stops where
the servos are at that moment: ARM_STATE and the pulses the emulator measures on the six
servo pins stay there, and a later session or CLEAR does not carry on to the old target.
Judged in emulated time (TELEMETRY.mcu_time_ms); the pulses are the emulator's.
"""

import statistics

from zima.emulator import EmulatedBoard
from zima.protocol import (
    Arm,
    ArmState,
    Clear,
    Estop,
    Fault,
    Heartbeat,
    Result,
    State,
    Telemetry,
)

from .mcu import Mcu

KEEP = 0xFFFF  # ARM: leave this joint alone
HOME_DDEG = 900  # every joint's command at power-on: 90.0 deg
# Pulse edges are set in the Timer5 ISR: another ISR running (UART, timers, encoders) can
# delay one edge by 10-15 us (seen: 13 us). The median of a few frames is within this
# of the command; 1 deg is 11 us, and a held joint would have moved 100 us and more.
PULSE_TOLERANCE_US = 8


def _pulse_us(ddeg: int) -> float:
    """The pulse firmware/src/servos.cpp puts out for a command: 0..1800 -> 500..2500 us."""
    return 500 + ddeg * 2000 // 1800


def _arm(joint0: tuple[int, int], joint1: tuple[int, int] = (KEEP, 0)) -> Arm:
    """ARM moving joints 0 and 1 (target, speed); the others left alone."""
    fields = [*joint0, *joint1] + [KEEP, 0] * 4
    return Arm(*fields)


def _positions(msg: ArmState) -> tuple[int, ...]:
    return (msg.pos0_ddeg, msg.pos1_ddeg, msg.pos2_ddeg, msg.pos3_ddeg, msg.pos4_ddeg,
            msg.pos5_ddeg)  # fmt: skip


def _pulses(board: EmulatedBoard, mcu: Mcu, frames: int = 5) -> tuple[float, ...]:
    """Per servo, the median width of `frames` pulses one TELEMETRY period (20 ms, one
    servo frame) apart: one late ISR does not decide."""
    samples = []
    for _ in range(frames):
        mcu.telemetry()
        samples.append(board.state().servo_us)
    return tuple(statistics.median(s[j] for s in samples) for j in range(6))


def _arm_states_since(mcu: Mcu, index: int) -> list[tuple[int, ...]]:
    return [_positions(f.message) for f in mcu.frames[index:] if isinstance(f.message, ArmState)]


def test_power_on_position_is_mid_travel(board: EmulatedBoard, mcu: Mcu) -> None:
    arm_state = mcu.wait_for(ArmState, within_ms=300)
    assert _positions(arm_state) == (HOME_DDEG,) * 6
    pulses = _pulses(board, mcu)
    assert all(abs(us - _pulse_us(HOME_DDEG)) <= PULSE_TOLERANCE_US for us in pulses), pulses


def test_session_loss_holds_the_arm_where_it_is(board: EmulatedBoard, mcu: Mcu) -> None:
    # joint 0 toward 180.0 deg at 10 deg/s: 9 s of travel; then the host falls silent
    assert mcu.request(_arm((1800, 100))) == Result.OK
    moving = mcu.wait_for(ArmState, lambda a: a.pos0_ddeg > HOME_DDEG + 50, within_ms=1000)
    assert moving.pos0_ddeg < 1800
    # the session times out 2000 ms after the ARM (the last frame the MCU received)
    index = len(mcu.frames)
    lost = mcu.until(lambda t: t.state == State.WAIT_HOST, within_ms=2500)
    seen = _arm_states_since(mcu, index)
    assert seen, "ARM_STATE goes on while the session is open"
    last_seen = seen[-1][0]  # ARM_STATE is 10 Hz: at most 100 ms (1.0 deg) before the loss
    assert 1050 <= last_seen <= 1110, seen

    first = _pulses(board, mcu)
    held_us = first[0]
    assert _pulse_us(last_seen) - PULSE_TOLERANCE_US <= held_us, (last_seen, held_us)
    assert held_us <= _pulse_us(last_seen + 12) + PULSE_TOLERANCE_US, (last_seen, held_us)
    # a second later (it would be 10 deg further on its way to 180): no motion
    index = len(mcu.frames)
    mcu.until(lambda t: t.mcu_time_ms >= lost.mcu_time_ms + 1000, within_ms=1200)
    later = _pulses(board, mcu)
    assert abs(later[0] - held_us) <= PULSE_TOLERANCE_US, (held_us, later)
    assert all(abs(us - _pulse_us(HOME_DDEG)) <= PULSE_TOLERANCE_US for us in later[1:]), later
    assert _arm_states_since(mcu, index) == [], "no ARM_STATE without a session"

    # a new session finds the arm where it stopped, and it stays there
    _info, result = mcu.handshake()
    assert result == Result.OK
    again = mcu.wait_for(ArmState, within_ms=300)
    held = again.pos0_ddeg
    assert abs(_pulse_us(held) - held_us) <= PULSE_TOLERANCE_US, (held, held_us)
    after = mcu.telemetry().mcu_time_ms
    index = len(mcu.frames)
    mcu.until(lambda t: t.mcu_time_ms >= after + 500, within_ms=700)
    assert {s[0] for s in _arm_states_since(mcu, index)} == {held}
    assert abs(_pulses(board, mcu)[0] - held_us) <= PULSE_TOLERANCE_US


def test_estop_holds_the_arm_and_clear_does_not_resume(board: EmulatedBoard, mcu: Mcu) -> None:
    def keep_session(_t: Telemetry) -> None:
        mcu.send(Heartbeat(0))

    # joint 0 toward 0 and joint 1 toward 180.0 deg, both at 30 deg/s (3 s of travel)
    assert mcu.request(_arm((0, 300), (1800, 300))) == Result.OK
    moving = mcu.wait_for(ArmState, lambda a: a.pos0_ddeg < 700, within_ms=1500)
    assert moving.pos1_ddeg > 1100
    assert mcu.request(Estop()) == Result.OK
    stopped_at = mcu.telemetry().mcu_time_ms
    first = _pulses(board, mcu)
    index = len(mcu.frames)
    estopped = mcu.until(
        lambda t: t.mcu_time_ms >= stopped_at + 1000, within_ms=1200, on_telemetry=keep_session
    )
    assert estopped.state == State.ESTOP
    seen = _arm_states_since(mcu, index)
    assert len(seen) >= 8
    assert len(set(seen)) == 1, seen  # not one step further
    held = seen[0]
    assert 300 < held[0] < 700, held
    assert 1100 < held[1] < 1500, held
    later = _pulses(board, mcu)
    for j in range(6):
        assert abs(later[j] - first[j]) <= PULSE_TOLERANCE_US, (first, later)
        assert abs(later[j] - _pulse_us(held[j])) <= PULSE_TOLERANCE_US, (held, later)

    # ARM is refused in e-stop; after CLEAR the arm stays until a new ARM
    assert mcu.request(_arm((0, 300))) == Result.ESTOPPED
    assert mcu.request(Clear(int(Fault.ESTOP))) == Result.OK
    cleared_at = mcu.telemetry().mcu_time_ms
    index = len(mcu.frames)
    mcu.until(lambda t: t.mcu_time_ms >= cleared_at + 500, within_ms=700, on_telemetry=keep_session)
    assert set(_arm_states_since(mcu, index)) == {held}
    assert mcu.request(_arm((held[0] - 100, 0))) == Result.OK  # 10 deg at 180 deg/s
    moved = mcu.wait_for(ArmState, lambda a: a.pos0_ddeg == held[0] - 100, within_ms=500)
    assert moved.pos1_ddeg == held[1]
