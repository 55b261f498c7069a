"""Fixtures of the onboard tests: a real emulated board behind a stable port path.

The builds are fixtures of tests/conftest.py (the same make fragments as CI). The board's
UART is symlinked at ``tmp_path/zima-mcu``, as udev links /dev/zima-mcu on the robot, so a
test can stop the emulator and start another one on the same path while the link keeps
running.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.onboard.link_config import LinkConfig

__all__ = ["board", "board_config", "link_config"]


@pytest.fixture
def board_config(firmware_elf: Path, emulator_binary: Path, tmp_path: Path) -> EmulatorConfig:
    """An emulated board paced to the wall clock, its UART at ``tmp_path/zima-mcu``."""
    return EmulatorConfig(
        firmware=firmware_elf, binary=emulator_binary, port=tmp_path / "zima-mcu", state_hz=0
    )


@pytest.fixture
def board(board_config: EmulatorConfig) -> Iterator[EmulatedBoard]:
    with EmulatedBoard(board_config) as running:
        yield running


@pytest.fixture
def link_config(board_config: EmulatorConfig) -> LinkConfig:
    """The link's defaults (those of PROTOCOL.md), except a shorter reconnect backoff."""
    assert board_config.port is not None
    return LinkConfig(port=board_config.port, reconnect_max_s=0.4)
