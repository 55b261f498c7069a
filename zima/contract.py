"""The observation/action contract: the one place that says what a policy sees and does.

The simulator renders it, the recorder stores it, training builds tensors from it,
export writes it into the ONNX file's metadata, and the onboard runtime refuses a model
whose contract differs from its own. Nothing else in the stack repeats these numbers.

Observation, for a contract ``c`` (B = batch):

    images          uint8   [B, len(c.cameras) * c.image_history, c.image_height, c.image_width, 3]
                    RGB, camera-major then oldest-to-newest: index cam * image_history + t,
                    t = image_history - 1 being the newest frame
    action_history  int64   [B, c.action_history]  indices into c.actions, oldest first;
                    STOP fills the history at the start of an episode

Action: the policy predicts a chunk of ``c.chunk_len`` discrete actions (logits
[B, c.chunk_len, len(c.actions)]); the runtime executes the first ``k`` of them, one
every ``1 / c.control_hz`` seconds, then plans again (partial chunk execution). Each
action drives its :meth:`Contract.track_command`. An operator's track command is
recorded as the action :func:`nearest_action` gives it (its speeds go in the episode's
telemetry).

The arm (optional: ``c.arm_dims`` is 0 for the find task, and then nothing below exists
and the contract's JSON is what it was before the arm). With ``c.arm_dims`` = 6 each chunk
step also carries an arm action: per jog dimension (:data:`ARM_AXES`: the tool's x, y, z,
pitch and roll in the ``arm_base`` frame, the gripper's opening) one bin of
``c.arm_jog_levels``, fractions of that dimension's jog limit (the console's jog,
``zima.onboard.commands.ARM_JOG_LIMITS``), held for one action period::

    arm_state       float32 [B, ARM_STATE_DIMS]  input: the commanded tool pose and the
                    gripper's opening when the frames were taken (m, rad, m;
                    :data:`ARM_STATE_FIELDS`)
    arm_logits      float32 [B, c.chunk_len, c.arm_dims, len(c.arm_jog_levels)]  output

Per-dimension bins (6 x 5 logits) rather than one class per combination (5^6 = 15625) or
a few scripted primitives: each dimension is its own small classification, the console
and the policy share one action vocabulary and one safety path, and the discrete head the
project kept for driving (sampled, guarded, chunked) carries over unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from typing import Final

from zima.bounded import InputError, parse_json_bounded


class Action(IntEnum):
    """The discrete actions, in logit order."""

    STOP = 0
    FORWARD = 1
    LEFT = 2  # turn in place, counter-clockwise seen from above
    RIGHT = 3  # turn in place, clockwise


@dataclass(frozen=True, slots=True)
class TrackCommand:
    """Track velocity targets for one action, mm/s (what DRIVE carries)."""

    left_mm_s: int
    right_mm_s: int


@dataclass(frozen=True, slots=True)
class Contract:
    """Shapes, rates and meanings shared by sim, training, export and the runtime."""

    # Camera names, in the order their frames are stacked.
    cameras: tuple[str, ...] = ("forward", "wrist")
    # Policy input size after the centre crop and resize, pixels.
    image_height: int = 96
    image_width: int = 128
    # Frames per camera in one observation, newest last.
    image_history: int = 2
    # Seconds between the frames of the image history (and between policy steps).
    frame_interval_s: float = 0.1
    # Past executed actions fed back to the policy.
    action_history: int = 4
    # Actions predicted per inference.
    chunk_len: int = 4
    # Actions executed per second.
    control_hz: float = 10.0
    # Action names in logit order (Action's members).
    actions: tuple[str, ...] = field(default=tuple(a.name.lower() for a in Action))
    # Track speeds of FORWARD and of the turns in place, mm/s.
    forward_mm_s: int = 300
    turn_mm_s: int = 150
    # Arm jog dimensions per chunk step: 0 (no arm head) or len(ARM_AXES).
    arm_dims: int = 0
    # The arm's bins: fractions of each dimension's jog limit, ascending, 0.0 among them
    # (hold); () without an arm head.
    arm_jog_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        positive = ("image_height", "image_width", "image_history", "chunk_len", "control_hz")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"contract: {name} must be positive, got {getattr(self, name)}")
        if self.action_history < 0:
            raise ValueError(f"contract: action_history must be >= 0, got {self.action_history}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"contract: cameras must be distinct and non-empty: {self.cameras}")
        if self.actions != tuple(a.name.lower() for a in Action):
            raise ValueError(f"contract: actions must be {[a.name.lower() for a in Action]}")
        self._check_arm()

    def _check_arm(self) -> None:
        levels = self.arm_jog_levels
        if self.arm_dims == 0:
            if levels:
                raise ValueError("contract: arm_jog_levels without an arm head (arm_dims 0)")
            return
        if self.arm_dims != len(ARM_AXES):
            raise ValueError(f"contract: arm_dims must be 0 or {len(ARM_AXES)} "
                             f"({', '.join(ARM_AXES)}), got {self.arm_dims}")
        if (len(levels) < 2 or 0.0 not in levels or any(not -1.0 <= v <= 1.0 for v in levels)
                or list(levels) != sorted(set(levels))):
            raise ValueError("contract: arm_jog_levels must be two or more distinct ascending "
                             f"fractions in [-1, 1], 0.0 among them, got {levels}")

    # --- derived shapes -----------------------------------------------------------------

    @property
    def n_images(self) -> int:
        """Images in one observation: every camera's history."""
        return len(self.cameras) * self.image_history

    @property
    def newest_images(self) -> tuple[int, ...]:
        """Index in an observation's images of each camera's newest frame, camera order."""
        return tuple(i * self.image_history + self.image_history - 1
                     for i in range(len(self.cameras)))

    @property
    def image_shape(self) -> tuple[int, int, int, int]:
        """Shape of one observation's images (no batch): [N, H, W, 3], uint8 RGB."""
        return (self.n_images, self.image_height, self.image_width, 3)

    @property
    def n_actions(self) -> int:
        """Number of discrete actions (logits per chunk step)."""
        return len(self.actions)

    @property
    def n_arm_levels(self) -> int:
        """Bins per arm jog dimension (0 without an arm head)."""
        return len(self.arm_jog_levels)

    @property
    def arm_hold_bin(self) -> int:
        """The bin that holds a dimension still (its level is 0)."""
        if not self.arm_dims:
            raise ValueError("contract: no arm head (arm_dims 0)")
        return self.arm_jog_levels.index(0.0)

    def track_command(self, action: Action | int) -> TrackCommand:
        """The track velocity targets that carry out ``action``."""
        match Action(action):
            case Action.STOP:
                return TrackCommand(0, 0)
            case Action.FORWARD:
                return TrackCommand(self.forward_mm_s, self.forward_mm_s)
            case Action.LEFT:
                return TrackCommand(-self.turn_mm_s, self.turn_mm_s)
            case Action.RIGHT:
                return TrackCommand(self.turn_mm_s, -self.turn_mm_s)

    # --- metadata (ONNX files, HDF5 episodes, checkpoints) ------------------------------

    def to_json(self) -> str:
        """Canonical JSON text of every field (sorted keys): stored beside models and data.
        Without an arm head the arm's fields are left out: the text is the one every
        model and episode file made before the arm carries."""
        data = asdict(self)
        if not self.arm_dims:
            del data["arm_dims"], data["arm_jog_levels"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        """The contract stored by :meth:`to_json`; a clear ``ValueError`` when malformed."""
        try:  # bounded: a model or episode file's metadata is outside input
            data = parse_json_bounded(text.encode("utf-8", "surrogatepass"),
                                      max_bytes=MAX_CONTRACT_JSON_BYTES, max_depth=4,
                                      what="contract metadata")
        except InputError as exc:
            raise ValueError(f"contract metadata is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("contract metadata must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"contract metadata has unknown fields: {sorted(unknown)}")
        for name in ("cameras", "actions", "arm_jog_levels"):
            if name in data:
                if not isinstance(data[name], list):
                    raise ValueError(f"contract metadata: {name} must be a list")
                data[name] = tuple(data[name])
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"contract metadata is malformed: {exc}") from exc

    def mismatches(self, other: Contract) -> list[str]:
        """Human-readable differences, e.g. ``["chunk_len: model 8, runtime 4"]``."""
        return [
            f"{f.name}: model {getattr(other, f.name)!r}, runtime {getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


MAX_CONTRACT_JSON_BYTES: Final = 64 * 1024  # a contract's JSON is ~500 bytes
STOP_DEADBAND_MM_S: Final = 20
"""Track speeds up to this (both tracks, mm/s) count as STOP in :func:`nearest_action`."""


def nearest_action(left_mm_s: float, right_mm_s: float,
                   deadband_mm_s: float = STOP_DEADBAND_MM_S) -> Action:
    """The discrete action a track command stands for: STOP inside the dead band, else a
    turn in place when turning dominates driving (|right - left| > |right + left|), else
    FORWARD, or STOP when driving backwards (the contract has no reverse action)."""
    if abs(left_mm_s) <= deadband_mm_s and abs(right_mm_s) <= deadband_mm_s:
        return Action.STOP
    forward, turn = (left_mm_s + right_mm_s) / 2, (right_mm_s - left_mm_s) / 2
    if abs(turn) > abs(forward):
        return Action.LEFT if turn > 0 else Action.RIGHT
    return Action.FORWARD if forward > 0 else Action.STOP


METADATA_KEY: Final = "zima_contract"
"""Key of the contract's JSON in ONNX metadata_props, HDF5 attributes and checkpoints."""

ARM_AXES: Final = ("x", "y", "z", "pitch", "roll", "gripper")
"""The arm's jog dimensions in logit order (zima.onboard.commands.JOG_KEYS' order)."""
ARM_STATE_FIELDS: Final = ("x_m", "y_m", "z_m", "pitch_rad", "roll_rad", "gripper_m")
"""The ``arm_state`` input: the commanded tool pose (``arm_base`` frame) and opening."""
ARM_STATE_DIMS: Final = len(ARM_STATE_FIELDS)
ARM_JOG_LEVELS: Final = (-1.0, -0.2, 0.0, 0.2, 1.0)
"""The pick task's bins: fast and slow either way, and hold. Per 0.1 s step: 15 mm / 3 mm,
0.1 / 0.02 rad, gripper 5 / 1 mm; the slow bin places the fingers within 1.5 mm, a sixth
of the 9 mm they have to spare around the 25 mm cube."""

DEFAULT: Final = Contract()
"""The contract of this build of Zima: the find task's (no arm head)."""
PICK: Final = Contract(arm_dims=len(ARM_AXES), arm_jog_levels=ARM_JOG_LEVELS)
"""The pick-up task's: the find task's and the arm head."""
CONTRACTS: Final = {"find": DEFAULT, "pick": PICK}
"""The contract of each task, by the name configs and commands use."""
