"""The `zima` command: one entry point, one subcommand per job.

Subcommands are registered in ``COMMANDS`` (name -> module path); each module has
``add_arguments(parser)`` and ``run(args) -> int``. A command module keeps its heavy
imports (torch, mujoco, onnxruntime) inside ``run``, so `zima --help` stays fast and a robot
without the training extras can still run every command it has.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from zima import __version__

# name -> (module, one-line help). Later parts of the stack add their commands here.
COMMANDS: dict[str, tuple[str, str]] = {
    "protocol": ("zima.protocol.cli", "show the MCU wire protocol or decode captured bytes"),
    "emulator": ("zima.emulator", "run the emulated MCU board (simavr) on a pseudo-terminal"),
    "sim": ("zima.sim.cli", "MuJoCo scenes, the scripted expert and data collection"),
    "train": ("zima.training.cli", "train the policy by behaviour cloning from episodes"),
    "score": ("zima.training.score_cli", "score a model on recorded episodes: action agreement"),
    "export": ("zima.export.cli", "export a trained checkpoint to the ONNX file the robot loads"),
    "battery": ("zima.host.battery", "live battery view of a robot over MQTT: voltage, SoC, alarm"),
    "status": ("zima.host.status", "a snapshot of a robot's mode, link, battery, policy, faults"),
    "estop": ("zima.host.estop", "engage (or --release) a robot's e-stop over MQTT and confirm it"),
    "deploy": ("zima.host.deploy", "install a policy model on a robot over SSH and hot-reload it"),
    "flash": ("zima.host.flash", "build and upload the firmware with PlatformIO, then verify it"),
    "view": ("zima.ecosystem.view", "show an episode or a live robot in rerun, or save a .rrd"),
    "episodes": ("zima.episodes_cli", "episode folders: list, verify, mark, plot, LeRobot in/out"),
    "onboard": ("zima.onboard.cli", "the robot computer's runtime service and its installer"),
    "serve": ("zima.host.serve", "serve a policy model to robots over the network (remote policy)"),
    "arm": ("zima.onboard.arm_cli", "the arm's kinematics: joint angles <-> tool pose (fk, ik)"),
}


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser() -> argparse.ArgumentParser:
    """The full parser; importing each command module to collect its arguments."""
    parser = argparse.ArgumentParser(prog="zima", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"zima {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        _load(name).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `zima` subcommand and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _load(args.command).run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zima ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
