"""`zima episodes`: look after a folder of episode files, and move them to and from LeRobot.

    zima episodes list data/sim                  # a table: steps, outcome, source, actions
    zima episodes verify data/real               # exit 1, naming each bad file and why
    zima episodes mark data/real/lab_0042.h5     # flag bad: training no longer takes it
    zima episodes mark --undo data/real/lab_0042.h5.bad
    zima episodes remove --partial data/real     # leftovers of writers that never closed
    zima episodes plot data/sim --out actions.png
    zima episodes export data/sim --format lerobot --out lerobot/zima_sim
    zima episodes import lerobot/zima_sim --out data/imported

A folder's episodes are its ``*.h5``; ``*.h5.partial`` are unfinished (a crashed or
running writer) and never count as episodes; ``*.h5.bad`` are marked bad
(:func:`zima.episodes.mark_bad`), which every ``*.h5`` reader (training, `zima score`,
export) skips. Exit status: 0 done; 1 `verify` found a problem; 2 bad arguments or a
failed command. list/verify/mark/remove need h5py only; plot matplotlib; export and
import pyarrow and PyAV (the ``ecosystem`` extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zima.stderr import fail, say

if TYPE_CHECKING:
    import numpy as np

    from zima.contract import Contract


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `zima episodes` subcommands."""
    sub = parser.add_subparsers(dest="episodes_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("list", help="a table of a folder's episodes")
    p.add_argument("folder", type=Path)
    p = sub.add_parser("verify", help="check every episode file; exit 1 naming each bad one")
    p.add_argument("folder", type=Path)
    p.add_argument("--any-contract", action="store_true",
                   help="accept any contract (default: the one training uses), one per folder")
    p = sub.add_parser("mark", help="flag episodes bad (NAME.h5 -> NAME.h5.bad)")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--undo", action="store_true", help="unmark: NAME.h5.bad -> NAME.h5")
    p = sub.add_parser("remove", help="delete episode files, or a folder's partial/marked ones")
    p.add_argument("files", type=Path, nargs="*")
    p.add_argument("--partial", type=Path, metavar="FOLDER", help="every *.h5.partial there")
    p.add_argument("--marked", type=Path, metavar="FOLDER", help="every *.h5.bad there")
    p.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    p = sub.add_parser("plot", help="the action distribution of a folder, as a PNG")
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="PNG")
    p = sub.add_parser("export", help="write a folder's episodes as a LeRobot v3.0 dataset")
    p.add_argument("folder", type=Path)
    p.add_argument("--format", choices=["lerobot"], required=True)
    p.add_argument("--out", type=Path, required=True, help="the new dataset folder")
    p.add_argument("--task", help="the task text of every episode (default: Zima's task)")
    p = sub.add_parser("import", help="write a LeRobot (v3.0, v2.1) dataset as Zima episodes")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the episode folder")
    p.add_argument("--source", choices=["real", "sim"], default="real",
                   help="source of a dataset that is not a Zima export (default real)")


def run(args: argparse.Namespace) -> int:
    """Run one subcommand."""
    command = {"list": _list, "verify": _verify, "mark": _mark, "remove": _remove,
               "plot": _plot, "export": _export, "import": _import}[args.episodes_command]
    return command(args)


# --- reading a folder ---------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """One file of an episode folder."""

    path: Path
    state: str  # "ok", "bad" (marked), "partial", "unreadable"
    why: str = ""
    steps: int = 0
    outcome: str = ""
    source: str = ""
    scene: str = ""
    cameras: tuple[str, ...] = ()
    action: np.ndarray | None = None  # [T] executed
    label: np.ndarray | None = None  # [T] expert_action (a copy of action when absent)
    takeover: float = 0.0  # share of steps an operator chose
    contract: Contract | None = None


def _entries(folder: Path, *, full: bool = False, contract: Contract | None = None
             ) -> list[_Entry]:
    """Every episode, marked and partial file of ``folder``; ``full`` reads every dataset
    (a whole check), otherwise only the small ones."""
    from zima.episodes import BAD_SUFFIX, PARTIAL_SUFFIX  # noqa: PLC0415

    out = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".h5" + PARTIAL_SUFFIX):
            out.append(_Entry(path, "partial", "unfinished: its writer never closed it (a "
                                               "crash, or still recording)"))
        elif path.name.endswith(".h5" + BAD_SUFFIX):
            out.append(_read(path, "bad", full=full, contract=contract))
        elif path.suffix == ".h5":
            out.append(_read(path, "ok", full=full, contract=contract))
    return out


def _read(path: Path, state: str, *, full: bool, contract: Contract | None) -> _Entry:
    import numpy as np  # noqa: PLC0415

    from zima.episodes import EpisodeError, EpisodeFormatError, EpisodeReader  # noqa: PLC0415

    try:
        with EpisodeReader(path, contract) as reader:
            if full:
                episode = reader.load()
                action, label = episode.action, episode.expert_action
                takeover, stamps = episode.operator_takeover, episode.timestamp_s
            else:
                action = reader.read("action")
                try:
                    label = reader.read("expert_action")
                except EpisodeFormatError:  # absent: the action is the label
                    label = action
                takeover, stamps = reader.read("operator_takeover"), None
            entry = _Entry(path, state, steps=reader.n_steps, outcome=reader.info.outcome,
                           source=reader.info.source, scene=reader.info.scene,
                           cameras=reader.contract.cameras, action=action, label=label,
                           takeover=float(np.mean(takeover)) if len(takeover) else 0.0,
                           contract=reader.contract)
    except (EpisodeError, OSError) as exc:  # a marked file stays marked, readable or not
        return _Entry(path, "unreadable" if state == "ok" else state, str(exc))
    if stamps is not None and len(stamps) and (not np.all(np.isfinite(stamps))
                                               or np.any(np.diff(stamps) < 0)):
        entry.state = "unreadable"
        entry.why = f"{path}: timestamp_s is not finite and non-decreasing"
    return entry


def _counts(values: np.ndarray | None, n_actions: int) -> list[int]:
    import numpy as np  # noqa: PLC0415

    if values is None or not len(values):
        return [0] * n_actions
    counts: list[int] = np.bincount(values.astype(np.int64), minlength=n_actions).tolist()
    return counts[:n_actions]


def _folder(path: Path) -> str | None:
    if not path.is_dir():
        return f"{path} is not a folder"
    return None


# --- list, verify, plot -----------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from zima.contract import DEFAULT  # noqa: PLC0415

    if (why := _folder(args.folder)) is not None:
        return _fail(why)
    entries = _entries(args.folder, contract=None)
    names = [a[:4] for a in DEFAULT.actions]
    head = (f"{'file':<28} {'state':<10} {'steps':>5}  {'outcome':<10} {'source':<6} "
            f"{'scene':<12} {'cameras':<14} " + " ".join(f"{n:>5}" for n in names)
            + "  takeover")
    lines = [head]
    total = [0] * len(names)
    steps = episodes = 0
    for e in entries:
        counts = _counts(e.action, len(names))
        share = [f"{100 * c / max(1, e.steps):4.0f}%" for c in counts]
        if e.state in ("ok", "bad"):
            lines.append(f"{e.path.name[:28]:<28} {e.state:<10} {e.steps:>5}  "
                         f"{e.outcome[:10]:<10} {e.source:<6} {e.scene[:12]:<12} "
                         f"{','.join(e.cameras)[:14]:<14} " + " ".join(share)
                         + f"  {100 * e.takeover:5.0f}%")
        else:
            lines.append(f"{e.path.name[:28]:<28} {e.state:<10} {e.why[:80]}")
        if e.state == "ok":
            total = [t + c for t, c in zip(total, counts, strict=True)]
            steps, episodes = steps + e.steps, episodes + 1
    lines.append(f"{episodes} episodes, {steps} steps (marked bad, partial and unreadable "
                 "files not counted); actions: "
                 + ", ".join(f"{n} {100 * c / max(1, steps):.0f}%"
                             for n, c in zip(DEFAULT.actions, total, strict=True)))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from zima.contract import DEFAULT  # noqa: PLC0415

    if (why := _folder(args.folder)) is not None:
        return _fail(why)
    entries = _entries(args.folder, full=True, contract=None if args.any_contract else DEFAULT)
    problems = [f"{e.path}: {e.why.removeprefix(f'{e.path}: ')}" for e in entries
                if e.state in ("partial", "unreadable")]
    contracts = {e.contract for e in entries if e.contract is not None}
    if len(contracts) > 1:
        problems.append(f"{args.folder}: episodes of {len(contracts)} different contracts; "
                        "one training set takes one")
    good = sum(e.state == "ok" for e in entries)
    if not good and not problems:
        problems.append(f"{args.folder}: no episode files (*.h5)")
    for line in problems:
        say(f"zima episodes verify: {line}\n")
    marked = sum(e.state == "bad" for e in entries)
    sys.stdout.write(f"{good} episode(s) sound, {len(problems)} problem(s), {marked} marked "
                     "bad (not checked for training)\n")
    return 1 if problems else 0


def _plot(args: argparse.Namespace) -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    from zima.contract import DEFAULT  # noqa: PLC0415

    if (why := _folder(args.folder)) is not None:
        return _fail(why)
    entries = [e for e in _entries(args.folder) if e.state == "ok"]
    if not entries:
        return _fail(f"no readable episode files (*.h5) in {args.folder}")
    n = DEFAULT.n_actions
    executed = [sum(c) for c in zip(*(_counts(e.action, n) for e in entries), strict=True)]
    labels = [sum(c) for c in zip(*(_counts(e.label, n) for e in entries), strict=True)]
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = range(n)
    ax.bar([i - 0.2 for i in x], executed, 0.4, label="executed (action)")
    ax.bar([i + 0.2 for i in x], labels, 0.4, label="label (expert_action)")
    ax.set_xticks(list(x), list(DEFAULT.actions))
    ax.set(ylabel="steps", title=f"{args.folder.name}: {len(entries)} episodes, "
                                 f"{sum(executed)} steps")
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    sys.stdout.write(f"{args.out}\n")
    return 0


# --- mark, remove ---------------------------------------------------------------------------


def _mark(args: argparse.Namespace) -> int:
    from zima.episodes import mark_bad, unmark_bad  # noqa: PLC0415

    def mark(path: Path) -> str:
        new = unmark_bad(path) if args.undo else mark_bad(path)
        return f"{path} -> {new.name}"

    return _each("mark", args.files, mark)


def _remove(args: argparse.Namespace) -> int:
    from zima.episodes import BAD_SUFFIX, PARTIAL_SUFFIX  # noqa: PLC0415

    targets = list(args.files)
    for folder, suffix in ((args.partial, PARTIAL_SUFFIX), (args.marked, BAD_SUFFIX)):
        if folder is not None:
            if (why := _folder(folder)) is not None:
                return _fail(why)
            targets += sorted(folder.glob(f"*.h5{suffix}"))
    if not targets:
        return _fail("nothing to remove: name files, --partial FOLDER or --marked FOLDER")
    ours = (".h5", ".h5" + PARTIAL_SUFFIX, ".h5" + BAD_SUFFIX)
    strangers = [p for p in targets if not p.name.endswith(ours) or p.is_dir()]
    if strangers:
        return _fail(f"not episode files (*.h5, *.h5.partial, *.h5.bad): {strangers[0]}")

    def remove(path: Path) -> str:
        if args.dry_run:
            return f"would remove {path}"
        path.unlink()
        return f"removed {path}"

    return _each("remove", targets, remove)


def _each(command: str, paths: Iterable[Path], act: Callable[[Path], str]) -> int:
    """``act`` on every path, printing the line it returns; a path that fails is named on
    stderr and the others still done (exit status 2 when any failed)."""
    failed = 0
    for path in paths:
        try:
            line = act(path)
        except (ValueError, OSError) as exc:
            say(f"zima episodes {command}: {exc}\n")
            failed += 1
            continue
        sys.stdout.write(line + "\n")
    return 2 if failed else 0


# --- LeRobot ---------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    from zima.ecosystem.lerobot import export_lerobot  # noqa: PLC0415
    from zima.ecosystem.lerobot_layout import TASK, LeRobotError  # noqa: PLC0415
    from zima.episodes import EpisodeError  # noqa: PLC0415

    if (why := _folder(args.folder)) is not None:
        return _fail(why)
    paths = sorted(args.folder.glob("*.h5"))
    try:
        report = export_lerobot(paths, args.out, task=args.task or TASK)
    except (LeRobotError, EpisodeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(f"{report.out}: LeRobot v3.0, {report.episodes} episodes, {report.frames} "
                     f"frames, cameras {', '.join(report.cameras)}\n")
    if report.dropped_telemetry:
        sys.stdout.write(f"telemetry not exported (some episodes lack it): "
                         f"{', '.join(report.dropped_telemetry)}\n")
    return 0


def _import(args: argparse.Namespace) -> int:
    from zima.ecosystem.lerobot_import import import_lerobot  # noqa: PLC0415
    from zima.ecosystem.lerobot_layout import LeRobotError  # noqa: PLC0415
    from zima.episodes import EpisodeError  # noqa: PLC0415

    if (why := _folder(args.dataset)) is not None:
        return _fail(why)
    try:
        report = import_lerobot(args.dataset, args.out, source=args.source)
    except (LeRobotError, EpisodeError, OSError) as exc:
        return _fail(str(exc))
    sys.stdout.write(f"{args.out}: {len(report.files)} episodes, {report.frames} steps\n")
    if report.ignored_features:
        sys.stdout.write(f"features with no place in a Zima episode, not imported: "
                         f"{', '.join(report.ignored_features)}\n")
    return 0


def _fail(message: str) -> int:
    return fail("zima episodes", message)
