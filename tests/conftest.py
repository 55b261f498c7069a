"""Fixtures of the whole suite: Hypothesis profiles, the firmware and emulator builds, and
a real emulated board behind a stable port path (used by tests/onboard and tests/host).

``ci`` (chosen when the environment variable CI is set) is derandomized, so a CI run
is reproducible and never red by chance; ``dev`` explores new examples on every run.
``HYPOTHESIS_PROFILE=ci`` picks the CI profile locally.
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from zima.emulator import EmulatedBoard, EmulatorConfig
from zima.onboard.link_config import LinkConfig

# The `broker` fixture (a real Mosquitto on loopback) for every folder that needs one.
pytest_plugins = ["tests.mqtt_broker"]

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
DEFAULT_PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or DEFAULT_PROFILE)


# --- the real firmware and the emulated board, built as CI builds them ------------------
# Through the same makefile fragments as CI (firmware/avr.mk, firmware/emulator/emulator.mk);
# no-ops when nothing changed.

ROOT = Path(__file__).resolve().parents[1]
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


# --- the emulated board behind a stable port path -----------------------------------------
# The board's UART is symlinked at ``tmp_path/zima-mcu``, as udev links /dev/zima-mcu on the
# robot, so a test can stop the emulator and start another one on the same path while the
# link keeps running.


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


# --- test tiers ----------------------------------------------------------------------------
# `make test-fast` runs the pure-logic tests (codecs, Safety, contract, chunking, parsers,
# records): no firmware build, emulator, broker, simulator, browser or training. A test's
# tier follows from what it uses (its fixtures, transitively, and its folder), so a new
# test lands in the right tier without anyone remembering to mark it.
_TIER_FIXTURES = {
    "hardware": {"board", "board_config", "link_config", "firmware_elf", "emulator_binary",
                 "mcu"},
    "broker": {"broker", "key_file"},  # key_file: the remote policy server's tests
    "browser": {"page", "driver"},
    "sim": {"make_env", "env", "hil_config", "stack"},
}
_TIER_FOLDERS = {"firmware": "hardware", "faults": "hardware", "sim": "sim",
                 "training": "train", "export": "train", "host": "broker",
                 "ecosystem": "sim"}  # simulated episodes, videos, the viewer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    for item in items:
        tiers = {tier for tier, names in _TIER_FIXTURES.items()
                 if names & set(getattr(item, "fixturenames", ()))}
        folder = Path(str(item.path)).relative_to(ROOT / "tests").parts[0]
        if folder in _TIER_FOLDERS:
            tiers.add(_TIER_FOLDERS[folder])
        for tier in tiers:
            item.add_marker(tier)
