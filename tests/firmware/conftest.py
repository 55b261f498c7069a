"""Fixtures of the firmware tests: the AVR build, the emulator build, a running board,
and a protocol client with its session open.

The builds run through the same makefile fragments as CI (`firmware/avr.mk`,
`firmware/emulator/emulator.mk`); they are no-ops when nothing changed.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.protocol import Result

from .mcu import Mcu

ROOT = Path(__file__).resolve().parents[2]
AVR_BUILD = ROOT / "build" / "avr"


def _make(makefile: str) -> None:
    done = subprocess.run(
        ["make", "-f", makefile, "-j4"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"make -f {makefile} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def firmware_elf() -> Path:
    _make("firmware/avr.mk")
    return AVR_BUILD / "zima.elf"


@pytest.fixture(scope="session")
def emulator_binary() -> Path:
    _make("firmware/emulator/emulator.mk")
    return ROOT / "build" / "emulator" / "zima-emu"


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
