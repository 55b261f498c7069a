"""platformio.ini and the make path build the same sources with the same flags.

Users flash with `pio run -t upload`; CI cannot download PlatformIO's toolchain, so it
builds through firmware/avr.mk. `pio project config` reads the ini without a network, and
this test holds it to firmware/build_flags.txt, the list avr.mk compiles with.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, avr_dry_run, avr_flags

FIRMWARE = ROOT / "firmware"
BOARDS_TXT = Path("/usr/share/arduino/hardware/arduino/avr/boards.txt")


@pytest.fixture(scope="module")
def ini() -> dict[str, dict[str, object]]:
    pio = Path(sys.executable).parent / "pio"
    done = subprocess.run(
        [pio, "project", "config", "--json-output"],
        cwd=FIRMWARE,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return {section: dict(options) for section, options in json.loads(done.stdout)}


def _words(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [word for item in items for word in str(item).split()]


def test_avr_env_is_the_mega_with_arduino(ini: dict[str, dict[str, object]]) -> None:
    env = ini["env:megaatmega2560"]
    assert env["platform"] == "atmelavr"
    assert env["board"] == "megaatmega2560"
    assert env["framework"] == ["arduino"]
    # Sources: PlatformIO's defaults (src/, lib/), the same folders avr.mk compiles.
    for option in ("src_dir", "lib_dir", "build_src_filter", "src_filter"):
        assert option not in env
        assert option not in ini.get("platformio", {})


def test_avr_flags_agree_with_the_make_path(ini: dict[str, dict[str, object]]) -> None:
    env = ini["env:megaatmega2560"]
    assert sorted(_words(env["build_flags"])) == sorted(avr_flags("common") + avr_flags("link"))
    assert sorted(_words(env["build_src_flags"])) == sorted(avr_flags("warnings"))
    assert {"-flto", "-fpermissive"} <= set(_words(env["build_unflags"]))
    library = json.loads((FIRMWARE / "lib" / "zima_core" / "library.json").read_text())
    assert set(avr_flags("warnings")) <= set(_words(library["build"]["flags"]))


def test_board_flags_are_the_megas(ini: dict[str, dict[str, object]]) -> None:
    # PlatformIO derives -mmcu and F_CPU from its board manifest, which mirrors the
    # Arduino core's boards.txt; the make path writes them out in the `board` group.
    boards = dict(
        line.split("=", 1) for line in BOARDS_TXT.read_text().splitlines() if "=" in line
    )
    assert f"-mmcu={boards['mega.menu.cpu.atmega2560.build.mcu']}" in avr_flags("board")
    assert f"-DF_CPU={boards['mega.build.f_cpu']}" in avr_flags("board")
    assert f"-DARDUINO_{boards['mega.menu.cpu.atmega2560.build.board']}" in avr_flags("board")
    assert ini["env:megaatmega2560"]["board"] == "megaatmega2560"


def test_make_path_compiles_every_source_pio_would() -> None:
    dry = "\n".join(avr_dry_run()) + "\n"
    sources = sorted(FIRMWARE.glob("src/*.cpp")) + sorted(FIRMWARE.glob("lib/*/src/*.cpp"))
    assert sources
    for source in sources:
        assert f"-c {source} " in dry, f"avr.mk does not compile {source.relative_to(ROOT)}"


def test_native_env_runs_the_googletest_suites(ini: dict[str, dict[str, object]]) -> None:
    env = ini["env:native"]
    assert env["platform"] == "native"
    assert env["test_framework"] == "googletest"
    assert set(avr_flags("warnings")) <= set(_words(env["build_flags"]))
