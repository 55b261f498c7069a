"""`zima flash`: build and upload the firmware with PlatformIO, then prove it is running.

Steps, each printed:

1. find the board: ``--port``, else the one serial port whose USB vendor:product id is an
   Arduino Mega 2560's (``BOARD_IDS``; pyserial's ``list_ports``). None or several found
   is an error that lists what was seen;
2. build and upload: ``pio run -d firmware -e megaatmega2560 -t upload --upload-port PORT``
   with ``PLATFORMIO_BUILD_FLAGS=-DZIMA_BUILD_ID=0x<id>``, the build id firmware/avr.mk
   passes too (the first 8 hex digits of git HEAD; 0 outside git). A plain ``pio run``
   does not pass it and so reports build 0;
3. verify: open the port with the onboard link (``zima.onboard.McuLink``: HELLO, INFO,
   protocol check) and compare INFO's build id with the one just built.

``--verify-only`` (alias ``--no-build``) does step 3 alone, against ``--expect-build``
(default: git HEAD's id)::

    zima flash                                  find, build, upload, verify
    zima flash --port /dev/ttyACM0 --pio ~/.platformio/penv/bin/pio
    zima flash --verify-only --port /dev/zima-mcu

Everything that goes wrong is a ``FlashError`` whose message says what to do; exit status
0 verified, 1 otherwise. Note the build id names HEAD: uncommitted changes are built but
not told apart (a warning says so).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import LinkError, NoAnswerError, PortError
from zima.protocol import Info, describe_info

__all__ = [
    "BOARD_IDS",
    "FlashError",
    "SerialPortInfo",
    "build_and_upload",
    "find_board_port",
    "find_pio",
    "git_build_id",
    "verify_build",
]

ROOT = Path(__file__).resolve().parent.parent
PIO_ENV = "megaatmega2560"  # firmware/platformio.ini
# USB (vendor, product) ids of the boards we flash: the Arduino Mega 2560 (R3 and the
# original) and the clones with a CH340 USB-serial chip.
BOARD_IDS: dict[tuple[int, int], str] = {
    (0x2341, 0x0042): "Arduino Mega 2560 R3",
    (0x2341, 0x0010): "Arduino Mega 2560",
    (0x1A86, 0x7523): "CH340 USB-serial (Mega 2560 clone)",
}
# A real Mega resets when the port opens (DTR) and its bootloader waits ~2 s first.
VERIFY_TIMEOUT_S = 8.0


class FlashError(Exception):
    """Flashing or verifying failed; the message says why and what to do."""


class SerialPortInfo(Protocol):
    """What we read of pyserial's ``ListPortInfo`` (tests pass their own)."""

    device: str
    vid: int | None
    pid: int | None
    description: str


def _describe_port(port: SerialPortInfo) -> str:
    has_ids = port.vid is not None and port.pid is not None
    ids = f"{port.vid:04x}:{port.pid:04x}" if has_ids else "no USB id"
    return f"{port.device} ({ids}, {port.description})"


def find_board_port(ports: Iterable[SerialPortInfo]) -> str:
    """The device of the one port that is a Mega 2560; ``FlashError`` for none or several."""
    seen = list(ports)
    boards = [p for p in seen if (p.vid, p.pid) in BOARD_IDS]
    if len(boards) == 1:
        return boards[0].device
    if boards:
        listing = "\n  ".join(
            f"{_describe_port(p)}: {BOARD_IDS[(p.vid, p.pid)]}"  # type: ignore[index]
            for p in boards
        )
        raise FlashError(f"several boards found; pick one with --port:\n  {listing}")
    others = "\n  ".join(_describe_port(p) for p in seen) or "(no serial ports at all)"
    wanted = ", ".join(f"{v:04x}:{p:04x}" for v, p in BOARD_IDS)
    raise FlashError(
        f"no Arduino Mega 2560 found (USB ids {wanted}); is it plugged in? "
        f"Serial ports seen:\n  {others}\nor name the port with --port"
    )


def list_serial_ports() -> list[SerialPortInfo]:
    """The machine's serial ports (pyserial)."""
    from serial.tools import list_ports  # noqa: PLC0415 - only `zima flash` needs it

    return list(list_ports.comports())


def find_pio(pio: str | None) -> str:
    """The PlatformIO executable: ``--pio``, else ``pio`` / ``platformio`` on PATH."""
    candidates = [pio] if pio else ["pio", "platformio"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is not None:
            return found
    where = f"--pio {pio} is not an executable" if pio else "`pio` is not on PATH"
    raise FlashError(
        f"PlatformIO not found: {where}. Install it with `pipx install platformio` "
        "(or `pip install platformio`; see https://docs.platformio.org/en/latest/core/"
        "installation/), then pass its path with --pio if it is not on PATH"
    )


def git_build_id(root: Path = ROOT) -> int:
    """The build id firmware/avr.mk stamps: the first 8 hex digits of HEAD, 0 outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],  # noqa: S607 - git from PATH
            cwd=root, capture_output=True, text=True, check=False,
        )
    except OSError:
        return 0
    return int(done.stdout[:8], 16) if done.returncode == 0 and done.stdout else 0


def tree_is_dirty(root: Path = ROOT) -> bool:
    """True when git sees uncommitted changes (the build id cannot tell those apart)."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=root, capture_output=True, text=True, check=False,
        )
    except OSError:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def build_and_upload(
    pio: str,
    port: str,
    build_id: int,
    root: Path = ROOT,
    environ: Mapping[str, str] | None = None,
) -> None:
    """``pio run ... -t upload`` with the build id stamped in; ``FlashError`` if it fails."""
    env = dict(os.environ if environ is None else environ)
    # PlatformIO appends this to platformio.ini's build_flags (its documented variable).
    extra = env.get("PLATFORMIO_BUILD_FLAGS", "")
    env["PLATFORMIO_BUILD_FLAGS"] = f"{extra} -DZIMA_BUILD_ID=0x{build_id:08x}".strip()
    command = [pio, "run", "-d", str(root / "firmware"), "-e", PIO_ENV, "-t", "upload",
               "--upload-port", port]
    try:
        done = subprocess.run(command, env=env, check=False)  # noqa: S603 - our own argv
    except OSError as exc:
        raise FlashError(f"cannot run {pio}: {exc.strerror}") from None
    if done.returncode != 0:
        raise FlashError(
            f"`{' '.join(command)}` failed (exit {done.returncode}); see its output above "
            "(a first run downloads PlatformIO's AVR platform: it needs the network)"
        )


@dataclass(frozen=True, slots=True)
class Verified:
    info: Info
    port: str


async def _read_info(port: Path, timeout_s: float) -> Info:
    config = LinkConfig(port=port, handshake_timeout_s=timeout_s)
    try:
        async with McuLink(config) as link:
            info = link.info
    except NoAnswerError:
        raise FlashError(
            f"no answer from the board on {port} within {timeout_s:g} s: is this the "
            "Mega running Zima firmware (did the upload work)? Another program holding the "
            "port (the robot's runtime, a serial monitor) also prevents it"
        ) from None
    except PortError as exc:
        raise FlashError(f"cannot use {port}: {exc}") from None
    except LinkError as exc:  # IncompatibleMcuError: another protocol version or schema
        raise FlashError(f"the board on {port} runs other firmware: {exc}") from None
    assert info is not None  # McuLink's entry completed the handshake
    return info


def verify_build(port: Path, expected_build_id: int, timeout_s: float = VERIFY_TIMEOUT_S) -> Info:
    """Handshake on ``port``; the INFO if its build id is ``expected_build_id``, else
    ``FlashError`` naming both."""
    info = asyncio.run(_read_info(port, timeout_s))
    if info.build_id != expected_build_id:
        raise FlashError(
            f"the board on {port} runs build {info.build_id:08x}, expected "
            f"{expected_build_id:08x} [{describe_info(info)}]: flash again (zima flash)"
        )
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", help="the board's serial port (default: found by USB id)")
    parser.add_argument("--verify-only", "--no-build", dest="verify_only", action="store_true",
                        help="only check the firmware running on the board (no build/upload)")
    parser.add_argument("--expect-build", metavar="HEX",
                        help="with --verify-only: the build id expected (default: git HEAD's)")
    parser.add_argument("--pio", metavar="PATH", help="PlatformIO executable (default: pio)")
    parser.add_argument("--timeout", type=float, default=VERIFY_TIMEOUT_S, metavar="S",
                        help="wait this long for the board's answer "
                             f"(default: {VERIFY_TIMEOUT_S:g})")


def _expected(text: str | None) -> int:
    if text is None:
        return git_build_id()
    try:
        value = int(text.removeprefix("0x"), 16)
    except ValueError:
        raise FlashError(f"--expect-build {text!r} is not a hex build id") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise FlashError(f"--expect-build {text!r} does not fit 32 bits")
    return value


def flash(
    args: argparse.Namespace,
    say: Callable[[str], None],
    ports: Callable[[], list[SerialPortInfo]] = list_serial_ports,
) -> Info:
    """The steps of the module docstring; ``FlashError`` on any failure."""
    if not (args.timeout > 0):
        raise FlashError(f"--timeout {args.timeout} must be positive")
    expected = _expected(args.expect_build)
    pio = None if args.verify_only else find_pio(args.pio)  # before anything is touched
    port = args.port or find_board_port(ports())
    say(f"board: {port}")
    if pio is not None:
        if tree_is_dirty():
            say("warning: uncommitted changes; the build id names HEAD only")
        say(f"building and uploading build {expected:08x} with {pio}")
        build_and_upload(pio, port, expected)
    say(f"verifying: expecting build {expected:08x}")
    info = verify_build(Path(port), expected, args.timeout)
    say(f"OK: {describe_info(info)}")
    return info


def run(args: argparse.Namespace) -> int:
    try:
        flash(args, lambda line: print(line, flush=True))  # noqa: T201 - the tool's output
    except FlashError as exc:
        sys.stderr.write(f"zima flash: {exc}\n")
        return 1
    return 0
