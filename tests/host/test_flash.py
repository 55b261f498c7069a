"""`zima flash`: port discovery from injected port lists, the handshake check against the
emulated board (real firmware, built with git HEAD's id by firmware/avr.mk), and the
errors a user meets (no PlatformIO, no board, several boards, another build, no answer)."""

import os
import tty
from dataclasses import dataclass
from pathlib import Path

import pytest

from zima.cli import main
from zima.emulator import EmulatorConfig
from zima.host.flash import FlashError, find_board_port, git_build_id, verify_build


@dataclass
class Port:
    device: str
    vid: int | None = None
    pid: int | None = None
    description: str = "n/a"


MEGA = Port("/dev/ttyACM0", 0x2341, 0x0042, "Arduino Mega 2560")
CLONE = Port("/dev/ttyUSB0", 0x1A86, 0x7523, "USB2.0-Serial")
OLD_MEGA = Port("/dev/ttyACM3", 0x2341, 0x0010, "Arduino Mega")
FTDI = Port("/dev/ttyUSB1", 0x0403, 0x6001, "FT232R USB UART")
BUILTIN = Port("/dev/ttyS0")


def test_the_one_board_is_found_among_other_ports() -> None:
    assert find_board_port([BUILTIN, FTDI, MEGA]) == "/dev/ttyACM0"
    assert find_board_port([CLONE, BUILTIN]) == "/dev/ttyUSB0"
    assert find_board_port([OLD_MEGA]) == "/dev/ttyACM3"


def test_no_board_lists_what_was_seen() -> None:
    with pytest.raises(FlashError, match="no Arduino Mega 2560 found") as caught:
        find_board_port([BUILTIN, FTDI])
    message = str(caught.value)
    assert "/dev/ttyUSB1 (0403:6001, FT232R USB UART)" in message
    assert "/dev/ttyS0 (no USB id" in message
    assert "--port" in message
    with pytest.raises(FlashError, match="no serial ports at all"):
        find_board_port([])


def test_several_boards_are_listed_for_the_user_to_pick() -> None:
    with pytest.raises(FlashError, match="several boards found") as caught:
        find_board_port([MEGA, FTDI, CLONE])
    message = str(caught.value)
    assert "/dev/ttyACM0 (2341:0042" in message
    assert "/dev/ttyUSB0 (1a86:7523" in message
    assert "ttyUSB1" not in message


def test_verify_accepts_the_build_just_made_and_names_a_mismatch(
    board_config: EmulatorConfig, board: object
) -> None:
    assert board_config.port is not None
    expected = git_build_id()
    info = verify_build(board_config.port, expected, timeout_s=10.0)
    assert info.build_id == expected
    other = expected ^ 0x5A5A5A5A
    with pytest.raises(FlashError, match="runs build") as caught:
        verify_build(board_config.port, other, timeout_s=10.0)
    assert f"{expected:08x}" in str(caught.value)
    assert f"expected {other:08x}" in str(caught.value)


def test_verify_only_through_the_command_line(
    board_config: EmulatorConfig, board: object, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(board_config.port)
    assert main(["flash", "--verify-only", "--port", port]) == 0
    assert "OK: firmware" in capsys.readouterr().out
    assert main(["flash", "--no-build", "--port", port, "--expect-build", "0xdeadbeef"]) == 1
    assert "expected deadbeef" in capsys.readouterr().err


def test_a_silent_port_is_no_answer(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a serial line with nothing behind it
    try:
        tty.setraw(slave)
        with pytest.raises(FlashError, match="no answer from the board"):
            verify_build(Path(os.ttyname(slave)), 0, timeout_s=0.5)
    finally:
        os.close(master)
        os.close(slave)


def test_missing_platformio_says_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flash", "--pio", "/nonexistent", "--port", "/dev/null"]) == 1
    err = capsys.readouterr().err
    assert "PlatformIO not found: --pio /nonexistent" in err
    assert "pipx install platformio" in err


def test_bad_expected_build_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flash", "--verify-only", "--port", "/dev/null", "--expect-build", "xyz"]) == 1
    assert "'xyz' is not a hex build id" in capsys.readouterr().err
