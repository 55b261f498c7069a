"""``zima onboard``: the robot computer's service and its installer.

    zima onboard run --config /etc/zima/onboard.toml     # what the systemd unit starts
    zima onboard check --config FILE                     # validate a config, print it
    zima onboard install [--root DIR] [--dry-run]        # unit, udev rule, user, config

``run`` stops cleanly on SIGTERM (systemd) and SIGINT (Ctrl-C): tracks to zero, the
episode being recorded closed as aborted, "offline" on MQTT. Exit status 0 after a clean
stop, 1 when start-up failed or a part the robot cannot run without failed for good (the
message names the part; systemd restarts the service), 78 (EX_CONFIG) for a bad config:
the unit's RestartPreventExitStatus, so systemd does not retry a config that cannot work.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]

DEFAULT_CONFIG = Path("/etc/zima/onboard.toml")
EX_CONFIG = 78  # sysexits.h: configuration error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="onboard_command", metavar="ACTION", required=True)
    run_parser = sub.add_parser("run", help="run the onboard runtime (the systemd service)")
    run_parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                            help=f"TOML configuration (default {DEFAULT_CONFIG})")
    run_parser.add_argument("--log-level", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check", help="validate a configuration file and print it")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    from zima.onboard import install

    install.add_arguments(sub.add_parser(
        "install", help="install the systemd unit, the udev rule, the user and the config"))


def run(args: argparse.Namespace) -> int:
    if args.onboard_command == "install":
        from zima.onboard import install

        return install.run(args)
    from zima.onboard.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"zima onboard: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.onboard_command == "check":
        print(config)
        return 0
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from zima import __version__
    from zima.onboard.runtime import PartFailedError, Runtime, RuntimeStartError

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Runtime(config, software=f"zima {__version__}").run(stop)

    try:
        asyncio.run(main())
    except RuntimeStartError as exc:
        print(f"zima onboard: cannot start: {exc}", file=sys.stderr)
        return 1
    except PartFailedError as exc:
        print(f"zima onboard: stopped: a part failed for good: {exc}", file=sys.stderr)
        return 1
    return 0
