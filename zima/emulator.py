"""The emulated Zima board: the real firmware ELF on simavr, with tracks, encoders and battery.

``firmware/emulator/`` builds ``zima-emu`` (C, libsimavr). It runs the ATmega2560 firmware
paced to the wall clock, shows UART0 as a pseudo-terminal that pyserial opens like the
Mega's USB port, and speaks JSON lines on stdin/stdout. This module starts it and gives
tests and tools a small synchronous handle; asyncio code can call the blocking methods
through ``asyncio.to_thread``::

    with EmulatedBoard(EmulatorConfig(firmware=Path("build/avr/zima.elf"))) as board:
        port = serial.Serial(board.port, 115200)      # the MCU's UART0
        board.set_battery(11_000)                     # pack voltage, mV
        state = board.state()                         # wheel speeds, encoders, time...

External wheels (hardware in the loop with the MuJoCo sim): the sim moves its tracks at
the emulator's motor-model speeds (from the firmware's drive) and feeds the wheel positions
back as encoder counts;
the emulator turns them into quadrature edges on the firmware's encoder pins::

    board.external_wheels(True)                       # the built-in tracks stop moving
    state = board.wait_state(newer_than_us=0)         # the next periodic state line
    speeds = (state.motor_left_mm_s, state.motor_right_mm_s)   # the motor model's, signed
    ...                                               # step MuJoCo's tracks at them
    board.set_wheels(left_ticks, right_ticks)         # absolute counts, no answer awaited

Where the two binaries are found (:func:`find_binary`, :func:`find_firmware`; the first
that exists, in this order; ``make emulator avr-firmware`` builds both)::

    zima-emu        $ZIMA_EMULATOR, <checkout>/build/emulator/zima-emu, zima-emu on $PATH,
                    <prefix>/lib/zima/zima-emu
    firmware ELF    $ZIMA_FIRMWARE, <checkout>/build/avr/zima.elf, <prefix>/share/zima/zima.elf

``<checkout>`` is the source tree this module runs from (the tree itself, or an editable
install); a normal install has none, so there set the variables, or install the two files
(``install -D build/emulator/zima-emu /usr/local/lib/zima/zima-emu``, likewise the ELF to
``/usr/local/share/zima/zima.elf``); ``<prefix>`` is Python's ``sys.prefix`` (a venv),
then ``/usr/local`` and ``/usr``.

Exceptions (all ``EmulatorError``)::

    EmulatorError
     +-- EmulatorNotBuiltError   the zima-emu binary or the firmware ELF is missing
     +-- EmulatorExitedError     the emulator process ended (stderr tail in the message)
     +-- EmulatorTimeoutError    no answer / no ready line / condition not met in time
     +-- EmulatorCommandError    the emulator refused a command
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Self

from zima.processes import terminate

# The source tree this module runs from, if it does (in a normal install: site-packages).
CHECKOUT = Path(__file__).resolve().parent.parent
BINARY_ENV, FIRMWARE_ENV = "ZIMA_EMULATOR", "ZIMA_FIRMWARE"
PREFIXES = (Path(sys.prefix), Path("/usr/local"), Path("/usr"))  # where installed copies lie

JsonValue = str | int | float | bool | None
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the firmware's encoder counts
Side = Literal["left", "right", "both"]


def _is_checkout(root: Path) -> bool:
    return (root / "firmware" / "emulator" / "emulator.mk").is_file()


def _first(built: list[Path], on_path: list[Path], installed: list[Path]) -> Path:
    """The first that exists; else where to build it (a checkout) or to install it."""
    found = (path for path in (*built, *on_path, *installed) if path.is_file())
    return next(found, (built or installed or [Path("zima")])[0])


def find_binary(environ: Mapping[str, str] | None = None, checkout: Path = CHECKOUT,
                prefixes: tuple[Path, ...] = PREFIXES) -> Path:
    """zima-emu (module docstring); where none exists, the path to build or set (so that
    the error names it)."""
    env = os.environ if environ is None else environ
    if env.get(BINARY_ENV):
        return Path(env[BINARY_ENV])
    on_path = shutil.which("zima-emu", path=env.get("PATH", ""))
    installed = [prefix / "lib" / "zima" / "zima-emu" for prefix in prefixes]
    return _first([checkout / "build" / "emulator" / "zima-emu"] if _is_checkout(checkout)
                  else [], [Path(on_path)] if on_path else [], installed)


def find_firmware(environ: Mapping[str, str] | None = None, checkout: Path = CHECKOUT,
                  prefixes: tuple[Path, ...] = PREFIXES) -> Path:
    """The firmware ELF (module docstring); where none exists, the path to build or set."""
    env = os.environ if environ is None else environ
    if env.get(FIRMWARE_ENV):
        return Path(env[FIRMWARE_ENV])
    installed = [prefix / "share" / "zima" / "zima.elf" for prefix in prefixes]
    return _first([checkout / "build" / "avr" / "zima.elf"] if _is_checkout(checkout) else [],
                  [], installed)


def default_port(checkout: Path = CHECKOUT) -> Path:
    """`zima emulator`'s UART link: in the checkout's build folder, else in ~/.cache/zima."""
    if _is_checkout(checkout):
        return checkout / "build" / "emulator" / "ttyZIMA"
    return Path.home() / ".cache" / "zima" / "ttyZIMA"


def _missing(path: Path, how: str, env: str) -> str:
    return (f"{path} does not exist; build it with `{how}` in the source tree, or set {env} "
            "to where it is")


class EmulatorError(Exception):
    """Base of every error of the emulated board."""


class EmulatorNotBuiltError(EmulatorError):
    """The emulator binary or the firmware ELF does not exist."""


class EmulatorExitedError(EmulatorError):
    """The emulator process ended."""


class EmulatorTimeoutError(EmulatorError, TimeoutError):
    """Something did not happen in time."""


class EmulatorCommandError(EmulatorError):
    """The emulator answered a command with an error."""


@dataclass(frozen=True)
class EmulatorConfig:
    """How to start one emulated board; every field maps to one zima-emu option."""

    firmware: Path = field(default_factory=find_firmware)  # the AVR ELF to run
    binary: Path = field(default_factory=find_binary)  # zima-emu
    port: Path | None = None  # where to symlink the UART pty; None: a private temp dir
    speed: float = 1.0  # emulated seconds per wall second; 0 runs unpaced
    state_hz: float = 10.0  # periodic state lines (emulated time); 0: only on request
    tau_ms: float = 100.0  # track speed time constant
    max_speed_mm_s: float = 1000.0  # track speed at full duty, no load
    ticks_per_m: float = 4000.0  # encoder counts per metre (PROTOCOL.md ticks_per_m)
    divider: float = 4.0  # battery divider, pack / ADC pin (PROTOCOL.md batt_divider)
    battery_mv: float = 12000.0  # open-circuit pack voltage at start
    # The pack (firmware/emulator/model.h): open-circuit voltage falls linearly to
    # battery_empty_mv over capacity_mah drawn; the terminal voltage sags by I * R.
    battery_empty_mv: float = 9000.0
    capacity_mah: float = 2200.0
    internal_mohm: float = 100.0
    motor_ma: float = 1500.0  # one motor's draw at full duty
    discharge: bool = True  # False: the open-circuit voltage stays where it is set
    reset_on_open: bool = False  # reset the MCU when a program opens the port (DTR)
    wheels_min_edge_us: float = 50.0  # external wheels: closest edges of one encoder
    wheels_max_spread_ms: float = 100.0  # external wheels: longest walk to one command's counts
    extra_args: tuple[str, ...] = ()  # any other zima-emu option, passed as is
    ready_timeout_s: float = 10.0  # how long to wait for the "ready" line

    def argv(self, port: Path) -> list[str]:
        """The zima-emu command line for this configuration."""
        args = [str(self.binary), "--pty", str(port)]
        args += ["--unpaced"] if self.speed <= 0 else ["--speed", repr(self.speed)]
        args += ["--state-hz", repr(self.state_hz), "--tau-ms", repr(self.tau_ms)]
        args += ["--max-speed-mm-s", repr(self.max_speed_mm_s)]
        args += ["--ticks-per-m", repr(self.ticks_per_m), "--divider", repr(self.divider)]
        args += ["--battery-mv", repr(self.battery_mv)]
        args += ["--battery-empty-mv", repr(self.battery_empty_mv)]
        args += ["--capacity-mah", repr(self.capacity_mah)]
        args += ["--internal-mohm", repr(self.internal_mohm), "--motor-ma", repr(self.motor_ma)]
        if not self.discharge:
            args.append("--no-discharge")
        args += ["--wheels-min-edge-us", repr(self.wheels_min_edge_us)]
        args += ["--wheels-max-spread-ms", repr(self.wheels_max_spread_ms)]
        if self.reset_on_open:
            args.append("--reset-on-open")
        return [*args, *self.extra_args, str(self.firmware)]


def _num(raw: Mapping[str, object], key: str) -> float:
    value = raw[key]
    if not isinstance(value, int | float):
        raise EmulatorError(f"state field {key} is not a number: {value!r}")
    return float(value)


def _int(raw: Mapping[str, object], key: str) -> int:
    return int(_num(raw, key))


@dataclass(frozen=True)
class BoardState:
    """One state line of the emulator (the physical side of the board, not the MCU's view)."""

    time_us: int  # emulated time since start, across MCU resets
    cycles: int  # emulated CPU cycles at 16 MHz
    wall_s: float  # emulator's wall clock since start
    duty_left: float  # PWM duty the left pin puts out, 0..1
    duty_right: float
    dir_left: int  # DIR pin level, 1 = forward
    dir_right: int
    duty_signed_left: float  # the motor drive, -1..1: duty with the DIR pin's sign (+ forward)
    duty_signed_right: float
    pwm_left_hz: float
    pwm_right_hz: float
    speed_left_mm_s: float  # what moves the encoders, signed (external: the walk's rate)
    speed_right_mm_s: float
    motor_left_mm_s: float  # the motor model's track speed under the drive, signed (with
    motor_right_mm_s: float  # external wheels: the speed the other program's tracks take)
    enc_left_ticks: int  # encoder counts the emulator has put on the pins
    enc_right_ticks: int
    stall_left: bool
    stall_right: bool
    wheels_external: bool  # encoder counts come from set_wheels, not the built-in tracks
    wheels_lag_left_ticks: int  # external: counts still to be walked to the last target
    wheels_lag_right_ticks: int
    battery_mv: float  # pack terminal voltage (under load)
    adc_pin_mv: float  # what the ADC pin sees: battery_mv / divider
    current_ma: float
    servo_us: tuple[float, ...]  # last pulse width on each servo pin
    led: bool
    resets_watchdog: int
    resets_external: int
    raw: Mapping[str, object] = field(repr=False)  # every field of the line

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> BoardState:
        servo = raw.get("servo_us", [])
        if not isinstance(servo, list):
            raise EmulatorError(f"servo_us is not a list: {servo!r}")
        return cls(
            time_us=_int(raw, "time_us"),
            cycles=_int(raw, "cycles"),
            wall_s=_num(raw, "wall_s"),
            duty_left=_num(raw, "duty_left"),
            duty_right=_num(raw, "duty_right"),
            dir_left=_int(raw, "dir_left"),
            dir_right=_int(raw, "dir_right"),
            duty_signed_left=_num(raw, "duty_signed_left"),
            duty_signed_right=_num(raw, "duty_signed_right"),
            pwm_left_hz=_num(raw, "pwm_left_hz"),
            pwm_right_hz=_num(raw, "pwm_right_hz"),
            speed_left_mm_s=_num(raw, "speed_left_mm_s"),
            speed_right_mm_s=_num(raw, "speed_right_mm_s"),
            motor_left_mm_s=_num(raw, "motor_left_mm_s"),
            motor_right_mm_s=_num(raw, "motor_right_mm_s"),
            enc_left_ticks=_int(raw, "enc_left_ticks"),
            enc_right_ticks=_int(raw, "enc_right_ticks"),
            stall_left=bool(raw["stall_left"]),
            stall_right=bool(raw["stall_right"]),
            wheels_external=bool(raw["wheels_external"]),
            wheels_lag_left_ticks=_int(raw, "wheels_lag_left_ticks"),
            wheels_lag_right_ticks=_int(raw, "wheels_lag_right_ticks"),
            battery_mv=_num(raw, "battery_mv"),
            adc_pin_mv=_num(raw, "adc_pin_mv"),
            current_ma=_num(raw, "current_ma"),
            servo_us=tuple(float(v) for v in servo),
            led=bool(raw["led"]),
            resets_watchdog=_int(raw, "resets_watchdog"),
            resets_external=_int(raw, "resets_external"),
            raw=dict(raw),
        )


@dataclass(frozen=True)
class ProbeRegion:
    """Cycle statistics of one probe region (firmware/src/probe.h)."""

    count: int  # regions closed under this id
    total: int  # their cycles, summed
    min: int
    max: int
    last_begin: int  # emulated cycle of the latest opening marker (0: none)
    last_end: int
    periods: int  # begin-to-begin intervals measured
    min_period: int
    max_period: int
    mean_period: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True)
class Probes:
    """The answer to ``probes``: regions of GPIOR0 (``main``) and GPIOR1 (``isr``) by id."""

    cycles: int  # emulated cycles now
    main: Mapping[int, ProbeRegion]
    isr: Mapping[int, ProbeRegion]

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> Probes:
        def regions(key: str) -> dict[int, ProbeRegion]:
            table = raw.get(key, {})
            if not isinstance(table, dict):
                raise EmulatorError(f"probes.{key} is not an object: {table!r}")
            return {int(k): ProbeRegion(**v) for k, v in table.items()}

        return cls(cycles=_int(raw, "cycles"), main=regions("main"), isr=regions("isr"))


class EmulatedBoard:
    """A running zima-emu process; a context manager that always stops it on exit."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._answers: dict[int, dict[str, object]] = {}
        self._events: list[dict[str, object]] = []
        self._latest: BoardState | None = None
        self._exited = False
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()  # set_wheels may run on another thread
        self.ready: dict[str, object] = {}
        self.port = ""

    @property
    def pid(self) -> int | None:
        """The emulator process's id while it runs (to renice it, to watch it)."""
        return None if self._proc is None else self._proc.pid

    # ---- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the emulator and wait for its ready line (the pty exists then)."""
        cfg = self.config
        for path, how, env in ((cfg.binary, "make emulator", BINARY_ENV),
                               (cfg.firmware, "make avr-firmware", FIRMWARE_ENV)):
            if not path.exists():
                raise EmulatorNotBuiltError(_missing(path, how, env))
        self._tmp = tempfile.TemporaryDirectory(prefix="zima-emu-")
        port = cfg.port or Path(self._tmp.name) / "ttyZIMA"
        self._stderr = (Path(self._tmp.name) / "stderr.log").open("w+b")
        self._proc = subprocess.Popen(  # noqa: S603 - argv built from our own config
            cfg.argv(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read_stdout, name="zima-emu", daemon=True)
        self._reader.start()
        self.ready = self.wait_event("ready", timeout_s=cfg.ready_timeout_s)
        self.port = str(self.ready["pty"])

    def close(self) -> None:
        """Ask the emulator to quit; terminate, then kill it if it does not."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                self._send({"cmd": "quit"})
                proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                terminate(proc, timeout_s=3.0)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=3)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._proc = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands ------------------------------------------------------------------------
    def command(self, cmd: str, timeout_s: float = 5.0, **fields: JsonValue) -> dict[str, object]:
        """Send one command and return its answer (an "ok" or "state" line)."""
        ident = next(self._ids)
        self._send({"cmd": cmd, "id": ident, **fields})
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while ident not in self._answers:
                self._check_alive()
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise EmulatorTimeoutError(f"no answer to {cmd!r} in {timeout_s} s")
            answer = self._answers.pop(ident)
        if answer.get("event") == "error":
            raise EmulatorCommandError(f"{cmd}: {answer.get('message')}")
        return answer

    def state(self) -> BoardState:
        """The board's state now."""
        return BoardState.from_json(self.command("state"))

    def set_battery(self, mv: float) -> None:
        """Set the pack's open-circuit voltage (discharge starts again from there)."""
        self.command("battery", mv=mv)

    def stall(self, side: Side, on: bool = True) -> None:
        """Block a track (speed held at 0 whatever the duty), or release it."""
        self.command("stall", side=side, on=on)

    def set_load(self, side: Side, value: float) -> None:
        """Load a track: 0 free running, 1 the motor cannot move it."""
        self.command("load", side=side, value=value)

    def reset(self) -> None:
        """Pulse the MCU's reset pin (what DTR does on a real Mega)."""
        self.command("reset")

    def external_wheels(self, on: bool) -> None:
        """Switch external wheels on (the built-in track model stops moving the encoders;
        the counts stay where they are until ``set_wheels``) or off (the model takes over
        from the present counts, at rest)."""
        if not isinstance(on, bool):
            raise TypeError(f"external_wheels wants a bool, got {on!r}")
        self.command("wheels", external=on)

    def set_wheels(self, left_ticks: int, right_ticks: int) -> None:
        """Absolute encoder counts of the two wheels (as ``TrackDrive.encoders()`` gives
        them); switches external wheels on. The emulator walks the encoder pins from the
        present counts to these, with edges spread evenly over the interval since the
        previous call (at most ``wheels_max_spread_ms``; longer when the jump needs edges
        closer than ``wheels_min_edge_us``: see ``BoardState.wheels_lag_*_ticks``).
        Fire and forget: nothing is awaited, so a 100 Hz loop can call it freely; a
        refusal would arrive as an "error" event."""
        for name, value in (("left_ticks", left_ticks), ("right_ticks", right_ticks)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"set_wheels: {name} must be an int, got {value!r}")
            if not INT32_MIN <= value <= INT32_MAX:
                raise ValueError(f"set_wheels: {name} {value} is outside the firmware's int32")
        self._send({"cmd": "wheels", "left_ticks": left_ticks, "right_ticks": right_ticks})

    def probes(self) -> Probes:
        """The firmware's cycle probes so far (GPIOR0/GPIOR1 markers, README.md)."""
        return Probes.from_json(self.command("probes"))

    def clear_probes(self) -> None:
        """Start the probe statistics over."""
        self.command("probes_clear")

    # ---- observation ---------------------------------------------------------------------
    @property
    def latest_state(self) -> BoardState | None:
        """The last periodic state line (state_hz), if any."""
        with self._cond:
            return self._latest

    def wait_state(self, newer_than_us: int = -1, timeout_s: float = 5.0) -> BoardState:
        """The first periodic state line (``state_hz``) of emulated time after
        ``newer_than_us``: the tick of a loop that follows the emulator's clock."""
        if self.config.state_hz <= 0:
            raise EmulatorError("wait_state needs periodic state lines: state_hz is 0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                latest = self._latest
                if latest is not None and latest.time_us > newer_than_us:
                    return latest
                self._check_alive()
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise EmulatorTimeoutError(f"no state line in {timeout_s} s")

    def events(self, kind: str) -> list[dict[str, object]]:
        """Every event line of one kind received so far ("reset", "port", "motor", ...)."""
        with self._cond:
            return [e for e in self._events if e.get("event") == kind]

    def wait_event(self, kind: str, timeout_s: float = 5.0, after: int = 0) -> dict[str, object]:
        """Wait for the event number ``after`` (0 = the first) of a kind."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [e for e in self._events if e.get("event") == kind]
                if len(found) > after:
                    return found[after]
                self._check_alive()
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise EmulatorTimeoutError(f"no {kind!r} event in {timeout_s} s")

    def wait_until(
        self,
        predicate: Callable[[BoardState], bool],
        timeout_s: float = 5.0,
        poll_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> BoardState:
        """Poll the state until ``predicate`` holds; return that state."""
        deadline = clock() + timeout_s
        while True:
            state = self.state()
            if predicate(state):
                return state
            if clock() > deadline:
                raise EmulatorTimeoutError(f"condition not met in {timeout_s} s: {state}")
            time.sleep(poll_s)

    # ---- plumbing ------------------------------------------------------------------------
    def _send(self, message: Mapping[str, JsonValue]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise EmulatorExitedError("the emulator is not running")
        try:
            with self._send_lock:
                proc.stdin.write(json.dumps(message).encode() + b"\n")
                proc.stdin.flush()
        except OSError as exc:
            raise EmulatorExitedError(f"the emulator is gone: {self._stderr_tail()}") from exc

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours; the emulator only writes JSON lines to stdout
            if not isinstance(message, dict):
                continue
            with self._cond:
                ident = message.get("id")
                if isinstance(ident, int):
                    self._answers[ident] = message
                elif message.get("event") == "state":
                    self._latest = BoardState.from_json(message)
                else:
                    self._events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._exited = True
            self._cond.notify_all()

    def _check_alive(self) -> None:
        # called with self._cond held
        if self._exited:
            raise EmulatorExitedError(f"the emulator exited: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode(errors="replace").strip()


# ---- `zima emulator` ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zima emulator` (the rest go to zima-emu after `--`)."""
    parser.add_argument("--firmware", type=Path, default=find_firmware(),
                        help=f"AVR ELF to run (default: ${FIRMWARE_ENV}, or as found)")
    parser.add_argument("--binary", type=Path, default=find_binary(),
                        help=f"zima-emu binary (default: ${BINARY_ENV}, or as found)")
    parser.add_argument("--port", type=Path, default=default_port(),
                        help="symlink to the UART pty")
    parser.add_argument("--speed", type=float, default=1.0, help="emulated s per wall s")
    parser.add_argument("--unpaced", action="store_true", help="run as fast as possible")
    parser.add_argument("--state-hz", type=float, default=10.0, help="state lines per second")
    parser.add_argument(
        "--reset-on-open", action="store_true", help="reset the MCU when the port is opened"
    )
    parser.add_argument("emu_args", nargs=argparse.REMAINDER, help="more zima-emu options")


def run(args: argparse.Namespace) -> int:
    """Run the emulated board in the foreground: JSON commands in, JSON state out."""
    extra = [a for a in args.emu_args if a != "--"]
    config = EmulatorConfig(
        firmware=args.firmware,
        binary=args.binary,
        port=args.port,
        speed=0.0 if args.unpaced else args.speed,
        state_hz=args.state_hz,
        reset_on_open=args.reset_on_open,
        extra_args=tuple(extra),
    )
    for path, how, env in ((config.binary, "make emulator", BINARY_ENV),
                           (config.firmware, "make avr-firmware", FIRMWARE_ENV)):
        if not path.exists():
            sys.stderr.write(f"zima emulator: {_missing(path, how, env)}\n")
            return 2
    port = config.port or default_port()
    port.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f"zima emulator: UART0 at {port}; JSON commands on stdin\n")
    argv = config.argv(port)
    try:
        return subprocess.call(argv)  # noqa: S603 - argv built from our own options
    except KeyboardInterrupt:
        return 130
    finally:
        # the emulator removes its link on a clean exit; a killed one leaves it dangling
        if config.port and config.port.is_symlink() and not config.port.exists():
            config.port.unlink()
