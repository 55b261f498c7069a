"""The operator's commands: typed records, their bounds, and the parser of their JSON form.

Every front end says what an operator wants with these records (MQTT's ``cmd/<name>``
topics, the web console, the host tools) and ``Runtime.handle`` carries them out::

    ModeCommand(DriveMode.AUTONOMOUS)     mode      one of REQUESTABLE_MODES
    TeleopCommand(0.3, 0.5)               teleop    m/s and rad/s, refused beyond the
                                                    TELEOP_LIMITS (every front end)
    EstopCommand(engaged=True)            estop     True stops; False releases into idle
    ReloadCommand("policy")               reload    one of RELOAD_TARGETS
    RecordCommand("stop", "success")      record    RECORD_ACTIONS; stop takes a judged
                                                    outcome (zima.episodes.JUDGED_OUTCOMES)
    HeartbeatCommand()                    heartbeat an operator is present
    LeaseCommand("take")                  lease     take, renew or give the teleop lease
                                                    (LEASE_ACTIONS): one client drives
    HandBackCommand()                     handback  end a supervised take-over
    ArmCommand((900, None, ...))          arm       6 joint targets in 0.1 deg (ARM_RANGE_DDEG),
                                                    None leaves a joint; Safety clamps them
                                                    to [safety] arm limits
    ArmToolCommand(ToolTarget(...), 0.02) arm       a tool pose (m, rad; ARM_TOOL_BOUNDS)
                                                    and/or the gripper's opening (m)
    ArmPoseCommand("ready")               arm       one of POSE_NAMES (zima.onboard.arm_poses)
    ArmJogCommand(vx_m_s=0.05, ...)       arm       tool velocities held until the next jog,
                                                    within ARM_JOG_LIMITS (Safety times out)

``cmd/arm`` takes one of four flat forms, told apart by their keys (:func:`arm_command`)::

    {"targets": [6 x 0.1 deg or null]}                                   joints
    {"x_m", "y_m", "z_m", "pitch_rad", "roll_rad"} and/or {"gripper_m"}  the tool
    {"pose": "stowed"|"ready"|"look_down"}                               a named pose
    {"vx_m_s", "vy_m_s", "vz_m_s", "vpitch_rad_s", "vroll_rad_s",        a jog (any of
     "vgripper_m_s"}                                                     them; others 0)

Bad input is a :class:`CommandError` (a ``ValueError``) saying why; it is answered, never
raised into the part that received it.

``parse_command`` is a codec: topic name and payload bytes in, a frozen command out,
or a ``CommandError`` saying why, whatever the bytes (at most ``MAX_COMMAND_BYTES`` of
UTF-8 JSON nested at most ``MAX_COMMAND_DEPTH`` deep, checked before parsing:
:mod:`zima.bounded`). A ``request_id`` is at most 64 printable characters; a longer or
unprintable one refuses the command and is not echoed.

**Signed commands** (``[mqtt] command_key_file``, off by default): the broker's ACL says
who may publish a command; a signature says the command came from someone holding the
robot's command key, even through a broker account that leaked. A signed command is the
command's JSON object with two more keys::

    {"engaged": false, "request_id": "r1", "ts": 1767225600.25, "sig": "3f1c...64 hex"}

    ts   the sender's wall clock, seconds since 1970 (a number); the robot refuses a
         command whose ts is more than command_window_s (30 s) from its own clock
         (keep both clocks on NTP), and any signature it has already accepted (a replay)
    sig  hex HMAC-SHA256, keyed with the key file's text (stripped, UTF-8), of
             b"zima-cmd-v1\n" + robot_id + b"\n" + command name + b"\n" + canonical
         where canonical is the object without "sig" (ts and request_id included) as
         Python's json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
         writes it: the robot id and topic are signed too, so a command cannot be replayed
         to another robot or as another command

With a key configured every command must be signed, but one: an e-stop that engages
(``{"engaged": true}``, with or without a request_id) is taken unsigned too, since
stopping must never depend on a key. ``CommandKey.sign`` makes the two keys (the host
tools' ``--command-key-file``); ``parse_command`` checks them with ``config.command_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from zima.bounded import MAX_ID_CHARS, InputError, parse_json_bounded, printable_id
from zima.episodes import JUDGED_OUTCOMES
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M, POSE_NAMES
from zima.onboard.safety import DriveMode

__all__ = [
    "ARM_JOG_LIMITS",
    "ARM_TOOL_BOUNDS",
    "COMMAND_NAMES",
    "JOG_KEYS",
    "REQUESTABLE_MODES",
    "REQUESTABLE_MODE_NAMES",
    "TELEOP_LIMITS",
    "TOOL_KEYS",
    "ArmCommand",
    "ArmJogCommand",
    "ArmJogLimits",
    "ArmPoseCommand",
    "ArmToolCommand",
    "Command",
    "CommandError",
    "CommandKey",
    "EstopCommand",
    "HandBackCommand",
    "HeartbeatCommand",
    "LeaseCommand",
    "ModeCommand",
    "RecordCommand",
    "ReloadCommand",
    "SigningConfig",
    "TeleopCommand",
    "TeleopLimits",
    "ToolTarget",
    "arm_command",
    "arm_targets_command",
    "command_name",
    "parse_command",
    "request_id_of",
    "teleop_command",
]


class CommandError(ValueError):
    """A command was malformed or out of range (the message says why)."""


SIGNATURE_VERSION = b"zima-cmd-v1"
MIN_KEY_CHARS = 16  # `zima onboard install` writes 43 (256 random bits)
MAX_SEEN_SIGNATURES = 4096  # accepted within the window: teleop at 20 Hz x 60 s fits


class CommandKey:
    """The shared secret of signed commands (module doc), and the signatures it has
    accepted recently (so none is taken twice). ``repr`` never shows the key."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"a command key needs {MIN_KEY_CHARS}+ characters")
        self._key = secret.encode()
        self._seen: OrderedDict[str, float] = OrderedDict()  # sig -> forget after (s)

    @classmethod
    def from_file(cls, path: Path) -> CommandKey:
        """The key in ``path`` (its text, whitespace stripped); ``OSError`` or
        ``ValueError`` saying why not."""
        return cls(path.read_text(encoding="utf-8").strip())

    def __repr__(self) -> str:
        return "CommandKey(<hidden>)"

    def signature(self, robot_id: str, name: str, body: dict[str, object]) -> str:
        """hex HMAC-SHA256 of the command ``name`` for ``robot_id`` (``body`` without sig)."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                               allow_nan=False).encode()
        message = b"\n".join((SIGNATURE_VERSION, robot_id.encode(), name.encode(), canonical))
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, robot_id: str, name: str, body: dict[str, object],
             now_s: float | None = None) -> dict[str, object]:
        """``body`` with ``ts`` (now, wall clock) and its ``sig``: what to publish."""
        signed: dict[str, object] = {**body, "ts": time.time() if now_s is None else now_s}
        signed.pop("sig", None)
        return {**signed, "sig": self.signature(robot_id, name, signed)}

    def verify(self, robot_id: str, name: str, body: dict[str, object], now_s: float,
               window_s: float) -> None:
        """Check and remove ``sig`` and ``ts`` from ``body``; ``CommandError`` if the
        signature is wrong, the time outside the window, or the command a replay."""
        sig, ts = body.get("sig"), body.get("ts")
        if not (isinstance(sig, str) and len(sig) == 64):
            raise CommandError("sig must be 64 hex characters (HMAC-SHA256)")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not -1e12 < ts < 1e12:
            raise CommandError("ts must be a number: seconds since 1970")
        del body["sig"]
        if not hmac.compare_digest(sig.lower(), self.signature(robot_id, name, body)):
            raise CommandError("bad signature (wrong command key, or the command was "
                               "altered)")
        del body["ts"]
        if abs(now_s - ts) > window_s:
            raise CommandError(f"ts is {now_s - ts:+.0f} s from the robot's clock (more than "
                               f"{window_s:g} s): check both clocks (NTP)")
        while self._seen and next(iter(self._seen.values())) < now_s:
            self._seen.popitem(last=False)
        key = sig.lower()
        if key in self._seen:
            raise CommandError("replayed command: this signature was already taken")
        self._seen[key] = ts + window_s
        while len(self._seen) > MAX_SEEN_SIGNATURES:
            self._seen.popitem(last=False)


class SigningConfig(Protocol):
    """What :func:`parse_command` reads of its config (``MqttConfig`` has it all)."""

    @property
    def robot_id(self) -> str: ...
    @property
    def command_key_file(self) -> Path | None: ...
    @property
    def command_key(self) -> CommandKey | None: ...
    @property
    def command_window_s(self) -> float: ...


# The modes an operator may ask for; ESTOP and LOW_BATTERY are entered by other means.
REQUESTABLE_MODES: Final = (DriveMode.IDLE, DriveMode.TELEOP, DriveMode.AUTONOMOUS,
                            DriveMode.SUPERVISED)
REQUESTABLE_MODE_NAMES: Final = tuple(m.value for m in REQUESTABLE_MODES)


@dataclass(frozen=True, slots=True)
class TeleopLimits:
    """The bounds of a teleop command: beyond them every front end refuses it (Safety then
    clamps each track to ``[safety] max_track_mm_s``)."""

    linear_m_per_s: float = 1.0
    angular_rad_per_s: float = 2.0


TELEOP_LIMITS: Final = TeleopLimits()


@dataclass(frozen=True, slots=True)
class ModeCommand:
    mode: DriveMode  # one of REQUESTABLE_MODES (CommandError otherwise)
    request_id: str | None = None

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, REQUESTABLE_MODE_NAMES)  # a StrEnum: its values compare


@dataclass(frozen=True, slots=True)
class TeleopCommand:
    """Within TELEOP_LIMITS (CommandError otherwise; :func:`teleop_command` from raw input)."""

    linear_m_per_s: float
    angular_rad_per_s: float
    request_id: str | None = None

    def __post_init__(self) -> None:
        _number("linear_m_per_s", self.linear_m_per_s, TELEOP_LIMITS.linear_m_per_s)
        _number("angular_rad_per_s", self.angular_rad_per_s, TELEOP_LIMITS.angular_rad_per_s)


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
    outcome: str | None = None  # with "stop": one of RECORD_OUTCOMES
    request_id: str | None = None

    def __post_init__(self) -> None:
        _one_of("action", self.action, RECORD_ACTIONS)
        if (self.action == "stop") != (self.outcome is not None):
            raise CommandError("stop takes an outcome (one of "
                               f"{list(RECORD_OUTCOMES)}); start and discard take none")
        if self.outcome is not None:
            _one_of("outcome", self.outcome, RECORD_OUTCOMES)


@dataclass(frozen=True, slots=True)
class LeaseCommand:
    """The teleop lease: one client drives at a time (``take`` it, ``renew`` it while held,
    ``give`` it up). A drive takes it too; it expires after ``[safety] lease_timeout_s``."""

    action: str  # one of LEASE_ACTIONS
    request_id: str | None = None

    def __post_init__(self) -> None:
        _one_of("action", self.action, LEASE_ACTIONS)


@dataclass(frozen=True, slots=True)
class HandBackCommand:
    """End a supervised take-over: the policy drives again."""

    request_id: str | None = None


ARM_TARGETS = 6  # yaw, shoulder, elbow, wrist pitch, wrist roll, gripper (PROTOCOL.md ARM)
ARM_RANGE_DDEG = (0, 1800)  # the protocol's servo range, 0.1 deg


@dataclass(frozen=True, slots=True)
class ArmCommand:
    """Arm joint targets, 0.1 deg within ARM_RANGE_DDEG (None leaves a joint)."""

    targets_ddeg: tuple[int | None, ...]
    request_id: str | None = None

    def __post_init__(self) -> None:
        if len(self.targets_ddeg) != ARM_TARGETS:
            raise CommandError(f"targets needs {ARM_TARGETS} values (null leaves a joint), "
                               f"got {len(self.targets_ddeg)}")
        lo, hi = ARM_RANGE_DDEG
        for j, t in enumerate(self.targets_ddeg):
            if t is not None and (isinstance(t, bool) or not isinstance(t, int)
                                  or not lo <= t <= hi):
                raise CommandError(f"targets[{j}]={str(t)[:24]} is not a whole number in "
                                   f"[{lo}, {hi}] (0.1 deg) or null")


@dataclass(frozen=True, slots=True)
class ArmToolBounds:
    """The bounds of a tool target: beyond them every front end refuses it. Far wider than
    the arm's 0.3 m reach, so that a target out of reach is refused by the kinematics,
    which name the nearest pose it can reach."""

    position_m: float = 1.0  # |x|, |y|, |z| in the arm_base frame
    angle_rad: float = math.tau  # |pitch|, |roll|


@dataclass(frozen=True, slots=True)
class ArmJogLimits:
    """The bounds of a jog's velocities: beyond them every front end refuses it. A jog
    late by Safety's teleop timeout (0.3 s) moves at most 4.5 cm, 0.3 rad, 1.5 cm."""

    linear_m_per_s: float = 0.15
    angular_rad_per_s: float = 1.0
    gripper_m_per_s: float = 0.05


ARM_TOOL_BOUNDS: Final = ArmToolBounds()
ARM_JOG_LIMITS: Final = ArmJogLimits()
TOOL_KEYS: Final = ("x_m", "y_m", "z_m", "pitch_rad", "roll_rad")
JOG_KEYS: Final = ("vx_m_s", "vy_m_s", "vz_m_s", "vpitch_rad_s", "vroll_rad_s", "vgripper_m_s")


@dataclass(frozen=True, slots=True)
class ToolTarget:
    """A tool pose to go to: the tool point in metres in the ``arm_base`` frame, the
    gripper's pitch (down +) and roll in radians (:class:`zima.onboard.kinematics.ToolPose`),
    within ARM_TOOL_BOUNDS."""

    x_m: float
    y_m: float
    z_m: float
    pitch_rad: float
    roll_rad: float

    def __post_init__(self) -> None:
        for key in TOOL_KEYS:
            limit = (ARM_TOOL_BOUNDS.position_m if key.endswith("_m")
                     else ARM_TOOL_BOUNDS.angle_rad)
            _number(key, getattr(self, key), limit)


@dataclass(frozen=True, slots=True)
class ArmToolCommand:
    """Go to a tool pose (through inverse kinematics from the arm's present pose) and/or
    set the gripper's opening (m, 0 closed .. GRIPPER_MAX_OPENING_M open)."""

    tool: ToolTarget | None
    gripper_m: float | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.tool is None and self.gripper_m is None:
            raise CommandError("an arm tool command needs a tool pose, gripper_m or both")
        if self.gripper_m is not None:
            _gripper(self.gripper_m)


@dataclass(frozen=True, slots=True)
class ArmPoseCommand:
    """Go to a named pose (zima.onboard.arm_poses.NAMED_POSES)."""

    pose: str
    request_id: str | None = None

    def __post_init__(self) -> None:
        _one_of("pose", self.pose, POSE_NAMES)


@dataclass(frozen=True, slots=True)
class ArmJogCommand:
    """Move the tool at these velocities (the arm_base frame: m/s; pitch and roll rad/s;
    the gripper's opening m/s) until the next jog; Safety integrates them only while
    jogs keep coming (zima.onboard.safety). Within ARM_JOG_LIMITS."""

    vx_m_s: float = 0.0
    vy_m_s: float = 0.0
    vz_m_s: float = 0.0
    vpitch_rad_s: float = 0.0
    vroll_rad_s: float = 0.0
    vgripper_m_s: float = 0.0
    request_id: str | None = None

    def __post_init__(self) -> None:
        lim = ARM_JOG_LIMITS
        for key, limit in zip(JOG_KEYS, (lim.linear_m_per_s,) * 3 + (lim.angular_rad_per_s,) * 2
                              + (lim.gripper_m_per_s,), strict=True):
            _number(key, getattr(self, key), limit)

    @property
    def velocity(self) -> tuple[float, ...]:
        """The six velocities in JOG_KEYS order."""
        return tuple(float(getattr(self, key)) for key in JOG_KEYS)

    @property
    def moving(self) -> bool:
        return any(self.velocity)


Command = (ModeCommand | TeleopCommand | EstopCommand | ReloadCommand | RecordCommand
           | HeartbeatCommand | LeaseCommand | HandBackCommand | ArmCommand | ArmToolCommand
           | ArmPoseCommand | ArmJogCommand)
ARM_COMMANDS: Final = (ArmCommand, ArmToolCommand, ArmPoseCommand, ArmJogCommand)

COMMAND_NAMES = ("mode", "teleop", "estop", "reload", "record", "heartbeat", "lease",
                 "handback", "arm")
LEASE_ACTIONS = ("take", "renew", "give")
MAX_COMMAND_BYTES = 4096  # the longest valid command is under 200 bytes
MAX_COMMAND_DEPTH = 2  # a command is one flat JSON object (arm's targets: one list)
RELOAD_TARGETS = ("policy", "config")
RECORD_ACTIONS = ("start", "stop", "discard")
RECORD_OUTCOMES = tuple(o.value for o in JUDGED_OUTCOMES)


def _one_of(key: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices`` (the words a field may take), else
    ``CommandError`` listing them."""
    if value not in choices:
        raise CommandError(f"{key} must be one of {list(choices)}")
    return str(value)


def _number(key: str, value: object, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{key} must be a number")
    if not -limit <= value <= limit:  # compared, not converted: a 400-digit int is no float
        raise CommandError(f"{key}={str(value)[:24]} is outside [-{limit}, {limit}]")
    return float(value)


def _record(body: dict[str, object], rid: str | None) -> RecordCommand:
    action, outcome = _one_of("action", body["action"], RECORD_ACTIONS), body.get("outcome")
    return RecordCommand(action, None if outcome is None else _one_of(
        "outcome", outcome, RECORD_OUTCOMES), rid)


def _mode(body: dict[str, object], rid: str | None) -> ModeCommand:
    return ModeCommand(DriveMode(_one_of("mode", body["mode"], REQUESTABLE_MODE_NAMES)), rid)


def _teleop(body: dict[str, object], rid: str | None) -> TeleopCommand:
    return teleop_command(body.get("linear_m_per_s"), body.get("angular_rad_per_s"), rid)


def teleop_command(linear_m_per_s: object, angular_rad_per_s: object,
                   request_id: str | None = None) -> TeleopCommand:
    """A teleop command from raw input (MQTT's payloads, the console's drive messages), or
    ``CommandError`` for a speed that is no number or beyond ``TELEOP_LIMITS``."""
    return TeleopCommand(
        _number("linear_m_per_s", linear_m_per_s, TELEOP_LIMITS.linear_m_per_s),
        _number("angular_rad_per_s", angular_rad_per_s, TELEOP_LIMITS.angular_rad_per_s),
        request_id)


def _estop(body: dict[str, object], rid: str | None) -> EstopCommand:
    if not isinstance(body["engaged"], bool):
        raise CommandError("engaged must be true or false")
    return EstopCommand(body["engaged"], rid)


def _reload(body: dict[str, object], rid: str | None) -> ReloadCommand:
    return ReloadCommand(_one_of("target", body["target"], RELOAD_TARGETS), rid)


def _heartbeat(_body: dict[str, object], rid: str | None) -> HeartbeatCommand:
    return HeartbeatCommand(rid)


def _lease(body: dict[str, object], rid: str | None) -> LeaseCommand:
    return LeaseCommand(_one_of("action", body["action"], LEASE_ACTIONS), rid)


def _handback(_body: dict[str, object], rid: str | None) -> HandBackCommand:
    return HandBackCommand(rid)


def _gripper(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError("gripper_m must be a number")
    if not 0 <= value <= GRIPPER_MAX_OPENING_M:
        raise CommandError(f"gripper_m={str(value)[:24]} is outside [0, "
                           f"{GRIPPER_MAX_OPENING_M}] (m, the fingers' opening)")
    return float(value)


ARM_FORMS = ('{"targets": [6 x 0.1 deg or null]}; {"x_m", "y_m", "z_m", "pitch_rad", '
             '"roll_rad"} and/or {"gripper_m"}; {"pose": name}; or a jog, any of '
             '{"vx_m_s", "vy_m_s", "vz_m_s", "vpitch_rad_s", "vroll_rad_s", "vgripper_m_s"}')


def _arm_form(keys: set[str]) -> str | None:
    """Which form of cmd/arm (module doc) the keys make, None for none of them."""
    tool = keys & set(TOOL_KEYS)
    if keys == {"targets"}:
        return "targets"
    if keys == {"pose"}:
        return "pose"
    if keys and keys <= set(JOG_KEYS):
        return "jog"
    if keys and keys <= {*TOOL_KEYS, "gripper_m"} and tool in (set(), set(TOOL_KEYS)):
        return "tool"
    return None


def arm_command(body: dict[str, object], request_id: str | None = None) -> (
        ArmCommand | ArmToolCommand | ArmPoseCommand | ArmJogCommand):
    """The arm command in ``body``, a cmd/arm payload without its request_id, in any of its
    forms (module doc); ``CommandError`` for anything else."""
    form = _arm_form(set(body))
    if form is None:
        got = sorted(k[:MAX_ID_CHARS] for k in body)[:8]
        raise CommandError(f"arm takes one of {ARM_FORMS}; got {got}")
    if form == "targets":
        return arm_targets_command(body["targets"], request_id)
    if form == "pose":
        return ArmPoseCommand(_one_of("pose", body["pose"], POSE_NAMES), request_id)
    if form == "jog":
        lim = ARM_JOG_LIMITS
        limits = dict(zip(JOG_KEYS, (lim.linear_m_per_s,) * 3 + (lim.angular_rad_per_s,) * 2
                          + (lim.gripper_m_per_s,), strict=True))
        return ArmJogCommand(**{k: _number(k, v, limits[k]) for k, v in body.items()},
                             request_id=request_id)
    tool = None
    if "x_m" in body:
        bounds = ARM_TOOL_BOUNDS
        tool = ToolTarget(*(_number(k, body[k], bounds.position_m if k.endswith("_m")
                                    else bounds.angle_rad) for k in TOOL_KEYS))
    gripper = body.get("gripper_m")
    return ArmToolCommand(tool, None if gripper is None else _gripper(gripper), request_id)


def arm_targets_command(targets: object, request_id: str | None = None) -> ArmCommand:
    """An arm command from raw input (``cmd/arm``, the console's arm messages): a list of
    ARM_TARGETS whole numbers or nulls; ``CommandError`` for anything else. A number with
    a fraction is rounded (a slider may send 900.0)."""
    if not isinstance(targets, list):
        raise CommandError("targets must be a list of numbers (0.1 deg) or nulls")
    values: list[int | None] = []
    for j, t in enumerate(targets[:ARM_TARGETS + 1]):
        if t is None:
            values.append(None)
            continue
        # compared before any conversion: a 400-digit int is no float
        if isinstance(t, bool) or not isinstance(t, int | float) or not -1e6 < t < 1e6:
            raise CommandError(f"targets[{j}] must be a finite number (0.1 deg) or null")
        values.append(round(t))
    return ArmCommand(tuple(values), request_id)


def _arm(body: dict[str, object], rid: str | None) -> Command:
    return arm_command(body, rid)


# Each command's builder: it checks the values of the keys parse_command let through.
_BUILDERS: dict[str, Callable[[dict[str, object], str | None], Command]] = {
    "mode": _mode, "teleop": _teleop, "estop": _estop, "reload": _reload,
    "record": _record, "heartbeat": _heartbeat, "lease": _lease, "handback": _handback,
    "arm": _arm}


def _unsigned_estop(name: str, body: dict[str, object]) -> bool:
    """An e-stop that engages, unsigned: taken even where commands must be signed."""
    return name == "estop" and "sig" not in body and body.get("engaged") is True \
        and set(body) <= {"engaged", "request_id"}


def _body(payload: bytes) -> object:
    return parse_json_bounded(payload, max_bytes=MAX_COMMAND_BYTES,
                              max_depth=MAX_COMMAND_DEPTH, what="command")


_NAMES: dict[type, str] = {ModeCommand: "mode", TeleopCommand: "teleop", EstopCommand: "estop",
                           ReloadCommand: "reload", RecordCommand: "record",
                           HeartbeatCommand: "heartbeat", LeaseCommand: "lease",
                           HandBackCommand: "handback", ArmCommand: "arm",
                           ArmToolCommand: "arm", ArmPoseCommand: "arm", ArmJogCommand: "arm"}


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


def parse_command(name: str, payload: bytes, config: SigningConfig,
                  now_s: float | None = None) -> Command:
    """The command ``name`` (``mode``, ``teleop``, ``estop``, ``reload``, ``record``,
    ``heartbeat``) in ``payload``.

    Strict: a JSON object with exactly the documented keys. ``CommandError`` otherwise,
    for any bytes. With ``config.command_key_file`` set, signed too (module doc): ``now_s``
    is the wall clock the signature's ``ts`` is checked against (``time.time()`` if None).
    """
    try:
        body = _body(payload)
    except InputError as exc:
        raise CommandError(str(exc)) from None
    if not isinstance(body, dict):
        raise CommandError("a command is a JSON object")
    if config.command_key_file is not None and not _unsigned_estop(name, body):
        if config.command_key is None:  # configured but not loaded: refuse, never skip
            raise CommandError("the command key is not loaded: signed commands refused")
        if "sig" not in body:
            raise CommandError("this robot takes signed commands only (sig, ts)")
        config.command_key.verify(config.robot_id, name, body,
                                  time.time() if now_s is None else now_s,
                                  config.command_window_s)
    elif config.command_key_file is None and "sig" in body:
        raise CommandError("this robot checks no signatures (no [mqtt] command_key_file): "
                           "send the command unsigned")
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
        "lease": {"action"},
        "handback": set(),
        "arm": None,  # four forms: arm_command says which keys each takes
    }.get(name, set())
    if name not in _BUILDERS:
        raise CommandError(f"unknown command {name[:MAX_ID_CHARS]!r}")
    if expected is None:  # arm's forms: its builder says which it takes
        return arm_command(body, rid)
    if set(body) != expected:
        got = sorted(k[:MAX_ID_CHARS] for k in body)[:8]
        raise CommandError(f"{name} takes exactly {sorted(expected)}, got {got}")
    return _BUILDERS[name](body, rid)
