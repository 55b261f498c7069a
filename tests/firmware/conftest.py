"""Fixtures of the firmware tests: the AVR build, the emulator build, a running board.

The builds run through the same makefile fragments as CI (`firmware/avr.mk`,
`firmware/emulator/emulator.mk`); they are no-ops when nothing changed.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from zima.emulator import EmulatedBoard, EmulatorConfig

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
    config = EmulatorConfig(firmware=firmware_elf, binary=emulator_binary, state_hz=0)
    with EmulatedBoard(config) as running:
        yield running


class Sketch:
    """The bring-up sketch's text commands over the emulated board's UART0."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port

    def line(self, timeout_s: float = 2.0) -> str:
        self.port.timeout = timeout_s
        raw: bytes = self.port.readline()
        if not raw.endswith(b"\n"):
            raise TimeoutError(f"no line from the MCU in {timeout_s} s (got {raw!r})")
        return raw.decode("ascii").strip()

    def ask(self, command: str) -> str:
        self.port.write(command.encode("ascii") + b"\n")
        return self.line()

    def query(self) -> dict[str, int]:
        answer = self.ask("Q")
        assert answer.startswith("Q "), answer
        return {k: int(v) for k, v in (item.split("=") for item in answer.split()[1:])}


@pytest.fixture
def sketch(board: EmulatedBoard) -> Iterator[Sketch]:
    """The port opened, and the MCU reset so that its boot line is seen."""
    with serial.Serial(board.port, 115200, timeout=2) as port:
        board.reset()
        mcu = Sketch(port)
        assert mcu.line() == "BOOT mcusr=0x2"  # EXTRF: the reset pin, as DTR does
        yield mcu
