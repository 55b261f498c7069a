"""The operator API: every command an operator can give and every record the robot reports.

One module for every front end. MQTT (:mod:`zima.onboard.telemetry`), the web console
(:mod:`zima.onboard.web.server`) and the host tools (``zima status``, ``battery``,
``estop``, ``deploy``) translate between their wire and these types; the runtime takes a
command in one place, ``Runtime.handle(command, source)``, and tells its state in one,
``Runtime.status()`` and ``Runtime.telemetry_record(stream)``.

**Commands** (:mod:`zima.onboard.commands`: the typed records, their bounds and the JSON
parser of ``cmd/<name>``): mode, teleop, arm (joints, a tool pose, a named pose or a jog),
e-stop, reload, record, lease, hand-back and heartbeat.

**Records**, one frozen dataclass per telemetry stream (``telemetry/<stream>``, table
``RECORDS``): each field has its type, its bound (an enum's values; ``None`` where the value
may be unknown) and a line of documentation in its metadata. ``to_json()`` is the payload the
robot publishes (plus ``stamp_unix_s``, added by :class:`~zima.onboard.telemetry.Telemetry`);
``from_json(payload)`` is the checked reading the host tools use, ``RecordError`` naming the
first bad field of any payload. Fields added later are optional to readers (``since``), so a
newer tool reads an older robot. ``onboard/MQTT.md``'s topic table is :func:`topic_reference`
(a test holds the file to it; ``python -m zima.onboard.api`` prints it).

**How old the data is.** The MCU's records (battery, odometry, faults) carry ``age_s``
since their TELEMETRY arrived and ``stale`` when the link is down or silent; link has
``age_s`` of the last TELEMETRY; the arm's ``age_s`` of its ARM_STATE; a policy record the
observation's age at action time; each camera its frame's age. Mode and loop describe the
runtime itself, now.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, Self

from zima.episodes import Outcome
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M
from zima.onboard.commands import (
    ARM_JOG_LIMITS,
    ARM_TOOL_BOUNDS,
    COMMAND_NAMES,
    REQUESTABLE_MODES,
    TELEOP_LIMITS,
    ArmCommand,
    ArmJogCommand,
    ArmPoseCommand,
    ArmToolCommand,
    Command,
    CommandError,
    EstopCommand,
    HandBackCommand,
    HeartbeatCommand,
    LeaseCommand,
    ModeCommand,
    RecordCommand,
    ReloadCommand,
    TeleopCommand,
    ToolTarget,
    parse_command,
)
from zima.onboard.frame import Frame
from zima.onboard.safety import BatteryLevel, DriveMode

__all__ = [
    "ARM_JOG_LIMITS",
    "ARM_TOOL_BOUNDS",
    "COMMAND_NAMES",
    "RECORDS",
    "REQUESTABLE_MODES",
    "TELEOP_LIMITS",
    "ArmCommand",
    "ArmJogCommand",
    "ArmPoseCommand",
    "ArmRecord",
    "ArmToolCommand",
    "BatteryLevel",
    "BatteryRecord",
    "CameraRecord",
    "CamerasRecord",
    "Command",
    "CommandError",
    "CommandResult",
    "DriveMode",
    "EstopCommand",
    "FaultsRecord",
    "HandBackCommand",
    "HeartbeatCommand",
    "LeaseCommand",
    "LinkRecord",
    "LoopRecord",
    "ModeCommand",
    "ModeRecord",
    "OdometryRecord",
    "Operated",
    "Outcome",
    "PolicyRecord",
    "Record",
    "RecordCommand",
    "RecordError",
    "RecorderRecord",
    "ReloadCommand",
    "RobotStatus",
    "TeleopCommand",
    "ToolTarget",
    "TracksRecord",
    "parse_command",
    "topic_reference",
]


class RecordError(ValueError):
    """A payload is not the record it claims to be (the message names the field)."""


def doc(text: str, *, since: bool = False, null: bool = False, omit_none: bool = False,
        bounds: tuple[float, float] | None = None) -> Any:
    """A record field's documentation. ``since``: older robots do not send it, so readers
    take it as optional (None when absent; ``null`` says the robot may send null too);
    ``omit_none``: left out of the payload when None; ``bounds``: a number's range, checked
    by ``from_json``."""
    return field(metadata={"doc": text, "since": since, "bounds": bounds,
                           "null": null or not (since or omit_none), "omit_none": omit_none})


MV = (0, 65_535)  # the MCU's millivolts are a u16
AGE = (0, math.inf)  # seconds, never negative


def _mcu_age(*, null: bool = False) -> Any:
    """``age_s`` of a record the MCU's TELEMETRY fills (battery, odometry, faults)."""
    return doc("since the MCU's TELEMETRY arrived", since=True, null=null, bounds=AGE)


def _mcu_stale() -> Any:
    """``stale`` of a record the MCU's TELEMETRY fills: what it held when the link went."""
    return doc("the link is down or silent: the last values known", since=True)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(name: str, value: object, tp: Any) -> object:  # noqa: PLR0911, PLR0912 - a type each
    """``value`` as the type ``tp`` says (ints pass as floats), or ``RecordError``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(name, value, inner[0])
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        values = [m.value for m in tp]
        if value not in values:
            raise RecordError(f"{name}={_shown(value)} is not one of {values}")
        return tp(str(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{name}={_shown(value)} is not true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{name}={_shown(value)} is not an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise RecordError(f"{name}={_shown(value)} is not a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecordError(f"{name}={_shown(value)} is not a string")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{name}={_shown(value)} is not a list")
        return [_check(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{name}={_shown(value)} is not an object")
        return dict(value)
    raise TypeError(f"no check for {tp!r}")  # a record declared with an unknown type


def _type_name(tp: Any) -> str:
    """A field's type as onboard/MQTT.md writes it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return "|".join(f'"{m.value}"' for m in tp)
    if origin is list:
        return f"[{_type_name(args[0])}]"
    if origin is dict:
        return "{...}"
    return str(getattr(tp, "__name__", tp))


class Record:
    """A record's JSON form, both ways, from its dataclass fields (module doc)."""

    STREAM: ClassVar[str] = ""
    RATE: ClassVar[str] = ""  # the default rate, as MQTT.md says it

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = value.value if isinstance(value, StrEnum) else value
        return out

    @classmethod
    def from_json(cls, payload: Mapping[str, object]) -> Self:
        """The record in ``payload`` (extra keys, e.g. ``stamp_unix_s``, are ignored);
        ``RecordError`` naming the first missing or bad field."""
        if not isinstance(payload, Mapping):
            raise RecordError(f"{cls.STREAM or cls.__name__}: not a JSON object")
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in payload:
                if f.metadata.get("since") or f.metadata.get("omit_none"):
                    values[f.name] = None
                    continue
                raise RecordError(f"{cls.STREAM or cls.__name__}: no {f.name}")
            name = f"{cls.STREAM}.{f.name}"
            value = _check(name, payload[f.name], hints[f.name])
            bounds = f.metadata.get("bounds")
            if bounds is not None and isinstance(value, int | float) \
                    and not bounds[0] <= value <= bounds[1]:
                raise RecordError(f"{name}={_shown(value)} is outside "
                                  f"[{bounds[0]:g}, {bounds[1]:g}]")
            values[f.name] = value
        return cls(**values)

    @classmethod
    def reference(cls) -> list[tuple[str, str]]:
        """This record's fields as onboard/MQTT.md lists them: (key and type, doc)."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            tp = hints[f.name]
            if not f.metadata.get("null"):  # None only where an older robot left it out
                tp = _not_none(tp)
            key = f'"{f.name}"' + ("?" if f.metadata.get("omit_none") else "")
            bounds = f.metadata.get("bounds")
            limits = "" if bounds is None else (
                f" >= {bounds[0]:g}" if math.isinf(bounds[1]) else f" {bounds[0]:g}..{bounds[1]:g}")
            rows.append((f"{key}: {_type_name(tp)}{limits}", str(f.metadata.get("doc", ""))))
        return rows


def _not_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) \
        and len(args) == 1 else tp


@dataclass(frozen=True, slots=True)
class BatteryRecord(Record):
    STREAM: ClassVar[str] = "battery"
    RATE: ClassVar[str] = "1 Hz; not sent until the MCU has filtered its first ADC sample"

    battery_mv: int = doc("the pack, filtered by the MCU", bounds=MV)
    level: BatteryLevel = doc("the MCU's debounced verdict")
    low_mv: int = doc("tracks derated at or below", bounds=MV)
    critical_mv: int = doc("tracks stopped and latched at or below", bounds=MV)
    latched: bool | None = doc("BATT_CRITICAL latched on the MCU", since=True)
    clear_mv: int | None = doc("above this an operator's idle clears the latch (0: not known yet)",
                               since=True, bounds=MV)
    advice: str | None = doc("what to do, while there is something to do", since=True, null=True)
    age_s: float | None = _mcu_age()
    stale: bool | None = _mcu_stale()


@dataclass(frozen=True, slots=True)
class OdometryRecord(Record):
    STREAM: ClassVar[str] = "odometry"
    RATE: ClassVar[str] = "10 Hz"

    left_ticks: int = doc("encoder counts since the MCU started")
    right_ticks: int = doc("")
    vel_left_mm_s: int = doc("measured track speeds")
    vel_right_mm_s: int = doc("")
    target_left_mm_s: int = doc("the MCU's PID targets")
    target_right_mm_s: int = doc("")
    out_left_permille: int = doc("PWM duty, -1000..1000")
    out_right_permille: int = doc("")
    age_s: float | None = _mcu_age()
    stale: bool | None = _mcu_stale()


@dataclass(frozen=True, slots=True)
class ModeRecord(Record):
    STREAM: ClassVar[str] = "mode"
    RATE: ClassVar[str] = "2 Hz, and at once on every change"

    mode: DriveMode = doc("")
    owner: str = doc('who drives: "none", "policy" or "teleop:<client>"')
    reason: str | None = doc('why the tracks are stopped: "idle" when chosen, else "<kind>: '
                             '<reason>" of the stop that forced it (e.g. "link_lost: link '
                             'down"); in low_battery what clears it')
    refused: str | None = doc("a command just refused, and why", omit_none=True)


@dataclass(frozen=True, slots=True)
class LinkRecord(Record):
    STREAM: ClassVar[str] = "link"
    RATE: ClassVar[str] = "1 Hz"

    connected: bool = doc("")
    reason: str = doc("why the link is (not) up")
    telemetry_hz: float = doc("TELEMETRY frames a second from the MCU")
    rx_rejected: int = doc("frames refused by the decoder (bad CRC, framing)")
    rx_dropped: int = doc("")
    connects: int = doc("handshakes so far")
    firmware: str | None = doc('e.g. "0.1.0+<build id hex>"')
    since_s: float | None = doc("since the status last changed", since=True)
    age_s: float | None = doc("of the last TELEMETRY", since=True, null=True)


@dataclass(frozen=True, slots=True)
class FaultsRecord(Record):
    STREAM: ClassVar[str] = "faults"
    RATE: ClassVar[str] = "1 Hz, and at once when a part fails"

    active: list[str] = doc("the MCU's fault names")
    mcu_state: str | None = doc('"WAIT_HOST"|"IDLE"|"DRIVING"|"ESTOP"|"FAULT"|null')
    parts: dict[str, object] | None = doc(
        '{"<part>": {"state": "running"|"restarting"|"failed", "failures": int, "last_error": '
        'str|null}, ..., "mqtt": {..., "dropped": int, "expired": int, "provider_errors": '
        "int}}", since=True)
    age_s: float | None = _mcu_age(null=True)
    stale: bool | None = _mcu_stale()


@dataclass(frozen=True, slots=True)
class LoopRecord(Record):
    STREAM: ClassVar[str] = "loop"
    RATE: ClassVar[str] = "2 Hz"

    rate_hz: float = doc("")
    period_p50_ms: float = doc("")
    period_p99_ms: float = doc("")
    jitter_p50_ms: float | None = doc("|tick interval - period| over the last 500 ticks",
                                      since=True)
    jitter_p99_ms: float | None = doc("", since=True)
    jitter_max_ms: float | None = doc("", since=True)
    overruns: int = doc("ticks later than a whole period")


@dataclass(frozen=True, slots=True)
class PolicyRecord(Record):
    STREAM: ClassVar[str] = "policy"
    RATE: ClassVar[str] = "2 Hz"

    model_hash: str | None = doc("sha256 hex of the model in use")
    model_path: str | None = doc('the model file, or "host:port" of a remote server')
    latency_ms: float | None = doc("inference, smoothed")
    latency_max_ms: float | None = doc("")
    plans: int = doc("chunks planned")
    reloads: int = doc("models swapped in")
    reload_error: str | None = doc("why the last reload (or load) was refused")
    reload_failures: int | None = doc("refused reloads so far", since=True)
    bad_outputs: int | None = doc("model outputs refused: not finite or out of range",
                                  since=True)
    bad_in_row: int | None = doc("", since=True)
    last_bad_output: str | None = doc("", since=True, null=True)
    faulty: str | None = doc("set after [policy] max_bad_outputs bad outputs in a row: the "
                             "robot goes to idle; a successful reload clears it",
                             since=True, null=True)
    obs_age_ms: float | None = doc("the observation's age when the latest chunk's first "
                                   "action started", since=True, null=True)
    obs_age_p50_ms: float | None = doc("over the last 200 chunks", since=True, null=True)
    obs_age_p99_ms: float | None = doc("", since=True, null=True)
    lead_ms: float | None = doc("how long before its first action is due a plan starts",
                                since=True, null=True)
    dry_ticks: int | None = doc("ticks that found no plan ready", since=True)
    stale_ticks: int | None = doc("", since=True)
    stretches: int | None = doc("actions held one tick longer so that the next plan starts on "
                                "a fresher frame of the driving camera (its phase against the "
                                "loop; again as its clock drifts)", since=True)
    backend: str | None = doc('"local", "remote" ([policy] backend) or "fallback" (the '
                              "onboard fallback model plans while the server is away)",
                              since=True)
    connected: bool | None = doc("remote: connected to the server and its model verified",
                                 since=True, null=True)
    round_trip_ms: float | None = doc("remote: the last request's round trip (plans lead by "
                                      "it)", since=True, null=True)
    round_trip_p99_ms: float | None = doc("", since=True, null=True)
    reconnects: int | None = doc("remote: connections made after the first", since=True)
    remote_losses: int | None = doc("remote: connections lost (a request timed out, the link "
                                    "broke): each STOPs the robot", since=True)
    remote_error: str | None = doc("remote: why the last connection ended or was refused",
                                   since=True, null=True)


@dataclass(frozen=True, slots=True)
class ArmRecord(Record):
    STREAM: ClassVar[str] = "arm"
    RATE: ClassVar[str] = "5 Hz; not sent until the MCU's first ARM_STATE"

    servo_ddeg: list[int] = doc("the servos' present commands (ARM_STATE, 0.1 deg; yaw, "
                                "shoulder, elbow, wrist pitch, wrist roll, gripper): the MCU "
                                "slews them toward the targets")
    joints_rad: list[float] = doc("the five arm joints at servo_ddeg (rad, "
                                  "zima.onboard.kinematics.JOINT_NAMES order)")
    tool_xyz_m: list[float] = doc("the tool point there, by forward kinematics: metres in the "
                                  "arm_base frame (x forward, y left, z up)")
    tool_pitch_rad: float = doc("the gripper's pitch below horizontal")
    tool_roll_rad: float = doc("")
    gripper_m: float = doc(f"the fingers' opening (0 closed, {GRIPPER_MAX_OPENING_M} open; "
                           "below 0: squeezing)")
    commanded_ddeg: list[int | None] = doc("the targets last sent (0.1 deg; null: none since "
                                           "the runtime started)")
    age_s: float = doc("since the ARM_STATE arrived", bounds=AGE)
    stale: bool = doc("the link is down or silent: the last values known")


@dataclass(frozen=True, slots=True)
class CameraRecord(Record):
    STREAM: ClassVar[str] = "cameras.<camera>"

    state: str = doc('"opening"|"streaming"|"failed"|"stopped"')
    stale: bool = doc("no new frame within the camera's timeout")
    frames: int = doc("")
    failures: int = doc("")
    age_s: float | None = doc("of the newest frame")
    error: str | None = doc("")


@dataclass(frozen=True, slots=True)
class CamerasRecord(Record):
    """``telemetry/cameras``: one :class:`CameraRecord` per camera, keyed by its name."""

    STREAM: ClassVar[str] = "cameras"
    RATE: ClassVar[str] = "1 Hz"

    cameras: dict[str, CameraRecord]

    def to_json(self) -> dict[str, object]:
        return {name: cam.to_json() for name, cam in self.cameras.items()}

    @classmethod
    def from_json(cls, payload: Mapping[str, object]) -> Self:
        if not isinstance(payload, Mapping):
            raise RecordError("cameras: not a JSON object")
        cams = {}
        for name, body in payload.items():
            if name == "stamp_unix_s":
                continue
            if not isinstance(body, Mapping):
                raise RecordError(f"cameras.{_shown(name)}: not a JSON object")
            cams[name] = CameraRecord.from_json(body)
        return cls(cams)

    @classmethod
    def reference(cls) -> list[tuple[str, str]]:
        return [('"<camera>": {', "one object per camera:"),
                *(("  " + key, text) for key, text in CameraRecord.reference()), ("}", "")]


@dataclass(frozen=True, slots=True)
class CommandResult(Record):
    """``cmd/result``: each command's answer, after it was carried out or refused."""

    STREAM: ClassVar[str] = "result"

    command: str = doc("the command's name")
    request_id: str | None = doc("the command's own, echoed")
    accepted: bool = doc("carried out")
    error: str | None = doc("why not: malformed, out of range, or refused when carried out")


@dataclass(frozen=True, slots=True)
class TracksRecord(Record):
    """What the tracks were told on the last tick (Safety's decision)."""

    STREAM: ClassVar[str] = "tracks"

    left_mm_s: int = doc("")
    right_mm_s: int = doc("")
    reason: str | None = doc("why they are stopped; null while their owner drives")


@dataclass(frozen=True, slots=True)
class RecorderRecord(Record):
    """The episode recorder, for the console."""

    STREAM: ClassVar[str] = "recorder"

    recording: bool = doc("")
    episode: str | None = doc("the file being recorded")
    steps: int = doc("in the current episode")
    episodes_written: int = doc("kept this session")
    action_counts: dict[str, object] = doc("action name -> steps, this session")
    error: str | None = doc("the last write error")
    dropped_steps: int = doc("the writer fell behind, this session")


@dataclass(frozen=True, slots=True)
class RobotStatus:
    """``Runtime.status()``: the robot as one record (each part's own record; None where
    the runtime has nothing to say yet, e.g. battery before the MCU's first reading)."""

    mode: ModeRecord
    battery: BatteryRecord | None
    odometry: OdometryRecord | None
    link: LinkRecord | None
    faults: FaultsRecord
    loop: LoopRecord
    policy: PolicyRecord
    cameras: CamerasRecord | None
    tracks: TracksRecord | None  # None before the first tick
    recorder: RecorderRecord | None  # None when the recorder does not run
    lease_holder: str | None  # the teleop lease's client, if any
    camera_names: tuple[str, ...]  # configured, whether or not they stream
    model_sha256: str | None
    arm: ArmRecord | None = None  # None before the MCU's first ARM_STATE

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if hasattr(value, "to_json") else (
                list(value) if isinstance(value, tuple) else value)
        return out


class Operated(Protocol):
    """What a front end needs of the robot: the runtime, to the web console and tests."""

    async def handle(self, command: Command, source: str) -> str | None:
        """Carry out ``command`` from ``source``; None when done, else why it was refused."""
        ...

    def status(self) -> RobotStatus: ...

    def frames(self) -> dict[str, Frame]: ...

    @property
    def clock(self) -> Callable[[], float]: ...


# telemetry/<stream> -> its record, in the order onboard/MQTT.md lists them.
RECORDS: dict[str, type[Record]] = {
    r.STREAM: r for r in (BatteryRecord, OdometryRecord, ModeRecord, LinkRecord, FaultsRecord,
                          LoopRecord, PolicyRecord, CamerasRecord, ArmRecord)}


def topic_reference() -> str:
    """The telemetry topics of onboard/MQTT.md, from the records: each topic with its
    default rate, then one line per key (its JSON type, and what it means)."""
    out = []
    for stream, record in RECORDS.items():
        out.append(f"zima/<r>/telemetry/{stream}".ljust(34) + f"out, {record.RATE}")
        for key, text in record.reference():
            line = f"    {key}".ljust(40)
            if len(line) > 40 and text:
                out.append(line.rstrip())
                line = " " * 40
            out.extend(textwrap.wrap(text, 92, initial_indent=line, subsequent_indent=" " * 42)
                       or [line.rstrip()])
    return "\n".join(out)


MQTT_MD_BEGIN = "<!-- telemetry topics: made by `python -m zima.onboard.api --write` -->"
MQTT_MD_END = "<!-- end of the telemetry topics -->"


def mqtt_md(text: str) -> str:
    """onboard/MQTT.md's ``text`` with its telemetry topics made anew from the records."""
    head, _, rest = text.partition(MQTT_MD_BEGIN)
    _, _, tail = rest.partition(MQTT_MD_END)
    if not rest or not tail:
        raise ValueError("MQTT.md has lost its telemetry markers")
    return f"{head}{MQTT_MD_BEGIN}\n```\n{topic_reference()}\n```\n{MQTT_MD_END}{tail}"


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool, held by a test
    from pathlib import Path

    md = Path(__file__).with_name("MQTT.md")
    if sys.argv[1:] == ["--write"]:
        md.write_text(mqtt_md(md.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(topic_reference() + "\n")
