"""Reading a LeRobot dataset's structure (v3.0 and v2.1), checked whole, as outside input.

:func:`open_dataset` reads the metadata before anything else is done with it: info.json
through a bounded parser (:func:`zima.ecosystem.lerobot_layout.parse_info`), path
templates limited to LeRobot's fields and to the dataset's folder, episode indices
0..E-1 in order, each episode's rows right after the previous one's, totals equal to
info.json's, and every video with as many frames as the data has rows for the episodes
in it. Any failure is one ``LeRobotFormatError`` naming the file and what is wrong.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zima.bounded import InputError, parse_json_bounded
from zima.ecosystem import lerobot_layout as layout
from zima.ecosystem.lerobot_video import count_frames

PARQUET_DAMAGE: Final = (pa.ArrowException, OSError, ValueError, KeyError, TypeError,
                         IndexError)


@dataclass(frozen=True, slots=True)
class EpisodeRef:
    """Where one episode's rows and frames lie."""

    index: int
    length: int
    data_path: Path
    first_row: int  # global index of its first frame (dataset_from_index)
    videos: dict[str, tuple[Path, float]]  # video key -> (file, from_timestamp s)
    attrs: dict[str, Any]  # the zima/* columns of an export, {} for other datasets


@dataclass(frozen=True, slots=True)
class Dataset:
    """A checked LeRobot dataset: its info and episodes in index order."""

    root: Path
    info: layout.DatasetInfo
    episodes: tuple[EpisodeRef, ...]
    contract_json: str | None  # meta/zima_contract.json of a Zima export


def open_dataset(root: Path, *, check_videos: bool = True) -> Dataset:
    """Read and check ``root``'s metadata (and video frame counts); LeRobotFormatError."""
    info_path = root / layout.INFO_PATH
    if not info_path.is_file():
        raise layout.LeRobotFormatError(f"{root}: no {layout.INFO_PATH}; not a LeRobot dataset")
    info = layout.parse_info(_read_bytes(info_path, layout.MAX_INFO_BYTES), str(info_path))
    if info.codebase_version == "v3.0":
        episodes = _episodes_v30(root, info)
    else:
        episodes = _episodes_v21(root, info)
    if len(episodes) != info.total_episodes:
        raise layout.LeRobotFormatError(f"{root}: {len(episodes)} episodes, info.json says "
                                        f"{info.total_episodes}")
    if sum(e.length for e in episodes) != info.total_frames:
        raise layout.LeRobotFormatError(f"{root}: episodes hold {sum(e.length for e in episodes)} "
                                        f"frames, info.json says {info.total_frames}")
    if check_videos:
        _check_video_counts(info, episodes)
    contract_file = root / layout.CONTRACT_PATH
    text = _read_bytes(contract_file, 65536).decode("utf-8", "replace") if (
        contract_file.is_file()) else None
    return Dataset(root, info, tuple(episodes), text)


# --- v3.0 and v2.1 metadata --------------------------------------------------------------


def _episodes_v30(root: Path, info: layout.DatasetInfo) -> list[EpisodeRef]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise layout.LeRobotFormatError(f"{root}: no meta/episodes/*/*.parquet")
    rows = [r for f in files for r in read_table(f).to_pylist()]
    rows.sort(key=_episode_order)
    data_t = _template(info.data_path, {"chunk_index", "file_index"}, "data_path")
    video_t = (_template(info.video_path, {"video_key", "chunk_index", "file_index"},
                         "video_path") if info.video_path else None)
    out: list[EpisodeRef] = []
    for i, row in enumerate(rows):
        where = f"{root}: meta/episodes row of episode {i}"
        index = _int(row, "episode_index", where)
        if index != i:
            raise layout.LeRobotFormatError(f"{root}: episode indices are not contiguous from 0: "
                                            f"found {index} where {i} was due")
        length, first = _int(row, "length", where), _int(row, "dataset_from_index", where)
        if _int(row, "dataset_to_index", where) - first != length or length < 1:
            raise layout.LeRobotFormatError(f"{where}: dataset_to_index - dataset_from_index "
                                            f"is not its length {length} (>= 1)")
        expected_first = out[-1].first_row + out[-1].length if out else 0
        if first != expected_first:
            raise layout.LeRobotFormatError(f"{where}: its rows start at {first}, not right after "
                                            f"the previous episode's ({expected_first})")
        videos = {}
        for key in _video_keys(info):
            if video_t is None:
                raise layout.LeRobotFormatError(f"{root}: video features but no video_path")
            rel = video_t.format(video_key=key, chunk_index=_int(row, f"videos/{key}/chunk_index",
                                                                 where),
                                 file_index=_int(row, f"videos/{key}/file_index", where))
            videos[key] = (_inside(root, rel), _float(row, f"videos/{key}/from_timestamp", where))
        rel = data_t.format(chunk_index=_int(row, "data/chunk_index", where),
                            file_index=_int(row, "data/file_index", where))
        attrs = {k.removeprefix("zima/"): v for k, v in row.items() if k.startswith("zima/")}
        out.append(EpisodeRef(i, length, _inside(root, rel), first, videos, attrs))
    return out


def _episodes_v21(root: Path, info: layout.DatasetInfo) -> list[EpisodeRef]:
    path = root / layout.V21_EPISODES_PATH
    if not path.is_file():
        raise layout.LeRobotFormatError(f"{root}: no {layout.V21_EPISODES_PATH}")
    lines = _read_bytes(path, 64 << 20).splitlines()
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                value = parse_json_bounded(line, max_bytes=1 << 20, max_depth=8,
                                           what=f"{path} line {n}")
            except InputError as exc:
                raise layout.LeRobotFormatError(str(exc)) from None
            if not isinstance(value, dict):
                raise layout.LeRobotFormatError(f"{path} line {n}: not a JSON object")
            rows.append(value)
    rows.sort(key=_episode_order)
    data_t = _template(info.data_path, {"episode_chunk", "episode_index"}, "data_path")
    video_t = (_template(info.video_path, {"episode_chunk", "video_key", "episode_index"},
                         "video_path") if info.video_path else None)
    out: list[EpisodeRef] = []
    first = 0
    for i, row in enumerate(rows):
        where = f"{path}: episode {i}"
        index, length = _int(row, "episode_index", where), _int(row, "length", where)
        if index != i:
            raise layout.LeRobotFormatError(f"{path}: episode indices are not contiguous from 0: "
                                            f"found {index} where {i} was due")
        if length < 1:
            raise layout.LeRobotFormatError(f"{where}: length {length}")
        chunk = i // info.chunks_size
        videos = {}
        for key in _video_keys(info):
            if video_t is None:
                raise layout.LeRobotFormatError(f"{root}: video features but no video_path")
            rel = video_t.format(episode_chunk=chunk, video_key=key, episode_index=i)
            videos[key] = (_inside(root, rel), 0.0)
        rel = data_t.format(episode_chunk=chunk, episode_index=i)
        out.append(EpisodeRef(i, length, _inside(root, rel), first, videos, {}))
        first += length
    return out


def _episode_order(row: dict[str, Any]) -> int:
    index = row.get("episode_index")
    return index if isinstance(index, int) else -1


def _video_keys(info: layout.DatasetInfo) -> list[str]:
    return [k for k, f in info.features.items() if f.dtype == "video"]


def _check_video_counts(info: layout.DatasetInfo, episodes: list[EpisodeRef]) -> None:
    """Every video file has exactly the frames of the episodes that point into it."""
    expected: dict[Path, int] = {}
    for ep in episodes:
        for path, _ in ep.videos.values():
            expected[path] = expected.get(path, 0) + ep.length
    for path, rows in expected.items():
        if not path.is_file():
            raise layout.LeRobotFormatError(f"{path}: missing video file")
        frames = count_frames(path)
        if frames != rows:
            raise layout.LeRobotFormatError(f"{path}: {frames} video frames, the data has {rows} "
                                            f"rows for its episodes (fps {info.fps:g})")


def _template(text: str, allowed: set[str], what: str) -> str:
    """A path template of info.json that names only ``allowed`` fields, plainly formatted
    (``str.format`` of outside text could otherwise reach attributes: ``{x.__class__}``)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise layout.LeRobotFormatError(f"info.json {what} {text[:80]!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed or conversion or not re.fullmatch(r"(0\d{1,2}d)?", spec or ""):
            raise layout.LeRobotFormatError(f"info.json {what} {text[:80]!r}: field {{{name}}} "
                                            f"is not one of {sorted(allowed)} as a plain number")
    return text


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise layout.LeRobotFormatError(f"{root}: path {rel[:80]!r} leads outside the dataset")
    return path


def _int(row: dict[str, Any], name: str, where: str) -> int:
    value = row.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise layout.LeRobotFormatError(f"{where}: {name!r} is {str(value)[:40]}, not an integer")
    return value


def _float(row: dict[str, Any], name: str, where: str) -> float:
    value = row.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        raise layout.LeRobotFormatError(f"{where}: {name!r} is {str(value)[:40]}, not a number")
    return float(value)


def _read_bytes(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise layout.LeRobotFormatError(f"{path}: over {limit} bytes")
    return raw


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise layout.LeRobotFormatError(f"{path}: missing parquet file")
    try:
        return pq.read_table(path, columns=columns)
    except PARQUET_DAMAGE as exc:
        detail = " ".join(str(exc).split())[:200]
        raise layout.LeRobotFormatError(f"{path}: not a readable parquet file with the columns "
                                        f"{columns or 'any'}: {detail}") from exc
