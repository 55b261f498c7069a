"""Fixtures of the firmware tests: the AVR build, the emulator build, a running board,
and a protocol client with its session open.

The builds (`firmware_elf`, `emulator_binary`) are fixtures of tests/conftest.py, shared
with the onboard tests.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AVR_BUILD, ROOT
from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.protocol import Result

from .mcu import Mcu

__all__ = ["AVR_BUILD", "ROOT", "avr_dry_run", "avr_flags", "git_build_id"]


def git_build_id() -> int:
    """The build id the firmware should carry: the first 8 hex digits of HEAD, 0 outside git."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return int(done.stdout[:8], 16) if done.returncode == 0 and done.stdout else 0


def avr_flags(group: str) -> list[str]:
    """The flags of one group of firmware/build_flags.txt, in order."""
    rows = [ln.split() for ln in (ROOT / "firmware" / "build_flags.txt").read_text().splitlines()]
    return [row[1] for row in rows if row and not row[0].startswith("#") and row[0] == group]


def avr_dry_run() -> list[str]:
    """Every command a full AVR rebuild would run (make -n -B), without running it."""
    return subprocess.run(
        ["make", "-n", "-B", "-f", "firmware/avr.mk"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


@pytest.fixture
def board(firmware_elf: Path, emulator_binary: Path) -> Iterator[EmulatedBoard]:
    """A fresh emulated board running the real firmware, paced to the wall clock."""
    config = EmulatorConfig(firmware=firmware_elf, binary=emulator_binary, state_hz=0)
    with EmulatedBoard(config) as running:
        yield running


@pytest.fixture
def port(board: EmulatedBoard) -> Iterator[Mcu]:
    """The board's UART opened by a protocol client; no handshake yet."""
    mcu = Mcu.open(board.port)
    try:
        yield mcu
    finally:
        mcu.close()


@pytest.fixture
def mcu(port: Mcu) -> Mcu:
    """A client whose handshake succeeded: the session is open."""
    _info, result = port.handshake()
    assert result == Result.OK
    return port
