"""A LeRobot dataset (v3.0 or v2.1) into Zima episodes (`zima episodes import`).

    from zima.ecosystem.lerobot_import import import_lerobot
    report = import_lerobot(Path("lerobot/zima_sim"), Path("data/imported"))

A dataset is outside input: :func:`zima.ecosystem.lerobot_read.open_dataset` reads and
checks its metadata whole before one episode is written (indices contiguous, every
video with as many frames as the data has rows); each episode's rows are checked as
they are read (frame indices 0..n-1, global indices in order). Then :func:`fit` holds
the features to the contract (cameras and image size, fps, an action that maps onto
Zima's discrete actions) and refuses the dataset naming every mismatch. A LeRobot
action fits as an index (``zima.expert_action``, or an integer ``action`` of shape
[1]) or as a track command pair [left, right] mm/s equal to one of the contract's.
Episodes are written with :class:`EpisodeWriter` (each file appears whole or not at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from zima.bounded import InputError, parse_json_bounded
from zima.contract import DEFAULT, METADATA_KEY, Contract
from zima.ecosystem import lerobot_layout as layout
from zima.ecosystem.lerobot_read import (
    PARQUET_DAMAGE,
    Dataset,
    EpisodeRef,
    open_dataset,
    read_table,
)
from zima.ecosystem.lerobot_video import VideoReader
from zima.episodes import TELEMETRY_FIELDS, EpisodeInfo, EpisodeWriter

__all__ = ["ImportReport", "Plan", "fit", "import_lerobot", "open_dataset"]
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,120}\.h5")
_FORMAT_ATTRS: Final = ("source", "scene", "seed", "outcome", "steps_recorded", "idle_trim",
                        "zima_version", "created_utc")
# Root attributes of the episode format itself, which extras may not take.
_RESERVED: Final = frozenset({*_FORMAT_ATTRS, "format", "format_version", "n_steps",
                              METADATA_KEY})


@dataclass(slots=True)
class ImportReport:
    """What an import wrote."""

    files: list[Path] = field(default_factory=list)
    frames: int = 0
    ignored_features: tuple[str, ...] = ()  # features of the dataset Zima has no place for


# --- fitting the contract --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """How a dataset's columns become a Zima episode's datasets."""

    cameras: dict[str, str]  # contract camera -> video key
    label: str  # column of the demonstrator's label: index, or [left, right] mm/s
    label_is_pair: bool
    executed: str | None  # column of the executed action (an index); None: the label
    timestamp: str  # column of capture times, s
    takeover: str | None
    telemetry: dict[str, str]  # telemetry name -> column
    ignored: tuple[str, ...]


def fit(ds: Dataset, contract: Contract) -> Plan:
    """How ``ds`` fits ``contract``; ContractFitError naming every mismatch."""
    f, bad = ds.info.features, []
    if ds.info.fps != contract.control_hz:
        bad.append(f"fps {ds.info.fps:g}, the contract's control_hz is {contract.control_hz:g}")
    cameras = {}
    for cam in contract.cameras:
        key, ft = layout.image_key(cam), f.get(layout.image_key(cam))
        if ft is None or ft.dtype != "video":
            found = sorted(k for k, v in f.items() if v.dtype in ("video", "image"))
            bad.append(f"no video feature {key!r} for camera {cam!r} (cameras found: {found})")
            continue
        shape = ((ft.shape[1], ft.shape[2]) if list(ft.names or [])[:1] == ["channels"]
                 else ft.shape[:2])
        if len(ft.shape) != 3 or 3 not in (ft.shape[0], ft.shape[2]) or shape != (
                contract.image_height, contract.image_width):
            bad.append(f"{key} is {list(ft.shape)}, the contract's frames are "
                       f"[{contract.image_height}, {contract.image_width}, 3]")
        cameras[cam] = key
    label, pair = _label_column(f, bad)
    if ds.contract_json is not None:
        bad += _contract_diffs(ds.contract_json, contract)
    if bad:
        raise layout.ContractFitError(f"{ds.root} does not fit the Zima contract: "
                                      + "; ".join(bad))
    executed = layout.EXECUTED if _index_feature(f.get(layout.EXECUTED)) else None
    timestamp = layout.TIMESTAMP_S if layout.TIMESTAMP_S in f else "timestamp"
    takeover = layout.TAKEOVER if layout.TAKEOVER in f else None
    telemetry = {n: layout.TELEMETRY_PREFIX + n for n in TELEMETRY_FIELDS
                 if layout.TELEMETRY_PREFIX + n in f}
    state = f.get(layout.STATE)  # Zima's own (the command in force) is derived, not read
    derived = {layout.ACTION} | ({layout.STATE} if state is not None and state.shape == (2,)
                                 and state.names == layout.TRACK_NAMES else set())
    used = {*cameras.values(), label, executed, timestamp, takeover, *telemetry.values(),
            *layout.DEFAULT_FEATURES, *derived}
    return Plan(cameras, label, pair, executed, timestamp, takeover, telemetry,
                tuple(sorted(set(f) - used)))


def _index_feature(ft: layout.Feature | None) -> bool:
    return ft is not None and ft.dtype.startswith(("int", "uint")) and ft.shape == (1,)


def _label_column(f: dict[str, layout.Feature], bad: list[str]) -> tuple[str, bool]:
    if _index_feature(f.get(layout.EXPERT)):
        return layout.EXPERT, False
    ft = f.get(layout.ACTION)
    if _index_feature(ft):
        return layout.ACTION, False
    if ft is not None and ft.dtype.startswith("float") and ft.shape == (2,):
        return layout.ACTION, True
    shown = "missing" if ft is None else f"{ft.dtype} {list(ft.shape)} (names {ft.names})"
    bad.append(f"action is {shown}: Zima's actions are stop, forward, left, right; an action "
               "fits as an integer index [1] or as [left_mm_s, right_mm_s] track commands")
    return "", False


def _contract_diffs(text: str, contract: Contract) -> list[str]:
    try:
        value = parse_json_bounded(text.encode(), max_bytes=65536, max_depth=4,
                                   what=layout.CONTRACT_PATH)
        if not isinstance(value, dict):
            raise InputError("not an object")
        value.pop("zima_version", None)
        theirs = Contract.from_json(json.dumps(value))
    except (InputError, ValueError, TypeError, KeyError) as exc:
        return [f"{layout.CONTRACT_PATH} is not a contract: {exc}"]
    mine = json.loads(contract.to_json())
    return [f"contract {k}: dataset {v!r}, expected {mine[k]!r}"
            for k, v in json.loads(theirs.to_json()).items() if v != mine.get(k)]


# --- writing episodes --------------------------------------------------------------------------


def import_lerobot(root: Path, out: Path, contract: Contract = DEFAULT, *, source: str = "real",
                   scene: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Write every episode of the LeRobot dataset ``root`` as a Zima episode into ``out``.

    Checks the whole dataset and its fit first (nothing is written when either fails),
    and refuses to overwrite an episode file. ``source`` and ``scene`` are the episode
    attributes of a dataset that is not a Zima export (an export's own are restored).
    """
    ds = open_dataset(root)
    plan = fit(ds, contract)
    names = _file_names(ds)
    taken = [n for n in names if (out / n).exists()]
    if taken:
        raise layout.LeRobotError(f"{out}: would overwrite {len(taken)} episode file(s), e.g. "
                                  f"{taken[0]}")
    out.mkdir(parents=True, exist_ok=True)
    report = ImportReport(ignored_features=plan.ignored)
    readers = {cam: VideoReader(ds.info.fps, contract.image_height, contract.image_width)
               for cam in contract.cameras}
    tables: dict[Path, pa.Table] = {}
    try:
        for ep, name in zip(ds.episodes, names, strict=True):
            rows = _episode_rows(ep, plan, tables)
            frames = {cam: readers[cam].take(*ep.videos[key], ep.length)
                      for cam, key in plan.cameras.items()}
            labels, executed = _actions(rows, plan, contract, ep)
            info, extras = _episode_info(ep, source, scene or ds.info.robot_type or root.name)
            telemetry = {n: rows[c].astype(np.float32) for n, c in plan.telemetry.items()}
            expert = None if np.array_equal(labels, executed) else labels
            with EpisodeWriter(out / name, info, contract) as writer:
                writer.set_attributes(extras)
                for t in range(ep.length):
                    writer.append({cam: frames[cam][t] for cam in frames}, int(executed[t]),
                                  float(rows[plan.timestamp][t]),
                                  expert_action=None if expert is None else int(expert[t]),
                                  operator_takeover=bool(rows[plan.takeover][t])
                                  if plan.takeover else False,
                                  telemetry={n: float(v[t]) for n, v in telemetry.items()})
            report.files.append(out / name)
            report.frames += ep.length
            if progress is not None:
                progress(ep.index + 1, len(ds.episodes))
    finally:
        for reader in readers.values():
            reader.close()
    return report


def _file_names(ds: Dataset) -> list[str]:
    names: list[str] = []
    for ep in ds.episodes:
        name = ep.attrs.get("file")
        if not (isinstance(name, str) and _SAFE_NAME.fullmatch(name)) or name in names:
            name = f"lerobot_{ep.index:06d}.h5"
        names.append(name)
    return names


def _episode_rows(ep: EpisodeRef, plan: Plan, tables: dict[Path, pa.Table]
                  ) -> dict[str, np.ndarray]:
    """The episode's columns (those the plan uses), checked: its rows in order."""
    if ep.data_path not in tables:
        tables.clear()  # one data file in memory at a time; episodes come in file order
        wanted = {"episode_index", "frame_index", "index", plan.label, plan.executed,
                  plan.timestamp, plan.takeover, *plan.telemetry.values()} - {None}
        tables[ep.data_path] = read_table(ep.data_path, sorted(c for c in wanted if c))
    table = tables[ep.data_path]
    try:
        episode_index = table.column("episode_index").to_numpy()
        mask = episode_index == ep.index
        rows = {name: _column(table.column(name).filter(pa.array(mask)))
                for name in table.column_names}
    except PARQUET_DAMAGE as exc:
        raise layout.LeRobotFormatError(f"{ep.data_path}: episode {ep.index}: {exc}") from exc
    n = int(mask.sum())
    if n != ep.length:
        raise layout.LeRobotFormatError(f"{ep.data_path}: {n} rows of episode {ep.index}, its "
                                        f"metadata says {ep.length}")
    if not np.array_equal(rows["frame_index"], np.arange(n)):
        raise layout.LeRobotFormatError(f"{ep.data_path}: episode {ep.index}'s frame_index is not "
                                        f"0..{n - 1} in order")
    if not np.array_equal(rows["index"], np.arange(ep.first_row, ep.first_row + n)):
        raise layout.LeRobotFormatError(f"{ep.data_path}: episode {ep.index}'s global index is not "
                                        f"{ep.first_row}..{ep.first_row + n - 1} in order")
    return rows


def _column(array: pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: [T] or, for a list column, [T, d]."""
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or (
            pa.types.is_large_list(array.type)):
        values = array.to_pylist()
        return np.array(values, dtype=np.float64).reshape(len(values), -1)
    column: np.ndarray = array.to_numpy(zero_copy_only=False)
    return column


def _actions(rows: dict[str, np.ndarray], plan: Plan, c: Contract, ep: EpisodeRef
             ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, executed) as action indices, or ContractFitError naming the frame."""
    values = rows[plan.label]
    if plan.label_is_pair:
        speeds = np.array([[c.track_command(a).left_mm_s, c.track_command(a).right_mm_s]
                           for a in range(c.n_actions)], np.float64)  # [n_actions, 2]
        match = np.all(np.abs(values[:, None, :] - speeds[None]) < 1e-3, axis=2)  # [T, A]
        if not match.any(1).all():
            t = int(np.flatnonzero(~match.any(1))[0])
            raise layout.ContractFitError(
                f"episode {ep.index} frame {t}: action {values[t].tolist()} is none of the "
                f"contract's track commands {speeds.tolist()} (mm/s)")
        labels = match.argmax(1)
    else:
        labels = values.reshape(-1)
    executed = rows[plan.executed].reshape(-1) if plan.executed else labels
    for name, a in (("label", labels), ("executed action", executed)):
        if len(a) and (a.min() < 0 or a.max() >= c.n_actions or not np.all(a == np.round(a))):
            raise layout.ContractFitError(f"episode {ep.index}: {name} values "
                                          f"{sorted(set(a.tolist()))[:8]} are not all in "
                                          f"0..{c.n_actions - 1}")
    return labels.astype(np.uint8), executed.astype(np.uint8)


def _episode_info(ep: EpisodeRef, source: str, scene: str) -> tuple[EpisodeInfo, dict[str, Any]]:
    """The Zima attributes: an export's own (checked), else ``source``/``scene``."""
    a = ep.attrs
    if not a:
        return EpisodeInfo(source, scene[:200]), {"lerobot_episode_index": ep.index}
    try:
        values = {k: a[k] for k in _FORMAT_ATTRS}
        for k, kind in (("seed", int), ("steps_recorded", int)):
            if not isinstance(values[k], kind):
                raise TypeError(f"{k} is not {kind.__name__}")
        info = EpisodeInfo(**values)
        raw = a.get("extras") or "{}"
        extras = parse_json_bounded(str(raw).encode(), max_bytes=65536, max_depth=2,
                                    what="zima/extras")
    except (KeyError, TypeError, ValueError) as exc:
        raise layout.LeRobotFormatError(f"episode {ep.index}: bad zima/* columns: {exc}") from exc
    scalars = {k: v for k, v in (extras.items() if isinstance(extras, dict) else ())
               if isinstance(v, str | int | float | bool) and k not in _RESERVED}
    return info, scalars
