"""What telemetry over MQTT is configured with, the commands it accepts, and what it raises.

The exception tree of :mod:`zima.onboard.telemetry` (aiomqtt's ``MqttError`` never leaks;
publishing never raises into the caller at all, whatever the broker does)::

    TelemetryError              anything the telemetry adapter raises
     +-- BrokerUnreachableError the broker cannot be reached or dropped the connection
     |                          (kept in ``Telemetry.broker``; the adapter keeps retrying)
     +-- AuthRefusedError       the broker refused the username/password or the client id;
     |                          raised by ``Telemetry.wait_connected``
     +-- CommandError           also a ValueError: a command that is not valid JSON or is out
                                of range; answered on ``.../cmd/result``, never raised
                                into the caller

``parse_command`` is a pure codec: topic name and payload bytes in, a frozen command out,
or a ``CommandError`` saying why, whatever the bytes (at most ``MAX_COMMAND_BYTES`` of
UTF-8 JSON nested at most ``MAX_COMMAND_DEPTH`` deep, checked before parsing:
:mod:`zima.bounded`). A ``request_id`` is at most 64 printable characters; a longer or
unprintable one refuses the command and is not echoed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from zima.bounded import MAX_ID_CHARS, InputError, parse_json_bounded, printable_id

__all__ = [
    "COMMAND_NAMES",
    "AuthRefusedError",
    "BrokerUnreachableError",
    "Command",
    "CommandError",
    "EstopCommand",
    "HeartbeatCommand",
    "Mode",
    "ModeCommand",
    "MqttConfig",
    "RecordCommand",
    "ReloadCommand",
    "TelemetryError",
    "TeleopCommand",
    "command_name",
    "parse_command",
    "request_id_of",
]


class TelemetryError(Exception):
    """Base of everything the telemetry adapter raises."""


class BrokerUnreachableError(TelemetryError):
    """The broker could not be reached, or the connection to it was lost."""


class AuthRefusedError(TelemetryError):
    """The broker refused our credentials (a configuration error, not an outage)."""


class CommandError(TelemetryError, ValueError):
    """A command was malformed or out of range."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """One robot's connection to the fleet broker. Times in seconds, rates in Hz."""

    robot_id: str = "zima"  # topic prefix zima/<robot_id>/...; the sample ACL wants = username
    host: str = "localhost"  # Mosquitto runs on the robot computer (ARCHITECTURE decision 7)
    port: int = 1883  # MQTT's registered port
    username: str | None = None  # None: anonymous (the sample config refuses it)
    password: str | None = None  # read from a root-only file on the robot, never from git
    keepalive_s: int = 5  # the broker sends our last will ~1.5x this after we vanish
    connect_timeout_s: float = 2.0  # one connect attempt; the runtime keeps driving meanwhile
    reconnect_min_s: float = 0.1  # first pause before reconnecting
    reconnect_max_s: float = 5.0  # backoff doubles up to this
    queue_len: int = 256  # messages held while the broker is away; the oldest go first
    # A message not published within this long of being posted is dropped (after a broker
    # outage the newest state goes first and what is too old to matter never goes).
    max_backlog_age_s: float = 2.0
    command_queue_len: int = 32  # commands not yet taken by the caller; more are refused
    # Publishing rate of each stream; a stream missing here is not published.
    rates_hz: dict[str, float] = field(
        default_factory=lambda: {
            "battery": 1.0,  # slow: a pack drains over hours
            "odometry": 10.0,  # enough to draw the path on a map
            "mode": 2.0,  # also sent at once when it changes, by the caller's provider
            "link": 1.0,  # connected, frame rate, firmware
            "faults": 1.0,
            "loop": 2.0,  # control-loop rate and jitter
            "policy": 2.0,  # latency and model hash
            "cameras": 1.0,  # each camera's state, frame age, failures and last error
        }
    )
    max_linear_m_per_s: float = 1.0  # teleop commands above this are refused
    max_angular_rad_per_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.robot_id or any(c in self.robot_id for c in "/+#"):
            raise ValueError(f"MqttConfig.robot_id={self.robot_id!r} must be one topic level")
        times = {
            "connect_timeout_s": self.connect_timeout_s,
            "reconnect_min_s": self.reconnect_min_s,
            "reconnect_max_s": self.reconnect_max_s,
            "max_backlog_age_s": self.max_backlog_age_s,
            "max_linear_m_per_s": self.max_linear_m_per_s,
            "max_angular_rad_per_s": self.max_angular_rad_per_s,
            **{f"rates_hz[{k!r}]": v for k, v in self.rates_hz.items()},
        }
        for name, value in times.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MqttConfig.{name}={value} must be a positive number")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("MqttConfig.reconnect_max_s must not be below reconnect_min_s")
        if self.keepalive_s < 1 or self.queue_len < 1 or self.command_queue_len < 1:
            raise ValueError("MqttConfig.keepalive_s, queue_len, command_queue_len must be >= 1")

    def topic(self, suffix: str) -> str:
        """``zima/<robot_id>/<suffix>``."""
        return f"zima/{self.robot_id}/{suffix}"


class Mode(enum.Enum):
    """Driving modes an operator may ask for."""

    IDLE = "idle"
    TELEOP = "teleop"
    AUTONOMOUS = "autonomous"
    SUPERVISED = "supervised"  # the policy drives; a teleop command takes over


@dataclass(frozen=True, slots=True)
class ModeCommand:
    mode: Mode
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class TeleopCommand:
    linear_m_per_s: float
    angular_rad_per_s: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class EstopCommand:
    engaged: bool  # True stops the motors; False releases the stop
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatCommand:
    """An operator is present (``{}``): autonomous driving goes on while these arrive."""

    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReloadCommand:
    target: str  # "policy" or "config"
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordCommand:
    action: str  # "start", "stop" (with an outcome) or "discard"
    outcome: str | None = None  # "success" or "failure" with "stop"
    request_id: str | None = None


Command = (ModeCommand | TeleopCommand | EstopCommand | ReloadCommand | RecordCommand
           | HeartbeatCommand)

COMMAND_NAMES = ("mode", "teleop", "estop", "reload", "record", "heartbeat")
MAX_COMMAND_BYTES = 4096  # the longest valid command is under 200 bytes
MAX_COMMAND_DEPTH = 2  # a command is one flat JSON object
RELOAD_TARGETS = ("policy", "config")
RECORD_ACTIONS = ("start", "stop", "discard")
RECORD_OUTCOMES = ("success", "failure")


def _number(body: dict[str, object], key: str, limit: float) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{key} must be a number")
    if not -limit <= value <= limit:  # compared, not converted: a 400-digit int is no float
        raise CommandError(f"{key}={str(value)[:24]} is outside [-{limit}, {limit}]")
    return float(value)


def _record(body: dict[str, object], rid: str | None, _config: MqttConfig) -> RecordCommand:
    action, outcome = body["action"], body.get("outcome")
    if action not in RECORD_ACTIONS:
        raise CommandError(f"action must be one of {list(RECORD_ACTIONS)}")
    if outcome is not None and outcome not in RECORD_OUTCOMES:
        raise CommandError(f"outcome must be one of {list(RECORD_OUTCOMES)}")
    return RecordCommand(str(action), None if outcome is None else str(outcome), rid)


def _mode(body: dict[str, object], rid: str | None, _config: MqttConfig) -> ModeCommand:
    modes = [m.value for m in Mode]
    if body["mode"] not in modes:
        raise CommandError(f"mode must be one of {modes}")
    return ModeCommand(Mode(body["mode"]), rid)


def _teleop(body: dict[str, object], rid: str | None, config: MqttConfig) -> TeleopCommand:
    return TeleopCommand(_number(body, "linear_m_per_s", config.max_linear_m_per_s),
                         _number(body, "angular_rad_per_s", config.max_angular_rad_per_s),
                         rid)


def _estop(body: dict[str, object], rid: str | None, _config: MqttConfig) -> EstopCommand:
    if not isinstance(body["engaged"], bool):
        raise CommandError("engaged must be true or false")
    return EstopCommand(body["engaged"], rid)


def _reload(body: dict[str, object], rid: str | None, _config: MqttConfig) -> ReloadCommand:
    if body["target"] not in RELOAD_TARGETS:
        raise CommandError(f"target must be one of {list(RELOAD_TARGETS)}")
    return ReloadCommand(str(body["target"]), rid)


def _heartbeat(_body: dict[str, object], rid: str | None,
               _config: MqttConfig) -> HeartbeatCommand:
    return HeartbeatCommand(rid)


# Each command's builder: it checks the values of the keys parse_command let through.
_BUILDERS: dict[str, Callable[[dict[str, object], str | None, MqttConfig], Command]] = {
    "mode": _mode, "teleop": _teleop, "estop": _estop, "reload": _reload,
    "record": _record, "heartbeat": _heartbeat}


def _body(payload: bytes) -> object:
    return parse_json_bounded(payload, max_bytes=MAX_COMMAND_BYTES,
                              max_depth=MAX_COMMAND_DEPTH, what="command")


_NAMES: dict[type, str] = {ModeCommand: "mode", TeleopCommand: "teleop", EstopCommand: "estop",
                           ReloadCommand: "reload", RecordCommand: "record",
                           HeartbeatCommand: "heartbeat"}


def command_name(command: Command) -> str:
    """The topic name (``cmd/<name>``) of a command: its ``cmd/result`` says it."""
    return _NAMES[type(command)]


def request_id_of(payload: bytes) -> str | None:
    """The ``request_id`` of a payload, when there is one to echo (even in a bad command):
    a string of at most 64 printable characters, else None (never raises)."""
    try:
        body = _body(payload)
    except InputError:
        return None
    return printable_id(body.get("request_id")) if isinstance(body, dict) else None


def parse_command(name: str, payload: bytes, config: MqttConfig) -> Command:
    """The command ``name`` (``mode``, ``teleop``, ``estop``, ``reload``, ``record``,
    ``heartbeat``) in ``payload``.

    Strict: a JSON object with exactly the documented keys. ``CommandError`` otherwise,
    for any bytes.
    """
    try:
        body = _body(payload)
    except InputError as exc:
        raise CommandError(str(exc)) from None
    if not isinstance(body, dict):
        raise CommandError("a command is a JSON object")
    rid = body.pop("request_id", None)
    if rid is not None and printable_id(rid) is None:
        raise CommandError(f"request_id must be a string of 1..{MAX_ID_CHARS} printable "
                           "characters")
    expected = {
        "mode": {"mode"},
        "teleop": {"linear_m_per_s", "angular_rad_per_s"},
        "estop": {"engaged"},
        "reload": {"target"},
        "record": {"action", "outcome"} if body.get("action") == "stop" else {"action"},
        "heartbeat": set(),
    }.get(name)
    if expected is None:
        raise CommandError(f"unknown command {name[:MAX_ID_CHARS]!r}")
    if set(body) != expected:
        got = sorted(k[:MAX_ID_CHARS] for k in body)[:8]
        raise CommandError(f"{name} takes exactly {sorted(expected)}, got {got}")
    return _BUILDERS[name](body, rid, config)
