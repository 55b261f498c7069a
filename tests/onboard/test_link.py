"""McuLink against the real firmware on the emulated board: handshake, refusals of the
wrong firmware, drive, telemetry, parameters.

Each test starts a fresh board (tests/onboard/conftest.py) and runs its coroutine with
``asyncio.run`` under a wall-clock guard (tests/onboard/helpers.py).
"""

import asyncio
import itertools
import logging
import os
from pathlib import Path

import pytest

from zima.emulator import EmulatedBoard
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import (
    LinkDownError,
    LinkError,
    NoAnswerError,
    PortError,
    RefusedError,
)
from zima.onboard.mcu_state import McuState
from zima.protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Board,
    Capability,
    Fault,
    HandshakeError,
    ParamId,
    ResetCause,
    Result,
    State,
)

from .helpers import driving, run, until_mcu


def test_handshake_opens_the_session_and_reports_info(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main() -> McuState:
        async with McuLink(link_config) as link:
            assert link.connected
            assert link.status.connects == 1
            return await link.wait_for(lambda s: s.state == State.IDLE, timeout_s=2.0)

    idle = run(main)
    assert idle.faults == Fault(0)
    assert idle.health.rx_rejected <= 1  # the port may open in the middle of a frame


def test_info_names_this_firmware(board: EmulatedBoard, link_config: LinkConfig) -> None:
    async def main() -> None:
        async with McuLink(link_config) as link:
            info = link.info
            assert info is not None
            assert (info.protocol_version, info.schema_hash) == (PROTOCOL_VERSION, SCHEMA_HASH)
            assert info.board == Board.MEGA2560
            assert info.capabilities == int(
                Capability.DRIVE
                | Capability.ENCODERS
                | Capability.BATTERY_MONITOR
                | Capability.ARM_SERVOS
                | Capability.PARAMETERS
            )
            assert info.max_payload == 49
            assert info.reset_cause == ResetCause.POWER_ON

    run(main)


def test_another_schema_is_refused_naming_both_sides(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    other = SCHEMA_HASH ^ 0x00010000
    config = LinkConfig(port=link_config.port, schema_hash=other)

    async def main() -> None:
        async with McuLink(config):
            pytest.fail("the link came up with another schema")

    with pytest.raises(HandshakeError) as caught:
        run(main)
    message = str(caught.value)
    assert f"firmware speaks protocol {PROTOCOL_VERSION}, schema 0x{SCHEMA_HASH:08x}" in message
    assert f"this host speaks protocol {PROTOCOL_VERSION}, schema 0x{other:08x}" in message
    assert isinstance(caught.value, LinkError)  # one except clause catches the whole link
    assert caught.value.info.schema_hash == SCHEMA_HASH


def test_a_missing_port_is_a_port_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with McuLink(LinkConfig(port=tmp_path / "nothing")):
            pytest.fail("opened a port that does not exist")

    with pytest.raises(PortError, match="nothing"):
        run(main)


def test_a_silent_port_is_no_answer(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a serial port with nobody behind it
    link_path = tmp_path / "silent"
    link_path.symlink_to(os.ttyname(slave))
    config = LinkConfig(port=link_path, handshake_timeout_s=0.6)

    async def main() -> None:
        async with McuLink(config):
            pytest.fail("a handshake without an MCU")

    try:
        with pytest.raises(NoAnswerError, match="no answer from the MCU on"):
            run(main)
        hellos = os.read(master, 4096)  # HELLO was repeated every 250 ms: 3 in 0.6 s
        assert hellos.startswith(b"\x00")
        # at 0, 0.25 and 0.5 s; a loaded machine may push the third past the 0.6 s timeout
        assert 2 <= hellos.count(b"\x00") - 1 <= 3
    finally:
        os.close(master)
        os.close(slave)


def test_drive_turns_the_tracks_and_zero_stops_them(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main() -> None:
        async with McuLink(link_config) as link:
            moving = await until_mcu(
                link,
                lambda s: s.telemetry.vel_left_mm_s > 270 and s.telemetry.vel_right_mm_s < -270,
                within_ms=1000,
                each=driving(link, 300, -300),
            )
            assert moving.state == State.DRIVING
            physical = await asyncio.to_thread(board.state)
            assert physical.speed_left_mm_s > 250
            assert physical.speed_right_mm_s < -250
            assert (physical.dir_left, physical.dir_right) == (1, 0)

            link.drive(0, 0)
            stopped = await until_mcu(
                link,
                lambda s: s.telemetry.out_left_permille == 0
                and s.telemetry.out_right_permille == 0
                and abs(s.telemetry.vel_left_mm_s) < 5,
                within_ms=1000,
            )
            assert stopped.state == State.IDLE
            assert not stopped.faults & Fault.WATCHDOG  # stopped by the zeros, not the watchdog
            physical = await asyncio.to_thread(board.state)
            assert (physical.duty_left, physical.duty_right) == (0, 0)

    run(main)


def test_telemetry_arrives_at_50_hz(board: EmulatedBoard, link_config: LinkConfig) -> None:
    async def main() -> list[McuState]:
        async with McuLink(link_config) as link:
            first = await link.wait_for(lambda _s: True, timeout_s=1.0)
            seen: list[McuState] = []
            await until_mcu(
                link, lambda s: s.mcu_time_ms >= first.mcu_time_ms + 1000, 1500, seen.append
            )
            return seen

    seen = run(main)
    # in MCU time: one TELEMETRY every 20 ms, none lost (a slow consumer of states() may
    # skip some: the frame counter says how many arrived)
    first, last_state = seen[0], seen[-1]
    frames = last_state.health.telemetry_frames - first.health.telemetry_frames
    assert last_state.mcu_time_ms - first.mcu_time_ms == 20 * frames
    assert all((b - a) % 20 == 0 for a, b in itertools.pairwise(s.mcu_time_ms for s in seen))
    last = last_state.health
    assert last.rx_dropped == 0
    # host clock: ~50 frames/s (the emulator paces to the wall clock; generous bounds)
    assert 35 <= last.telemetry_hz <= 65, last
    assert last.max_gap_s < 0.25, last


def test_parameters_round_trip_and_out_of_range_is_refused(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main() -> None:
        async with McuLink(link_config) as link:
            assert await link.get_param(ParamId.pid_kp) == pytest.approx(0.6)
            assert await link.set_param(ParamId.pid_kp, 0.8) == pytest.approx(0.8)
            assert await link.get_param(ParamId.pid_kp) == pytest.approx(0.8)
            assert await link.set_param(ParamId.stall_ms, 600.4) == 600.0  # integers round
            with pytest.raises(RefusedError) as caught:
                await link.set_param(ParamId.watchdog_ms, 99_999)
            assert caught.value.result == Result.OUT_OF_RANGE
            assert await link.get_param(ParamId.watchdog_ms) == 250  # nothing changed
            with pytest.raises(RefusedError) as unknown:
                await link.get_param(99)
            assert unknown.value.result == Result.UNKNOWN_PARAM
            assert link.connected

    run(main)


def test_estop_refuses_drive_until_cleared(board: EmulatedBoard, link_config: LinkConfig) -> None:
    async def main() -> None:
        async with McuLink(link_config) as link:
            await link.estop()
            await link.wait_for(lambda s: s.state == State.ESTOP, timeout_s=2.0)
            link.drive(100, 100)
            await until_mcu(link, lambda s: s.mcu_time_ms > 0, 100)  # the ACK arrives meanwhile
            await asyncio.sleep(0.1)
            with pytest.raises(RefusedError) as caught:  # the refusal surfaces on the next call
                link.drive(100, 100)
            assert caught.value.result == Result.ESTOPPED
            await link.clear(Fault.ESTOP)
            await link.wait_for(lambda s: s.state == State.IDLE, timeout_s=2.0)
            await link.arm([900, None, None, None, None, 1200])
            with pytest.raises(RefusedError) as bad_arm:
                await link.arm([5000, None, None, None, None, None])
            assert bad_arm.value.result == Result.OUT_OF_RANGE

    run(main)


def test_commands_after_close_are_link_down(board: EmulatedBoard, link_config: LinkConfig) -> None:
    async def main() -> McuLink:
        async with McuLink(link_config) as link:
            pass
        return link

    link = run(main)
    assert not link.connected
    with pytest.raises(LinkDownError):
        link.drive(0, 0)


def test_mcu_log_lines_reach_the_logger_at_their_level(
    board: EmulatedBoard, link_config: LinkConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="zima.onboard.mcu")

    async def main() -> None:
        async with McuLink(link_config) as link:
            await link.set_param(ParamId.batt_low_debounce_ms, 0)
            await asyncio.to_thread(board.set_battery, 10_000)  # below batt_low_mv
            await until_mcu(link, lambda s: bool(s.faults & Fault.BATT_LOW), 3000)
            await asyncio.sleep(0.1)  # the LOG line follows the fault bit

    run(main)
    lines = [r for r in caplog.records if r.name == "zima.onboard.mcu"]
    assert any(r.levelno == logging.WARNING and "battery low" in r.getMessage() for r in lines)
