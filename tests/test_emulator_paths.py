"""Where zima.emulator finds zima-emu and the firmware ELF, in a checkout and in a normal
install (no source tree beside the package): the variables, PATH and install prefixes."""

import subprocess
import sys
from pathlib import Path

import pytest

from zima.emulator import (
    CHECKOUT,
    EmulatedBoard,
    EmulatorConfig,
    EmulatorNotBuiltError,
    default_port,
    find_binary,
    find_firmware,
)


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF")
    path.chmod(0o755)
    return path


def test_in_a_checkout_the_build_folder_is_used() -> None:
    assert find_binary({}) == CHECKOUT / "build" / "emulator" / "zima-emu"
    assert find_firmware({}) == CHECKOUT / "build" / "avr" / "zima.elf"
    assert default_port() == CHECKOUT / "build" / "emulator" / "ttyZIMA"


def test_the_variables_come_first(tmp_path: Path) -> None:
    env = {"ZIMA_EMULATOR": str(tmp_path / "emu"), "ZIMA_FIRMWARE": str(tmp_path / "fw.elf")}
    assert find_binary(env) == tmp_path / "emu"
    assert find_firmware(env) == tmp_path / "fw.elf"


def test_an_installed_package_finds_path_and_prefix_copies(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"  # what CHECKOUT is in a normal install
    site.mkdir()
    prefix = tmp_path / "venv"
    binary = _file(tmp_path / "bin" / "zima-emu")
    elf = _file(prefix / "share" / "zima" / "zima.elf")
    assert find_binary({"PATH": str(binary.parent)}, site, (prefix,)) == binary
    assert find_firmware({}, site, (prefix,)) == elf
    lib_copy = _file(prefix / "lib" / "zima" / "zima-emu")
    assert find_binary({"PATH": ""}, site, (prefix,)) == lib_copy
    assert default_port(site) == Path.home() / ".cache" / "zima" / "ttyZIMA"


def test_nothing_found_names_where_to_install_or_what_to_set(tmp_path: Path) -> None:
    site, prefix = tmp_path / "site-packages", tmp_path / "venv"
    config = EmulatorConfig(binary=find_binary({"PATH": ""}, site, (prefix,)),
                            firmware=find_firmware({}, site, (prefix,)))
    assert config.binary == prefix / "lib" / "zima" / "zima-emu"
    assert config.firmware == prefix / "share" / "zima" / "zima.elf"
    with pytest.raises(EmulatorNotBuiltError, match=r"venv/lib/zima/zima-emu does not exist; "
                                                    r"build it with `make emulator`.*ZIMA_EMU"):
        EmulatedBoard(config).start()


def test_a_copy_of_the_package_outside_the_tree_uses_the_variables(tmp_path: Path) -> None:
    """The module as a normal install has it: in a folder with no source tree around it."""
    package = tmp_path / "site-packages" / "zima"
    package.mkdir(parents=True)
    for name in ("__init__.py", "emulator.py"):
        (package / name).write_bytes((CHECKOUT / "zima" / name).read_bytes())
    script = (f"import sys; sys.path.insert(0, {str(package.parent)!r}); "
              "import zima.emulator as e; print(e.CHECKOUT); "
              "print(e.EmulatorConfig().binary); print(e.EmulatorConfig().firmware)")
    env = {"PATH": "", "ZIMA_EMULATOR": "/opt/zima/zima-emu",
           "ZIMA_FIRMWARE": "/opt/zima/zima.elf"}
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [str(package.parent), "/opt/zima/zima-emu", "/opt/zima/zima.elf"]
