"""McuLink keeps the link up by itself: the emulator restarted on the same port path, the
MCU reset, garbage on the line both ways.

Reconnect times are measured on the wall clock (the link's own business is wall-clock
timeouts) with limits far above what is expected, as failure guards only.
"""

import asyncio
import logging
import os
import random
import time
from pathlib import Path

import pytest

from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import LinkDownError
from zima.onboard.mcu_state import LinkStatus
from zima.protocol import FrameEncoder, Heartbeat, ParamId, ResetCause, State

from .helpers import NoisyLine, run, until_mcu


def test_the_link_comes_back_after_the_emulator_restarts(
    board: EmulatedBoard,
    board_config: EmulatorConfig,
    link_config: LinkConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="zima.onboard")
    statuses: list[LinkStatus] = []

    second = EmulatedBoard(board_config)  # a new MCU on the same path

    async def main() -> float:
        async with McuLink(link_config, on_status=statuses.append) as link:
            await link.set_param(ParamId.pid_kp, 0.9)
            await link.set_param(ParamId.stall_ms, 700)
            await asyncio.to_thread(board.close)  # the MCU's port vanishes
            down = await link.wait_status(lambda s: not s.connected, timeout_s=2.0)
            assert "vanished" in down.reason, down
            with pytest.raises(LinkDownError):
                link.drive(100, 100)
            started_s = time.monotonic()
            await asyncio.to_thread(second.start)
            up = await link.wait_status(lambda s: s.connected, timeout_s=10.0)
            reconnect_s = time.monotonic() - started_s
            assert (up.connects, up.disconnects) == (2, 1)
            assert up.info is not None
            assert up.info.reset_cause == ResetCause.POWER_ON  # really a new MCU
            # the parameters were set again (the new MCU started from its defaults)
            assert await link.get_param(ParamId.pid_kp) == pytest.approx(0.9)
            assert await link.get_param(ParamId.stall_ms) == 700
            await link.wait_for(lambda s: s.state == State.IDLE, timeout_s=2.0)
            link.drive(0, 0)
            return reconnect_s

    try:
        reconnect_s = run(main)
    finally:
        second.close()
    assert reconnect_s < 3.0  # expected: one backoff step (<= 0.4 s) plus a handshake
    assert [s.connected for s in statuses] == [True, False, True, False]  # last: closed
    lost = [r for r in caplog.records if "MCU link lost" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert "command watchdog stops the tracks" in lost[0].getMessage()


def test_the_link_handshakes_again_after_an_mcu_reset(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main() -> None:
        async with McuLink(link_config) as link:
            await link.set_param(ParamId.max_speed_mm_s, 800)
            await asyncio.to_thread(board.reset)  # the reset pin: what DTR does on a Mega
            down = await link.wait_status(lambda s: not s.connected, timeout_s=2.0)
            assert "reset" in down.reason or "TELEMETRY" in down.reason, down
            up = await link.wait_status(lambda s: s.connected, timeout_s=5.0)
            assert up.info is not None
            assert up.info.reset_cause == ResetCause.EXTERNAL
            assert await link.get_param(ParamId.max_speed_mm_s) == 800
            assert link.status.disconnects == 1

    run(main)


def test_garbage_toward_the_mcu_does_not_break_the_link(
    board: EmulatedBoard, link_config: LinkConfig
) -> None:
    rng = random.Random(20240602)
    bursts = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120))) for _ in range(10)]
    bursts += [b"\x5a" * 300 + b"\x00", FrameEncoder().encode(Heartbeat(7))[:-3] + b"\x00"]

    async def main() -> None:
        async with McuLink(link_config) as link:
            before = await link.wait_for(lambda _s: True, timeout_s=1.0)
            line = os.open(board.port, os.O_WRONLY | os.O_NOCTTY)  # a second writer
            try:
                for burst in bursts:
                    os.write(line, burst)
                    await asyncio.sleep(0.02)
                os.write(line, b"\x00")
            finally:
                os.close(line)
            after = await until_mcu(
                link, lambda s: s.telemetry.rx_rejected > before.telemetry.rx_rejected, 1000
            )
            assert await link.get_param(ParamId.pid_kp) == pytest.approx(0.6)
            await until_mcu(link, lambda s: s.mcu_time_ms > after.mcu_time_ms + 500, 1000)
            assert link.connected
            assert link.status.disconnects == 0
            assert link.state is not None
            assert link.state.state == State.IDLE  # the session survived

    run(main)


def test_garbage_toward_the_host_does_not_break_the_link(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    rng = random.Random(20240603)
    line = NoisyLine(board.port, tmp_path / "noisy")
    config = LinkConfig(port=tmp_path / "noisy", reconnect_max_s=link_config.reconnect_max_s)

    async def main() -> None:
        async with McuLink(config) as link:
            start = await link.wait_for(lambda _s: True, timeout_s=1.0)
            # each burst costs at most the frame it lands in and the next one (COBS resyncs
            # at the next 0x00); 12 bursts 50 ms apart leave TELEMETRY gaps < 100 ms
            for i in range(12):
                size = rng.randrange(1, 80)
                noise = bytes(rng.randrange(256) for _ in range(size))
                line.inject(noise if i % 4 else b"\x7e" * 200)  # every 4th: OVERSIZE
                await asyncio.sleep(0.05)
            line.inject(b"\x00")
            await until_mcu(link, lambda s: s.mcu_time_ms > start.mcu_time_ms + 800, 1500)
            state = link.state
            assert state is not None
            assert state.health.rx_rejected >= 8  # the host's decoder saw the noise...
            assert link.connected  # ...and the link stayed up
            assert link.status.disconnects == 0
            assert await link.set_param(ParamId.pid_ki, 5.0) == 5.0

    try:
        run(main)
    finally:
        line.close()


def test_silent_telemetry_is_a_lost_link_and_the_link_recovers(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    line = NoisyLine(board.port, tmp_path / "muted")
    config = LinkConfig(port=tmp_path / "muted", reconnect_max_s=link_config.reconnect_max_s)

    async def main() -> None:
        async with McuLink(config) as link:
            await link.set_param(ParamId.pid_kd, 0.5)
            await link.wait_for(lambda _s: True, timeout_s=1.0)  # a TELEMETRY to time from
            line.muted = True  # the MCU still hears the host, the host hears nothing
            down = await link.wait_status(lambda s: not s.connected, timeout_s=2.0)
            assert "no TELEMETRY for" in down.reason
            silent_s = down.since_s - (link.state.received_s if link.state else 0.0)
            assert 0.25 <= silent_s < 0.5, silent_s  # 250 ms, checked every 50 ms
            line.muted = False
            up = await link.wait_status(lambda s: s.connected, timeout_s=5.0)
            assert (up.connects, up.disconnects) == (2, 1)
            assert await link.get_param(ParamId.pid_kd) == pytest.approx(0.5)

    try:
        run(main)
    finally:
        line.close()
