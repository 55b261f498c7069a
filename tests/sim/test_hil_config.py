"""HilConfig's emulated board: the pack drains as configured, through the emulator's own
battery model (firmware/emulator/model.h), not a copy of it."""

from pathlib import Path

import pytest

from zima.sim.hil_config import HilConfig

FIRMWARE, BINARY = Path("zima.elf"), Path("zima-emu")


def ocv_drop_mv_s(cfg: HilConfig, duty_left: float, duty_right: float) -> float:
    """model.h: the open-circuit voltage falls (full - empty) / capacity per mAh drawn, and
    a track draws |duty| * motor_ma (no load, no idle draw)."""
    board = cfg.board_config()
    drawn_mah_s = (abs(duty_left) + abs(duty_right)) * board.motor_ma / 3600
    return (board.battery_mv - board.battery_empty_mv) / board.capacity_mah * drawn_mah_s


def test_the_pack_drains_the_configured_rate_down_to_the_floor() -> None:
    cfg = HilConfig(firmware=FIRMWARE, emulator=BINARY)
    board = cfg.board_config()
    assert (board.firmware, board.binary) == (FIRMWARE, BINARY)
    assert ocv_drop_mv_s(cfg, 1.0, -1.0) == pytest.approx(cfg.battery_drain_mv_s)
    assert ocv_drop_mv_s(cfg, 0.5, 0.0) == pytest.approx(cfg.battery_drain_mv_s / 4)
    assert (board.battery_mv, board.battery_empty_mv) == (12_300.0, 11_200.0)  # the floor
    assert board.internal_mohm == 0.0  # no sag: the plot shows the drain
    assert board.discharge
    assert "--no-discharge" not in board.argv(Path("pty"))
    assert (board.speed, board.state_hz) == (cfg.realtime_factor, cfg.state_hz)


def test_no_drain_keeps_the_voltage_and_bad_packs_are_refused() -> None:
    still = HilConfig(firmware=FIRMWARE, emulator=BINARY, battery_drain_mv_s=0.0)
    assert "--no-discharge" in still.board_config().argv(Path("pty"))
    with pytest.raises(ValueError, match="battery_floor_mv"):
        HilConfig(firmware=FIRMWARE, emulator=BINARY, battery_floor_mv=12_400.0)
    with pytest.raises(ValueError, match="battery_drain_mv_s"):
        HilConfig(firmware=FIRMWARE, emulator=BINARY, battery_drain_mv_s=-1.0)
