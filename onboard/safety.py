"""``Safety``: the single owner of the tracks and the arm, and the robot's drive modes.

Pure and synchronous: no clock, no I/O, no asyncio; every call takes ``now_s`` (the
runtime's monotonic clock), so tests and replays drive it exactly. The runtime feeds it
the world every control tick (``update``), hands it every command (operator: MQTT and the
web console; the policy: ``policy_step``), and sends the MCU only what ``decide`` returns.
Every mode or owner change is appended to ``transitions`` (drain with
``take_transitions``): the runtime publishes them, the recorder keeps take-overs.

Modes and who owns the tracks (and, for teleop clients, the arm)::

    mode         owner                          tracks / how it is entered and left
    idle         none                           0; the start, after e-stop release, after
                                                link loss, MCU e-stop or operator loss in
                                                autonomy
    teleop       "teleop:<client>" holding the  the client's last command; a teleop() with
                 lease, else none               no live lease takes it implicitly (MQTT)
    autonomous   "policy"                       the policy's last step; teleop refused
    supervised   "policy", or "teleop:<client>" the policy until a teleop() by the lease
                 after a take-over              holder (any client if no live lease):
                                                "takeover"; hand_back() -> "handback"
    estop        none                           0 at once; engage_estop() from any mode;
                                                release_estop() -> idle, never driving
    low_battery  none                           0; entered when the battery is critical;
                                                left only by request_mode(idle) once the
                                                battery is no longer critical (the MCU
                                                cleared its latch); e-stop and its release
                                                come back here

Rules of ``decide`` (tracks are 0, with ``reason`` saying why, unless all hold):

- the mode drives (teleop / autonomous / supervised) and somebody owns the tracks;
- the link is up and the MCU has no e-stop latched;
- the owner's last command is at most ``teleop_timeout_s`` / ``policy_timeout_s`` old
  (every path to the motors has a timeout; the MCU's watchdog is the last one);
- for the policy: ``policy_ready`` (fresh cameras, a loaded model), else ``policy_reason``.

Then each track is clamped to +-``max_track_mm_s`` (``clamped``), scaled by
``low_battery_derate`` while the battery is LOW (``derate``) and truncated toward zero
to whole mm/s (the ``DRIVE`` message's unit). Arm targets from teleop pass the same
ownership check and are clamped per joint to ``arm_min_ddeg..arm_max_ddeg``; the MCU's
slew limit does the rest.

Arm jogs time out like track commands. A jog is a velocity held on a key or stick, sent
again at the page's rate while held (``arm_jog``): each one returns how far the previous
one moves the arm now, its velocity times the time since it came, at most
``teleop_timeout_s``. So the arm moves only while jogs keep coming: a stuck key behind a
dropped connection sends nothing, and nothing moves; a jog delayed past the timeout moves
no further than a track command would have driven. A mode change, a lost lease, a hand-back
or a world stop forgets the jog (the next one starts afresh).

Leases: one driving client at a time. ``acquire_lease`` / ``renew_lease`` / any teleop
command keep a lease alive for ``lease_timeout_s``; a lease not renewed expires
("lease_expired"). In teleop the tracks then have no owner (mode stays teleop); during a
supervised take-over the mode drops to idle instead: the operator vanished mid take-over,
and silently giving the robot back to the policy is not ours to decide. Releasing the
lease explicitly does the same.

Stops the stack did not choose (the link lost, the MCU's e-stop latched, the operator
gone) end autonomy: autonomous and supervised drop to idle, so the robot never drives off
on its own when the link returns. Teleop keeps its mode (the operator is in the loop) but
forgets its pending command. Stale cameras (``policy_ready=False``) stop the policy
without changing the mode. Driving modes are refused while e-stop, low battery, a down
link or an MCU e-stop would stop them anyway, and the policy's modes while the policy is
not ready.

Operator presence (ArduPilot's ground-station failsafe): in autonomous and supervised,
when no operator has been heard for ``operator_timeout_s`` the mode drops to idle
("operator_lost", reason "no operator heard for 5.0 s"). The operator is heard by
``operator_seen`` (the runtime calls it for every operator message, heartbeats included)
and by every accepted command of a present operator: a request for autonomous or
supervised (entering them counts), ``teleop``, ``teleop_arm``, ``arm_jog``,
``acquire_lease``, ``renew_lease``, ``hand_back``. ``operator_timeout_s = 0`` turns the
rule off, for unattended runs that their config names.

``mode_reason`` says why the robot is in its mode, and ``decide``'s reason in a mode that
never drives is the same text: "idle" when the operator chose it, "<kind>: <reason>" of
the stop that forced it ("link_lost: link down", "operator_lost: no operator heard for
5.0 s", "mcu_estop: ..."), "e-stop engaged", or for low_battery what the battery is doing
and what clears it ("battery critical (latched by the MCU at 9700 mV; the pack is at
10000 mV): once it is above 10100 mV, ask for idle to clear the latch"). ``update`` takes
the pack's ``battery_mv`` and the MCU's ``battery_clear_mv`` for that text.

Time never runs backwards here: a ``now_s`` earlier than one already seen counts as the
latest seen (two asyncio tasks may read the clock in one order and call in the other).

Exceptions::

    SafetyError            anything a refused command raises
     +-- NotOwnerError     another client holds the lease / no take-over to hand back
     +-- ModeRefusedError  the mode does not allow it (reason in the message)
    ValueError             bad input: a non-finite number, a wrong arm length, bad config
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import SupportsFloat

__all__ = [
    "ARM_JOINTS",
    "BatteryLevel",
    "Decision",
    "DriveMode",
    "Lease",
    "ModeRefusedError",
    "NotOwnerError",
    "OperatorHeard",
    "Safety",
    "SafetyConfig",
    "SafetyError",
    "Transition",
]

ARM_JOINTS = 6  # base yaw, shoulder, elbow, wrist pitch, wrist roll, gripper (PROTOCOL.md)
NO_OWNER = "none"
POLICY = "policy"
_TRANSITIONS_KEPT = 1024  # a runtime that stops draining must not grow memory forever


class SafetyError(Exception):
    """Base of every refusal ``Safety`` raises."""


class NotOwnerError(SafetyError):
    """Another client holds the teleop lease (or the caller owns nothing to give back)."""


class ModeRefusedError(SafetyError):
    """The current mode or the robot's state does not allow the request."""


class DriveMode(StrEnum):
    IDLE = "idle"
    TELEOP = "teleop"
    AUTONOMOUS = "autonomous"
    SUPERVISED = "supervised"
    ESTOP = "estop"
    LOW_BATTERY = "low_battery"


DRIVING_MODES = frozenset({DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED})
POLICY_MODES = frozenset({DriveMode.AUTONOMOUS, DriveMode.SUPERVISED})
_CHOSEN = {DriveMode.IDLE: "idle", DriveMode.ESTOP: "e-stop engaged"}  # mode_reason
# Stops the stack did not choose: entering idle by one of these keeps "<kind>: <reason>".
_FORCED_IDLE = frozenset({"link_lost", "mcu_estop", "operator_lost", "lease_expired",
                          "lease_released", "model_faulty", "part_failed"})


class BatteryLevel(StrEnum):
    OK = "ok"
    LOW = "low"  # tracks derated
    CRITICAL = "critical"  # low_battery mode: tracks stopped


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None. Numpy scalars (a policy's output) pass; bool,
    str and complex do not."""
    if type(value) is float or type(value) is int:  # the common case, at every tick:
        number = float(value)  # skips the Protocol check, ~15 us a call
        return number if math.isfinite(number) else None
    if isinstance(value, bool | str | bytes | complex) or not isinstance(value, SupportsFloat):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _finite(name: str, value: object) -> float:
    number = _number(value)
    if number is None:
        raise ValueError(f"{name}={value!r} must be a finite number")
    return number


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    """Timeouts in seconds, speeds in mm/s, arm angles in 0.1 degree (servo angle)."""

    teleop_timeout_s: float = 0.3  # an operator command older than this stops the tracks
    policy_timeout_s: float = 0.3  # a policy step older than this stops the tracks
    lease_timeout_s: float = 0.5  # a driving client silent this long loses its lease
    max_track_mm_s: float = 600.0  # every track command is clamped to +- this
    low_battery_derate: float = 0.5  # track commands are scaled by this while battery LOW
    operator_timeout_s: float = 5.0  # autonomy with no operator heard this long -> idle;
    #                                  0 turns it off (unattended runs that the config names)
    arm_min_ddeg: tuple[int, ...] = (0,) * ARM_JOINTS  # per joint, within the MCU's 0..1800
    arm_max_ddeg: tuple[int, ...] = (1800,) * ARM_JOINTS

    def __post_init__(self) -> None:
        for name in ("teleop_timeout_s", "policy_timeout_s", "lease_timeout_s",
                     "max_track_mm_s"):
            value = _number(getattr(self, name))
            if value is None or value <= 0:
                raise ValueError(f"SafetyConfig.{name}={value!r} must be a positive number")
        operator = _number(self.operator_timeout_s)
        if operator is None or operator < 0:
            raise ValueError(f"SafetyConfig.operator_timeout_s={self.operator_timeout_s!r} "
                             "must be a finite number >= 0 (0: off)")
        derate = _number(self.low_battery_derate)
        if derate is None or not 0 < derate <= 1:
            raise ValueError(f"SafetyConfig.low_battery_derate={derate!r} must be in (0, 1]")
        for name in ("arm_min_ddeg", "arm_max_ddeg"):
            joints = tuple(getattr(self, name))  # TOML gives lists; keep the config hashable
            object.__setattr__(self, name, joints)
            if len(joints) != ARM_JOINTS or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1800
                for v in joints
            ):
                raise ValueError(f"SafetyConfig.{name}={joints!r} must be {ARM_JOINTS} "
                                 "integers in 0..1800")
        if any(lo > hi for lo, hi in zip(self.arm_min_ddeg, self.arm_max_ddeg, strict=True)):
            raise ValueError("SafetyConfig.arm_min_ddeg must not exceed arm_max_ddeg "
                             "for any joint")


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of mode or owner (or of the lease), as the runtime publishes it."""

    now_s: float
    kind: str  # mode, estop, estop_released, low_battery, link_lost, mcu_estop,
    #            operator_lost, takeover, handback, lease_acquired, lease_released,
    #            lease_expired
    from_mode: DriveMode
    to_mode: DriveMode
    owner: str  # the owner after the change: "none", "policy" or "teleop:<client>"
    source: str  # who caused it: the requester ("mqtt", a client), "battery", "link", ...
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    client: str
    expires_s: float  # unless renewed (any teleop command renews)


@dataclass(frozen=True, slots=True)
class OperatorHeard:
    """The last time an operator was heard (see the module doc: what counts)."""

    source: str  # the client or front end heard ("mqtt", "web-1", ...)
    heard_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    """What the tracks do this tick."""

    left_mm_s: int
    right_mm_s: int
    owner: str
    mode: DriveMode
    reason: str | None = None  # why the tracks are stopped; None while the owner drives
    derate: float = 1.0  # the battery derate applied (1.0: none)
    clamped: bool = False  # the owner asked for more than max_track_mm_s


@dataclass(frozen=True, slots=True)
class _Command:
    left_mm_s: float
    right_mm_s: float
    stamp_s: float
    owner: str  # who sent it: a command drives only while its sender owns the tracks


@dataclass(frozen=True, slots=True)
class _Jog:
    velocity: tuple[float, ...]  # per axis, units per second (the caller's axes)
    stamp_s: float
    client: str


class Safety:
    """The drive-mode state machine and the one gate to the motors (see the module doc)."""

    def __init__(self, config: SafetyConfig | None = None, *, now_s: float) -> None:
        self.config = config or SafetyConfig()
        self._now_s = _finite("now_s", now_s)
        self._mode = DriveMode.IDLE
        self._lease: Lease | None = None
        self._takeover: str | None = None  # the client that took over in supervised
        self._teleop: _Command | None = None
        self._policy: _Command | None = None
        self._jog: _Jog | None = None  # the arm jog in force (module doc)
        # The world as the last update() saw it; unsure until the first one.
        self._link_up = False
        self._battery = BatteryLevel.OK
        self._mcu_estop = False
        self._policy_ready = False
        self._policy_reason: str | None = "no update yet"
        self._battery_mv: int | None = None  # the pack, when the runtime knows it
        self._battery_clear_mv: int | None = None  # the MCU clears BATT_CRITICAL above this
        # Critical seen and not yet acknowledged by request_mode(idle); the pack then (mV).
        self._battery_latched = False
        self._battery_latched_mv: int | None = None
        self._operator: OperatorHeard | None = None
        self._mode_reason: str | None = _CHOSEN[DriveMode.IDLE]
        self._transitions: deque[Transition] = deque(maxlen=_TRANSITIONS_KEPT)

    # --- state ----------------------------------------------------------------------------

    @property
    def mode(self) -> DriveMode:
        return self._mode

    @property
    def owner(self) -> str:
        """Who may command the tracks now: "none", "policy" or "teleop:<client>"."""
        if self._mode is DriveMode.TELEOP:
            return f"teleop:{self._lease.client}" if self._lease else NO_OWNER
        if self._mode is DriveMode.AUTONOMOUS:
            return POLICY
        if self._mode is DriveMode.SUPERVISED:
            return f"teleop:{self._takeover}" if self._takeover else POLICY
        return NO_OWNER

    @property
    def lease(self) -> Lease | None:
        return self._lease

    @property
    def operator(self) -> OperatorHeard | None:
        """Who was heard last and when (None: nobody yet)."""
        return self._operator

    @property
    def mode_reason(self) -> str | None:
        """Why the robot is in its mode (None in a driving mode: the operator asked for it;
        ``decide`` says whether the tracks move). See the module doc for the texts."""
        if self._mode is DriveMode.LOW_BATTERY:
            return self._battery_advice()
        return self._mode_reason

    @property
    def transitions(self) -> list[Transition]:
        return list(self._transitions)

    def take_transitions(self) -> list[Transition]:
        """The transitions since the last call, oldest first."""
        taken = list(self._transitions)
        self._transitions.clear()
        return taken

    # --- operator -------------------------------------------------------------------------

    def request_mode(self, mode: DriveMode | str, *, source: str, now_s: float) -> None:
        """Switch modes; raises ``ModeRefusedError`` saying why not."""
        mode = DriveMode(mode)
        self._advance(now_s)
        if mode is DriveMode.ESTOP:
            self.engage_estop(source=source, now_s=now_s)
            return
        if mode is not self._mode:
            refusal = self._refusal(mode)
            if refusal:
                raise ModeRefusedError(f"{mode} refused: {refusal}")
            if self._mode is DriveMode.LOW_BATTERY:
                self._battery_latched = False  # the operator saw it; the MCU cleared its own
            self._set_mode(mode, "mode", source)
        if mode in POLICY_MODES:
            self._heard(source)  # entering autonomy (or asking for it again) is presence

    def stop_autonomy(self, *, kind: str, reason: str, source: str, now_s: float) -> None:
        """The stack stops autonomy on its own (``kind`` "model_faulty": the policy's
        outputs went bad; "part_failed": a runtime part failed): autonomous and supervised
        drop to idle, and ``mode_reason`` says "<kind>: <reason>". Other modes are left
        as they are (the operator or a stop is in charge)."""
        if kind not in _FORCED_IDLE:
            raise ValueError(f"kind={kind!r} is not a stop the stack forces")
        self._advance(now_s)
        if self._mode in POLICY_MODES:
            self._set_mode(DriveMode.IDLE, kind, source, reason)

    def operator_seen(self, *, source: str, now_s: float) -> None:
        """An operator was heard (a heartbeat, any message): autonomy may go on."""
        if not (isinstance(source, str) and source):
            raise ValueError(f"source={source!r} must be a non-empty string")
        self._advance(now_s)
        self._heard(source)

    def engage_estop(self, *, source: str, now_s: float) -> None:
        self._advance(now_s)
        if self._mode is not DriveMode.ESTOP:
            self._set_mode(DriveMode.ESTOP, "estop", source, f"engaged from {self._mode}")

    def release_estop(self, *, source: str, now_s: float) -> None:
        """Leave e-stop to idle (or low_battery if the battery is critical); no-op otherwise."""
        self._advance(now_s)
        if self._mode is DriveMode.ESTOP:
            self._set_mode(DriveMode.IDLE, "estop_released", source)
            self._check_battery()

    def acquire_lease(self, *, client: str, now_s: float) -> Lease:
        """Become the one driving client; ``NotOwnerError`` if another holds a live lease."""
        self._advance(now_s)
        self._claim(client)
        self._heard(client)
        assert self._lease is not None
        return self._lease

    def renew_lease(self, *, client: str, now_s: float) -> Lease:
        self._advance(now_s)
        self._check_holder(client)
        self._lease = Lease(client, self._now_s + self.config.lease_timeout_s)
        self._heard(client)
        return self._lease

    def release_lease(self, *, client: str, now_s: float) -> None:
        """Give the lease up (no-op without one); mid take-over this drops to idle."""
        self._advance(now_s)
        if self._lease is None:
            return
        self._check_holder(client)
        self._drop_lease("lease_released", client, "lease released")

    def teleop(self, *, left_mm_s: float, right_mm_s: float, client: str, now_s: float) -> None:
        """An operator's track command; in supervised the first one takes over."""
        left, right = _finite("left_mm_s", left_mm_s), _finite("right_mm_s", right_mm_s)
        self._advance(now_s)
        self._operate(client)
        self._teleop = _Command(left, right, self._now_s, f"teleop:{client}")
        self._heard(client)

    def teleop_arm(
        self, *, targets_ddeg: Sequence[float | None], client: str, now_s: float
    ) -> list[int | None]:
        """An operator's arm targets (None: leave that joint); returns them clamped."""
        if len(targets_ddeg) != ARM_JOINTS:
            raise ValueError(f"targets_ddeg needs {ARM_JOINTS} values, got {len(targets_ddeg)}")
        values = [None if t is None else _finite(f"targets_ddeg[{j}]", t)
                  for j, t in enumerate(targets_ddeg)]
        self._arm_command(client, now_s)
        lows, highs = self.config.arm_min_ddeg, self.config.arm_max_ddeg
        return [None if v is None else min(max(round(v), lo), hi)
                for v, lo, hi in zip(values, lows, highs, strict=True)]

    def arm_jog(
        self, *, velocity: Sequence[float], client: str, now_s: float
    ) -> tuple[float, ...]:
        """An operator's arm jog, ``velocity`` per axis (units/s) held until the next jog;
        refused where ``teleop_arm`` is. Returns the step to move now, per axis: the
        previous jog's velocity (this client's) times the time since it came, at most
        ``teleop_timeout_s``; zeros when there is none (module doc)."""
        values = tuple(_finite(f"velocity[{i}]", v) for i, v in enumerate(velocity))
        self._arm_command(client, now_s)
        held, self._jog = self._jog, _Jog(values, self._now_s, client)
        if held is None or held.client != client or len(held.velocity) != len(values):
            return (0.0,) * len(values)
        dt_s = min(self._now_s - held.stamp_s, self.config.teleop_timeout_s)
        return tuple(v * dt_s for v in held.velocity)

    def hand_back(self, *, client: str, now_s: float) -> None:
        """End a supervised take-over: the policy owns the tracks again."""
        self._advance(now_s)
        if self._mode is not DriveMode.SUPERVISED:
            raise ModeRefusedError(f"nothing to hand back in {self._mode}")
        if self._takeover != client:
            raise NotOwnerError(f"{client!r} has not taken over (owner {self.owner})")
        self._takeover = None
        self._teleop = self._policy = None  # the policy starts from a fresh step
        self._jog = None
        self._record("handback", self._mode, client)
        self._heard(client)

    # --- policy and world -----------------------------------------------------------------

    def policy_step(self, *, left_mm_s: float, right_mm_s: float, now_s: float) -> bool:
        """The policy's track command; False (ignored) unless the policy owns the tracks."""
        left, right = _finite("left_mm_s", left_mm_s), _finite("right_mm_s", right_mm_s)
        self._advance(now_s)
        if self.owner != POLICY or not self._policy_ready:
            return False
        self._policy = _Command(left, right, self._now_s, POLICY)
        return True

    def update(
        self,
        *,
        now_s: float,
        link_up: bool,
        battery: BatteryLevel | str,
        estop_latched_on_mcu: bool,
        policy_ready: bool,
        policy_reason: str | None = None,
        battery_mv: float | None = None,
        battery_clear_mv: float | None = None,
    ) -> None:
        """The world this tick: link, battery, MCU e-stop latch, policy readiness; the
        pack's voltage and the MCU's BATT_CRITICAL clear threshold (mV, None: unknown)
        only word what low_battery tells the operator."""
        battery = BatteryLevel(battery)
        pack_mv = None if battery_mv is None else round(_finite("battery_mv", battery_mv))
        clear_mv = (None if battery_clear_mv is None
                    else round(_finite("battery_clear_mv", battery_clear_mv)))
        self._advance(now_s)
        self._battery = battery
        self._battery_mv, self._battery_clear_mv = pack_mv, clear_mv
        if battery is BatteryLevel.CRITICAL and not self._battery_latched:
            self._battery_latched, self._battery_latched_mv = True, pack_mv
        self._policy_ready = bool(policy_ready)
        self._policy_reason = None if policy_ready else (policy_reason or "policy not ready")
        if not self._policy_ready:
            self._policy = None  # a step planned on stale input must not drive later
        for lost, was, kind, source, reason in (
            (not link_up, not self._link_up, "link_lost", "link", "link down"),
            (estop_latched_on_mcu, self._mcu_estop, "mcu_estop", "mcu",
             "e-stop latched on the MCU"),
        ):
            if lost and not was:
                self._teleop = self._policy = self._jog = None
                if self._mode in POLICY_MODES:
                    self._set_mode(DriveMode.IDLE, kind, source, reason)
        self._link_up, self._mcu_estop = bool(link_up), bool(estop_latched_on_mcu)
        self._check_battery()

    def decide(self, *, now_s: float) -> Decision:
        """The tracks' command this tick (see the module doc for the rules)."""
        self._advance(now_s)
        owner, mode, cfg = self.owner, self._mode, self.config
        derate = cfg.low_battery_derate if self._battery is BatteryLevel.LOW else 1.0
        policy = owner == POLICY
        command = self._policy if policy else self._teleop
        who = "policy" if policy else "teleop"
        timeout_s = cfg.policy_timeout_s if policy else cfg.teleop_timeout_s
        # The first that applies, in this order, stops the tracks.
        stops = (
            None if mode in DRIVING_MODES else self.mode_reason or mode.value,
            self._world_stop(),
            "no teleop client holds the lease" if owner == NO_OWNER else None,
            (self._policy_reason or "policy not ready") if policy and not self._policy_ready
            else None,
            f"no {who} command yet" if command is None or command.owner != owner else None,
            f"{who} command timed out"
            if command is not None and self._now_s - command.stamp_s > timeout_s else None,
        )
        reason = next((r for r in stops if r), None)
        if reason is not None or command is None:
            return Decision(0, 0, owner, mode, reason or "no command", derate)
        limit = cfg.max_track_mm_s
        clamped = max(abs(command.left_mm_s), abs(command.right_mm_s)) > limit
        left, right = (int(min(max(v, -limit), limit) * derate)
                       for v in (command.left_mm_s, command.right_mm_s))
        return Decision(left, right, owner, mode, None, derate, clamped)

    # --- internals ------------------------------------------------------------------------

    def _advance(self, now_s: float) -> None:
        """Move the clock (never backwards) and expire a lease not renewed in time."""
        self._now_s = max(self._now_s, _finite("now_s", now_s))
        if self._lease is not None and self._now_s > self._lease.expires_s:
            self._drop_lease("lease_expired", "lease", f"{self._lease.client!r} went silent")
        timeout_s = float(self.config.operator_timeout_s)
        heard = self._operator
        if (timeout_s > 0 and self._mode in POLICY_MODES
                and (heard is None or self._now_s - heard.heard_s > timeout_s)):
            self._set_mode(DriveMode.IDLE, "operator_lost", "operator",
                           f"no operator heard for {timeout_s} s")

    def _heard(self, source: str) -> None:
        self._operator = OperatorHeard(source, self._now_s)

    def _drop_lease(self, kind: str, source: str, reason: str) -> None:
        assert self._lease is not None
        client, self._lease = self._lease.client, None
        if self._mode is DriveMode.TELEOP:
            self._teleop = None
        self._jog = None
        if self._mode is DriveMode.SUPERVISED and self._takeover == client:
            # The operator left mid take-over: stop, rather than hand the robot back.
            self._set_mode(DriveMode.IDLE, kind, source, reason + " during take-over")
        else:
            self._record(kind, self._mode, source, reason)

    def _claim(self, client: str) -> None:
        """Take or renew the lease for ``client``; NotOwnerError if another holds it."""
        if not (isinstance(client, str) and client):
            raise ValueError(f"client={client!r} must be a non-empty string")
        held = self._lease
        if held is not None and held.client != client:
            raise NotOwnerError(f"{held.client!r} holds the teleop lease")
        self._lease = Lease(client, self._now_s + self.config.lease_timeout_s)
        if held is None:
            self._record("lease_acquired", self._mode, client)

    def _check_holder(self, client: str) -> None:
        if self._lease is None or self._lease.client != client:
            holder = self._lease.client if self._lease else None
            raise NotOwnerError(f"{client!r} does not hold the teleop lease (holder {holder!r})")

    def _operate(self, client: str) -> None:
        """Check that ``client`` may command the motors now; take over in supervised."""
        mode = self._mode
        if mode not in (DriveMode.TELEOP, DriveMode.SUPERVISED):
            why = {DriveMode.AUTONOMOUS: "the policy drives; switch to supervised to take over",
                   DriveMode.ESTOP: "e-stop engaged",
                   DriveMode.LOW_BATTERY: self._battery_advice(),
                   DriveMode.IDLE: "idle; ask for teleop or supervised first"}[mode]
            raise ModeRefusedError(f"teleop refused in {mode}: {why}")
        self._claim(client)
        if mode is DriveMode.SUPERVISED and self._takeover is None:
            self._takeover = client
            self._policy = None
            self._record("takeover", mode, client)

    def _arm_command(self, client: str, now_s: float) -> None:
        """The gate every arm command passes (targets and jogs alike): refused while the
        world stops the robot, else ``client`` operates (``_operate``) and is heard."""
        self._advance(now_s)
        stop = self._world_stop()
        if stop:
            raise ModeRefusedError(f"arm refused: {stop}")
        self._operate(client)
        self._heard(client)

    def _world_stop(self) -> str | None:
        if not self._link_up:
            return "link down"
        if self._mcu_estop:
            return "e-stop latched on the MCU"
        return None

    def _refusal(self, mode: DriveMode) -> str | None:
        """Why ``mode`` cannot be entered now (None: it can); the first that applies."""
        here, battery = self._mode, self._battery
        driving = mode in DRIVING_MODES
        refusals = (
            "e-stop engaged; release it first (to idle)" if here is DriveMode.ESTOP else None,
            "low_battery is entered by the battery monitor only"
            if mode is DriveMode.LOW_BATTERY else None,
            self._battery_advice()
            if here is DriveMode.LOW_BATTERY and battery is BatteryLevel.CRITICAL else None,
            "the battery was critical; ask for idle first"
            if here is DriveMode.LOW_BATTERY and mode is not DriveMode.IDLE else None,
            "battery critical" if driving and battery is BatteryLevel.CRITICAL else None,
            self._world_stop() if driving else None,
            f"policy not ready: {self._policy_reason}"
            if mode in POLICY_MODES and not self._policy_ready else None,
        )
        return next((r for r in refusals if r), None)

    def _battery_advice(self) -> str:
        """What low_battery tells the operator: the battery's state and what clears it."""
        pack_mv, clear_mv = self._battery_mv, self._battery_clear_mv
        latched_mv = self._battery_latched_mv
        if self._battery is not BatteryLevel.CRITICAL:
            now = "" if pack_mv is None else f" (the pack is at {pack_mv} mV)"
            return f"battery was critical, the MCU's latch is clear{now}: ask for idle"
        facts = ["latched by the MCU" + ("" if latched_mv is None else f" at {latched_mv} mV")]
        if pack_mv is not None:
            facts.append(f"the pack is at {pack_mv} mV"
                         + (f", above the {clear_mv} mV that clears it"
                            if clear_mv is not None and pack_mv > clear_mv else ""))
        if clear_mv is not None and (pack_mv is None or pack_mv <= clear_mv):
            todo = f"once it is above {clear_mv} mV, ask for idle to clear the latch"
        elif clear_mv is not None:
            todo = "ask for idle to clear the latch"
        else:
            todo = "once the pack has recovered (charge or swap it), ask for idle to clear it"
        return f"battery critical ({'; '.join(facts)}): {todo}"

    def _check_battery(self) -> None:
        latched = self._battery is BatteryLevel.CRITICAL or self._battery_latched
        if latched and self._mode not in (DriveMode.ESTOP, DriveMode.LOW_BATTERY):
            self._set_mode(DriveMode.LOW_BATTERY, "low_battery", "battery", "battery critical")

    def _set_mode(self, mode: DriveMode, kind: str, source: str, reason: str | None = None) -> None:
        """Change mode: every pending command and any take-over are forgotten."""
        was = self._mode
        self._mode = mode
        self._takeover = None
        self._teleop = self._policy = self._jog = None
        self._mode_reason = (f"{kind}: {reason}" if kind in _FORCED_IDLE and reason
                             else _CHOSEN.get(mode))
        self._record(kind, was, source, reason)

    def _record(self, kind: str, was: DriveMode, source: str, reason: str | None = None) -> None:
        self._transitions.append(
            Transition(self._now_s, kind, was, self._mode, self.owner, source, reason)
        )
