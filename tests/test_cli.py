"""The `zima` command: every registered subcommand loads and answers --help."""

import subprocess
import sys
from pathlib import Path

import pytest

from zima import __version__
from zima.cli import COMMANDS, build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0
    assert COMMANDS[name][1] in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    # The `zima` entry point of the installed distribution, run as a user would.
    script = Path(sys.executable).parent / "zima"
    zima = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in zima.stdout
