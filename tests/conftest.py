"""Fixtures of the whole suite: Hypothesis profiles, and the firmware and emulator builds.

``ci`` (chosen when the environment variable CI is set) is derandomized, so a CI run
is reproducible and never red by chance; ``dev`` explores new examples on every run.
``HYPOTHESIS_PROFILE=ci`` picks the CI profile locally.
"""

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

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
