"""The LeRobot dataset layout (v3.0, and v2.1 for reading) and how Zima's episodes map onto it.

Paths and field names are those of LeRobot's own writer (``lerobot.datasets.utils``:
``DEFAULT_DATA_PATH``, ``DEFAULT_VIDEO_PATH``, ``DEFAULT_EPISODES_PATH``,
``create_empty_dataset_info``; the v2.1 names from its ``convert_dataset_v21_to_v30``)::

    meta/info.json                                   codebase_version, fps, features, ...
    meta/stats.json                                  per feature: min max mean std count q01..q99
    meta/tasks.parquet                               task (the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode (see below)
    data/chunk-000/file-000.parquet                  one row per frame
    videos/<video key>/chunk-000/file-000.mp4        every episode of one camera, end to end

A Zima episode's step ``t`` is LeRobot frame ``t`` of that episode (features, for a
contract ``c``; H x W = its image size)::

    observation.images.<camera>  video    [H, W, 3]  every contract camera
    observation.state            float32  [2]        track command in force when the frames
                                                     were taken (the previous executed
                                                     action's; STOP at t = 0), mm/s
    action                       float32  [2]        the demonstrator's label (expert_action)
                                                     as the track command that carries it
                                                     out, left then right, mm/s: what a
                                                     LeRobot policy (ACT, diffusion) learns
    zima.expert_action           int64    [1]        that label as an index into c.actions
    zima.executed_action         int64    [1]        the action the robot executed
    zima.operator_takeover       bool     [1]        an operator chose the executed action
    zima.timestamp_s             float64  [1]        the capture time the episode recorded
                                                     (LeRobot's ``timestamp`` is t / fps)
    zima.telemetry.<name>        float32  [1]        telemetry every exported episode has

Each episode's row in ``meta/episodes`` also carries ``zima/<attribute>`` columns (file
name, source, scene, seed, outcome, ..., extras as JSON), and ``meta/zima_contract.json``
holds the contract; LeRobot readers ignore both, Zima's import restores them.

Errors::

    LeRobotError
    |-- LeRobotFormatError   not a LeRobot dataset of a version read here, or inconsistent:
    |                        bad info.json, missing files, video frames != parquet rows,
    |                        episode indices not contiguous
    +-- ContractFitError     a sound dataset whose features do not fit the Zima contract
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from zima.bounded import InputError, parse_json_bounded
from zima.contract import Contract

CODEBASE_VERSION: Final = "v3.0"
READ_VERSIONS: Final = ("v3.0", "v2.1")
CHUNKS_SIZE: Final = 1000  # files per chunk folder (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILES_SIZE_MB: Final = 100  # LeRobot starts a new data file past this size
VIDEO_FILES_SIZE_MB: Final = 200  # and a new video file past this one

INFO_PATH: Final = "meta/info.json"
STATS_PATH: Final = "meta/stats.json"
TASKS_PATH: Final = "meta/tasks.parquet"
CONTRACT_PATH: Final = "meta/zima_contract.json"
CHUNK_FILE: Final = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH: Final = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH: Final = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH: Final = "meta/episodes/" + CHUNK_FILE + ".parquet"
# v2.1: one parquet file and one MP4 per episode, JSON-lines metadata.
V21_EPISODES_PATH: Final = "meta/episodes.jsonl"
V21_TASKS_PATH: Final = "meta/tasks.jsonl"

# The columns LeRobot adds to every frame (its DEFAULT_FEATURES).
DEFAULT_FEATURES: Final[dict[str, dict[str, Any]]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

STATE: Final = "observation.state"
ACTION: Final = "action"
EXPERT: Final = "zima.expert_action"
EXECUTED: Final = "zima.executed_action"
TAKEOVER: Final = "zima.operator_takeover"
TIMESTAMP_S: Final = "zima.timestamp_s"
TELEMETRY_PREFIX: Final = "zima.telemetry."
TRACK_NAMES: Final = ["left_mm_s", "right_mm_s"]
TASK: Final = "search for the target object and drive to it"
ROBOT_TYPE: Final = "zima"

MAX_INFO_BYTES: Final = 1 << 20  # a real info.json is a few kB
MAX_FEATURES: Final = 256


class LeRobotError(Exception):
    """Base of this package's LeRobot errors."""


class LeRobotFormatError(LeRobotError, ValueError):
    """Not a readable LeRobot dataset, or one whose files disagree with each other."""


class ContractFitError(LeRobotError, ValueError):
    """A LeRobot dataset whose features do not fit the Zima contract."""


def image_key(camera: str) -> str:
    """The LeRobot feature of a contract camera."""
    return f"observation.images.{camera}"


def zima_features(contract: Contract, telemetry: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """The ``features`` of info.json for episodes of ``contract`` (no video ``info`` yet)."""
    fps = int(contract.control_hz)
    frame = [contract.image_height, contract.image_width, 3]
    features: dict[str, dict[str, Any]] = {
        image_key(cam): {"dtype": "video", "shape": frame,
                         "names": ["height", "width", "channels"]} for cam in contract.cameras}
    features |= {
        STATE: {"dtype": "float32", "shape": [2], "names": list(TRACK_NAMES)},
        ACTION: {"dtype": "float32", "shape": [2], "names": list(TRACK_NAMES)},
        EXPERT: {"dtype": "int64", "shape": [1], "names": list(contract.actions)},
        EXECUTED: {"dtype": "int64", "shape": [1], "names": list(contract.actions)},
        TAKEOVER: {"dtype": "bool", "shape": [1], "names": None},
        TIMESTAMP_S: {"dtype": "float64", "shape": [1], "names": None},
        **{TELEMETRY_PREFIX + name: {"dtype": "float32", "shape": [1], "names": None}
           for name in telemetry},
    }
    for ft in features.values():
        if ft["dtype"] != "video":
            ft["fps"] = fps
    return features | {k: {**v, "fps": fps} for k, v in DEFAULT_FEATURES.items()}


# --- info.json: outside input -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Feature:
    """One entry of info.json's ``features``."""

    dtype: str  # "video", "image", "float32", "int64", "bool", "string", ...
    shape: tuple[int, ...]
    names: Any  # a list of names, a dict of lists, or None: LeRobot leaves it free


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What Zima's import needs from a dataset's meta/info.json."""

    codebase_version: str  # one of READ_VERSIONS
    fps: float
    features: dict[str, Feature]
    total_episodes: int
    total_frames: int
    chunks_size: int
    data_path: str
    video_path: str | None
    robot_type: str | None


def parse_info(raw: bytes, where: str = INFO_PATH) -> DatasetInfo:
    """meta/info.json from any bytes: a :class:`DatasetInfo`, or ``LeRobotFormatError``
    saying what is wrong (size, nesting, JSON, a missing or mistyped field)."""
    try:
        value = parse_json_bounded(raw, max_bytes=MAX_INFO_BYTES, max_depth=8, what=where)
    except InputError as exc:
        raise LeRobotFormatError(str(exc)) from None
    if not isinstance(value, dict):
        raise LeRobotFormatError(f"{where}: not a JSON object")
    version = _field(value, "codebase_version", str, where)
    if version not in READ_VERSIONS:
        raise LeRobotFormatError(f"{where}: codebase_version {version[:32]!r}; Zima reads "
                                 f"LeRobot datasets of {' and '.join(READ_VERSIONS)}")
    fps = _field(value, "fps", (int, float), where)
    if not math.isfinite(fps) or fps <= 0:
        raise LeRobotFormatError(f"{where}: fps must be positive, got {fps}")
    raw_features = _field(value, "features", dict, where)
    if len(raw_features) > MAX_FEATURES:
        raise LeRobotFormatError(f"{where}: {len(raw_features)} features (at most "
                                 f"{MAX_FEATURES} read)")
    features = {str(k)[:200]: _feature(k, v, where) for k, v in raw_features.items()}
    counts = [_field(value, name, int, where)
              for name in ("total_episodes", "total_frames", "chunks_size")]
    if min(counts) < 0 or counts[2] == 0:
        raise LeRobotFormatError(f"{where}: total_episodes, total_frames must be >= 0 and "
                                 f"chunks_size > 0, got {counts}")
    video_path = value.get("video_path")
    robot_type = value.get("robot_type")
    if video_path is not None and not isinstance(video_path, str):
        raise LeRobotFormatError(f"{where}: video_path must be a string or null")
    if robot_type is not None and not isinstance(robot_type, str):
        raise LeRobotFormatError(f"{where}: robot_type must be a string or null")
    return DatasetInfo(version, float(fps), features, counts[0], counts[1], counts[2],
                       _field(value, "data_path", str, where), video_path, robot_type)


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise LeRobotFormatError(f"{where}: no {name!r} field")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LeRobotFormatError(f"{where}: {name!r} is {type(value).__name__} "
                                 f"{str(value)[:40]}, not {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def _feature(key: object, value: object, where: str) -> Feature:
    at = f"{where}: feature {str(key)[:64]!r}"
    if not isinstance(value, dict):
        raise LeRobotFormatError(f"{at} is not an object")
    dtype = _field(value, "dtype", str, at)
    shape = _field(value, "shape", list, at)
    if (len(shape) > 8 or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n
                                  < 1 << 20 for n in shape)):
        raise LeRobotFormatError(f"{at}: shape {str(shape)[:64]} is not a list of sizes")
    return Feature(dtype[:32], tuple(shape), value.get("names"))
