"""Zima episodes to a LeRobot v3.0 dataset (`zima episodes export DIR --format lerobot`).

    from zima.ecosystem.lerobot import export_lerobot
    report = export_lerobot(sorted(Path("data/sim").glob("*.h5")), Path("out/zima_sim"))

The layout and the mapping of a Zima step onto a LeRobot frame are in
:mod:`zima.ecosystem.lerobot_layout`; import (both versions) is
:mod:`zima.ecosystem.lerobot_import`. Written with pyarrow and PyAV only (no torch, no
LeRobot), into ``OUT.partial`` first, checked there as an import would read it (every
video has as many frames as the data has rows, episode and frame indices contiguous),
then renamed to ``OUT``: a crash or a failed check leaves no dataset under the final name.
Files roll over at LeRobot's sizes (data 100 MB, video 200 MB) at episode boundaries.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zima import __version__
from zima.contract import Contract
from zima.ecosystem import lerobot_layout as layout
from zima.ecosystem.lerobot_video import CRF, VideoWriter
from zima.episodes import TELEMETRY_FIELDS, Episode, EpisodeFormatError, EpisodeReader

QUANTILES: Final = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's DEFAULT_QUANTILES: q01 .. q99
_MB: Final = 1 << 20


@dataclass(slots=True)
class ExportReport:
    """What an export wrote."""

    out: Path
    episodes: int = 0
    frames: int = 0
    cameras: tuple[str, ...] = ()
    telemetry: tuple[str, ...] = ()  # telemetry fields exported (those every episode has)
    dropped_telemetry: tuple[str, ...] = ()  # fields some episodes lack, not exported
    files: list[str] = field(default_factory=list)  # data and video files, relative to out


def export_lerobot(paths: Sequence[Path], out: Path, *, task: str = layout.TASK,
                   robot_type: str = layout.ROBOT_TYPE, crf: int = CRF,
                   data_files_size_mb: int = layout.DATA_FILES_SIZE_MB,
                   video_files_size_mb: int = layout.VIDEO_FILES_SIZE_MB,
                   progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write the episode files ``paths`` (one contract) as the LeRobot v3.0 dataset ``out``.

    ``LeRobotError`` when the episodes cannot be one dataset (mixed contracts, a control
    rate that is not a whole number of frames per second, none given) or ``out`` exists;
    ``EpisodeFormatError`` names an unreadable episode.
    """
    if not paths:
        raise layout.LeRobotError("no episode files to export")
    if out.exists():
        raise layout.LeRobotError(f"{out} exists; export writes a new dataset folder")
    contract, telemetry, dropped = _survey(paths)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # a crashed export's leftovers, by its own name
    tmp.mkdir(parents=True)
    try:
        writer = _Writer(tmp, contract, telemetry=telemetry, task=task, crf=crf,
                         data_mb=data_files_size_mb, video_mb=video_files_size_mb)
        report = writer.write(paths, progress)
        _write_meta(writer, robot_type)
        from zima.ecosystem.lerobot_read import open_dataset  # noqa: PLC0415

        open_dataset(tmp, check_videos=True)  # as an import would read it, or raise
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.out, report.dropped_telemetry = out, dropped
    return report


def _survey(paths: Sequence[Path]) -> tuple[Contract, tuple[str, ...], tuple[str, ...]]:
    """The episodes' one contract, the telemetry all of them have, and the rest."""
    contract: Contract | None = None
    have: list[set[str]] = []
    for path in paths:
        with EpisodeReader(path, contract=None) as reader:
            if contract is None:
                contract, first = reader.contract, path
            elif reader.contract != contract:
                raise layout.LeRobotError(f"{path} was recorded under another contract than "
                                          f"{first}; one dataset holds one contract")
            have.append({n for n in TELEMETRY_FIELDS if _has(reader, f"telemetry/{n}")})
    assert contract is not None
    fps = contract.control_hz
    if fps != int(fps):
        raise layout.LeRobotError(f"control_hz {fps} is not a whole number of frames per second, "
                                  "which LeRobot's fps must be")
    common = set.intersection(*have)
    keep = tuple(n for n in TELEMETRY_FIELDS if n in common)
    return contract, keep, tuple(n for n in TELEMETRY_FIELDS if n in set.union(*have) - common)


def _has(reader: EpisodeReader, name: str) -> bool:
    try:
        reader.read(name)
    except EpisodeFormatError:
        return False
    return True


class _Writer:
    """Data parquet and camera videos of one export, rolled over at the size limits."""

    def __init__(self, root: Path, contract: Contract, *, telemetry: tuple[str, ...],
                 task: str, crf: int, data_mb: int, video_mb: int) -> None:
        self.root, self.c, self.telemetry = root, contract, telemetry
        self.task, self.crf = task, crf
        self.fps = int(contract.control_hz)
        self.data_limit, self.video_limit = data_mb * _MB, video_mb * _MB
        self.data_file = (0, 0)  # (chunk, file) of the open data parquet
        self.data_bytes = 0
        self.parquet: pq.ParquetWriter | None = None
        self.videos: dict[str, VideoWriter] = {}
        self.video_file: dict[str, tuple[int, int]] = {}
        self.video_base: dict[str, int] = {}  # frames written to the open video file
        self.rows: list[dict[str, Any]] = []  # meta/episodes rows
        self.columns: dict[str, list[np.ndarray]] = {}  # every frame's values, for stats.json
        self.histograms = {cam: np.zeros((3, 256), np.int64) for cam in contract.cameras}
        self.report = ExportReport(root, cameras=contract.cameras, telemetry=telemetry)

    def write(self, paths: Sequence[Path], progress: Callable[[int, int], None] | None
              ) -> ExportReport:
        try:
            for index, path in enumerate(paths):
                with EpisodeReader(path, self.c) as reader:
                    episode, extras = reader.load(), reader.extras()
                self._episode(index, path, episode, extras)
                if progress is not None:
                    progress(index + 1, len(paths))
        finally:
            self._close_data()
            for cam in list(self.videos):
                self._close_video(cam)
        return self.report

    def _episode(self, index: int, path: Path, ep: Episode, extras: dict[str, Any]) -> None:
        n, start = len(ep), self.report.frames
        columns = _frame_columns(self.c, ep, self.telemetry)
        frame_index = np.arange(n, dtype=np.int64)
        columns |= {"timestamp": (frame_index / self.fps).astype(np.float32),
                    "frame_index": frame_index,
                    "episode_index": np.full(n, index, np.int64),
                    "index": np.arange(start, start + n, dtype=np.int64),
                    "task_index": np.zeros(n, np.int64)}
        row: dict[str, Any] = {"episode_index": index, "tasks": [self.task], "length": n}
        row |= self._write_data(columns)
        row |= {"dataset_from_index": start, "dataset_to_index": start + n}
        stats: dict[str, dict[str, Any]] = {}
        for cam in self.c.cameras:
            row |= self._write_video(cam, ep.images[cam])
            hist = _histogram(ep.images[cam])
            self.histograms[cam] += hist
            stats[layout.image_key(cam)] = _image_stats(hist, n)
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for name, values in columns.items():
            self.columns.setdefault(name, []).append(values)
            stats[name] = _stats(values)
        row |= {f"stats/{k}/{s}": v for k, st in stats.items() for s, v in st.items()}
        info = asdict(ep.info)
        row |= {f"zima/{k}": info[k] for k in sorted(info)}
        row |= {"zima/file": path.name, "zima/extras": json.dumps(extras, default=str)}
        self.rows.append(row)
        self.report.episodes += 1
        self.report.frames += n

    def _write_data(self, columns: dict[str, np.ndarray]) -> dict[str, int]:
        table = _table(columns)
        if self.parquet is not None and self.data_bytes >= self.data_limit:
            self._close_data()
            self.data_file = _next_file(self.data_file)
        if self.parquet is None:
            chunk, file = self.data_file
            rel = layout.DATA_PATH.format(chunk_index=chunk, file_index=file)
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            self.parquet = pq.ParquetWriter(self.root / rel, table.schema, compression="snappy")
            self.report.files.append(rel)
        self.parquet.write_table(table)
        self.data_bytes += table.nbytes
        return {"data/chunk_index": self.data_file[0], "data/file_index": self.data_file[1]}

    def _close_data(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            self.parquet, self.data_bytes = None, 0

    def _write_video(self, cam: str, frames: np.ndarray) -> dict[str, Any]:
        key = layout.image_key(cam)
        writer = self.videos.get(cam)
        if writer is not None and writer.bytes >= self.video_limit:
            self._close_video(cam)
            self.video_file[cam] = _next_file(self.video_file[cam])
            writer = None
        if writer is None:
            chunk, file = self.video_file.setdefault(cam, (0, 0))
            rel = layout.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            writer = VideoWriter(self.root / rel, self.fps, self.c.image_height,
                                 self.c.image_width, self.crf)
            self.videos[cam] = writer
            self.report.files.append(rel)
        first = writer.frames
        writer.write(frames)
        chunk, file = self.video_file[cam]
        return {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": first / self.fps,
                f"videos/{key}/to_timestamp": writer.frames / self.fps}

    def _close_video(self, cam: str) -> None:
        self.videos.pop(cam).close()


def _next_file(at: tuple[int, int]) -> tuple[int, int]:
    """LeRobot's update_chunk_file_indices: the next file, a new chunk every CHUNKS_SIZE."""
    chunk, file = at
    return (chunk + 1, 0) if file == layout.CHUNKS_SIZE - 1 else (chunk, file + 1)


def _frame_columns(c: Contract, ep: Episode, telemetry: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The per-frame feature columns of ``ep`` (layout module's table)."""
    speeds = np.array([[c.track_command(a).left_mm_s, c.track_command(a).right_mm_s]
                       for a in range(c.n_actions)], np.float32)  # [n_actions, 2]
    executed = ep.action.astype(np.int64)
    previous = np.concatenate([[0], executed[:-1]]).astype(np.int64)  # STOP before the start
    label = ep.expert_action.astype(np.int64)
    return {layout.STATE: speeds[previous], layout.ACTION: speeds[label],
            layout.EXPERT: ep.expert_action.astype(np.int64), layout.EXECUTED: executed,
            layout.TAKEOVER: ep.operator_takeover.astype(np.bool_),
            layout.TIMESTAMP_S: ep.timestamp_s.astype(np.float64),
            **{layout.TELEMETRY_PREFIX + n: ep.telemetry[n].astype(np.float32) for n in telemetry}}


def _table(columns: dict[str, np.ndarray]) -> pa.Table:
    """One arrow table; a [T, d] column as fixed_size_list<d> (HF datasets' Sequence)."""
    arrays = {}
    for name, values in columns.items():
        if values.ndim == 2:
            flat = pa.array(values.reshape(-1))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            arrays[name] = pa.array(values)
    return pa.table(arrays)


def _stats(values: np.ndarray) -> dict[str, list[Any]]:
    """LeRobot's per-feature statistics of ``values`` [T] or [T, d]: lists of d numbers."""
    v = values.reshape(len(values), -1).astype(np.float64)  # [T, d]
    out: dict[str, list[Any]] = {"min": v.min(0).tolist(), "max": v.max(0).tolist(),
                                 "mean": v.mean(0).tolist(), "std": v.std(0).tolist(),
                                 "count": [len(v)]}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(v, q, axis=0).tolist()
    return out


def _histogram(frames: np.ndarray) -> np.ndarray:
    """Per-channel counts of each 8-bit value of ``frames`` [T, H, W, 3]: [3, 256]."""
    return np.stack([np.bincount(frames[..., ch].reshape(-1), minlength=256)
                     for ch in range(3)])


def _image_stats(hist: np.ndarray, n_frames: int) -> dict[str, list[Any]]:
    """Per-channel statistics in [0, 1] from ``hist`` [3, 256], shaped [3, 1, 1] as
    LeRobot's image statistics are; exact, since 8-bit values have 256 levels."""
    levels = np.arange(256) / 255.0
    total = hist.sum(1)  # [3]
    mean = hist @ levels / total
    std = np.sqrt(np.maximum(hist @ levels**2 / total - mean**2, 0.0))
    cumulative = np.cumsum(hist, 1)

    def per_channel(values: np.ndarray) -> list[Any]:
        return [[[float(x)]] for x in values]

    out = {"min": per_channel(levels[(hist > 0).argmax(1)]),
           "max": per_channel(levels[255 - (hist[:, ::-1] > 0).argmax(1)]),
           "mean": per_channel(mean), "std": per_channel(std), "count": [n_frames]}
    for q in QUANTILES:
        index = (cumulative >= q * total[:, None]).argmax(1)
        out[f"q{round(q * 100):02d}"] = per_channel(levels[index])
    return out


def _write_meta(w: _Writer, robot_type: str) -> None:
    """info.json, stats.json, tasks.parquet, the episodes parquet and the contract."""
    root, c, report = w.root, w.c, w.report
    features = layout.zima_features(c, report.telemetry)
    for cam in c.cameras:
        key = layout.image_key(cam)
        rel = layout.VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
        features[key]["info"] = video_info(root / rel)
    info = {"codebase_version": layout.CODEBASE_VERSION, "robot_type": robot_type,
            "total_episodes": report.episodes, "total_frames": report.frames,
            "total_tasks": 1, "chunks_size": layout.CHUNKS_SIZE,
            "data_files_size_in_mb": w.data_limit // _MB,
            "video_files_size_in_mb": w.video_limit // _MB,
            "fps": int(c.control_hz), "splits": {"train": f"0:{report.episodes}"},
            "data_path": layout.DATA_PATH, "video_path": layout.VIDEO_PATH, "features": features}
    _json(root / layout.INFO_PATH, info)
    _json(root / layout.CONTRACT_PATH, json.loads(c.to_json()) | {"zima_version": __version__})
    stats = {name: _stats(np.concatenate(parts)) for name, parts in w.columns.items()}
    stats |= {layout.image_key(cam): _image_stats(h, report.frames)
              for cam, h in w.histograms.items()}
    _json(root / layout.STATS_PATH, stats)
    # What pandas writes for DataFrame({"task_index": [0]}, index=[task]), LeRobot's tasks.
    pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index",
                                "pandas_type": "int64", "numpy_type": "int64",
                                "metadata": None},
                               {"name": None, "field_name": "__index_level_0__",
                                "pandas_type": "unicode", "numpy_type": "object",
                                "metadata": None}],
                   "attributes": {}, "creator": {"library": "pyarrow",
                                                 "version": pa.__version__},
                   "pandas_version": "2.2.0"}
    tasks = pa.table({"task_index": pa.array([0], pa.int64()),
                      "__index_level_0__": pa.array([w.task], pa.string())})
    pq.write_table(tasks.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}),
                   root / layout.TASKS_PATH)
    episodes = root / layout.EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(w.rows), episodes)


def video_info(path: Path) -> dict[str, Any]:
    """A video feature's ``info`` as LeRobot's get_video_info writes it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"video.height": stream.height, "video.width": stream.width,
                "video.codec": stream.codec_context.codec.canonical_name,
                "video.pix_fmt": stream.pix_fmt, "video.is_depth_map": False,
                "video.fps": int(stream.base_rate or 0), "video.channels": 3,
                "has_audio": bool(container.streams.audio)}


def _json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=4, ensure_ascii=False) + "\n")
