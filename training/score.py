"""Scoring a model on recorded episodes: how often it picks the recorded action.

The one offline measure there is for real data: no simulator judges a real episode, but
its file says what the demonstrator did at every step. Each episode is replayed through
the runtime's own parts, not a copy of them::

    for every step t of the episode (its frames, captured at timestamp_s[t]):
        fusion.push(camera, frame, timestamp_s[t])       # zima.onboard.fusion.FrameFusion
        obs = fusion.observe(timestamp_s[t])             # image history by capture time
        out = model.infer(obs.images, obs.action_history)  # zima.onboard.policy.load_model
        predicted[t] = first chunk step: argmax of the logits (choose_actions at
                       temperature 0)
        fusion.record_action(action[t])                  # the executed action, as on the robot

and ``predicted[t]`` is compared with the step's label: ``expert_action`` where the file
has one (an operator's correction, DAgger), else the executed ``action`` -- the target
training clones. The history is what was executed, as the runtime feeds it back; the
queue of a running chunk is not replayed (each step is scored as if the model planned at
it). An output that fails :func:`~zima.onboard.policy.check_output` counts as a STOP, as
the runtime would drive it, and is counted in ``bad_outputs``.

:class:`ScoreReport` holds the agreement over all steps and per episode (file, outcome,
source, mode, steps) and the confusion matrix (rows: label, columns: predicted, in the
contract's action order: stop, forward, left, right), as text tables
(:meth:`ScoreReport.tables`), JSON (:meth:`ScoreReport.to_json`) and a PNG
(:func:`plot_confusion`). A file that is not a readable episode of the model's contract
is skipped with the reason and counted (:func:`score`). The command is
:mod:`zima.training.score_cli` (`zima score`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zima.contract import Action
from zima.episodes import Episode, EpisodeFormatError, EpisodeReader
from zima.onboard.chunking import choose_actions
from zima.onboard.fusion import FrameFusion, Observation
from zima.onboard.policy import PolicyModel, output_problem

__all__ = ["EpisodeScore", "ScoreReport", "chosen_action", "episode_paths", "observations",
           "plot_confusion", "score", "score_episode"]


@dataclass(frozen=True, slots=True)
class EpisodeScore:
    """One episode's steps: the confusion matrix [label, predicted] and what the file says."""

    file: str
    outcome: str
    source: str
    mode: str  # who drove ("teleop", "autonomous", ...; the robot recorder's), "" unknown
    confusion: np.ndarray  # [n_actions, n_actions] int64, rows label, columns predicted
    bad_outputs: int = 0  # steps whose output failed check_output (scored as STOP)

    @property
    def steps(self) -> int:
        return int(self.confusion.sum())

    @property
    def agree(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def agreement(self) -> float | None:
        """Share of steps whose predicted action is the label; None without steps."""
        return self.agree / self.steps if self.steps else None


@dataclass(slots=True)
class ScoreReport:
    """Every scored episode and every skipped file of one run."""

    model: str
    model_sha256: str
    actions: tuple[str, ...]
    episodes: list[EpisodeScore] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    @property
    def confusion(self) -> np.ndarray:
        """[n_actions, n_actions] int64 over all episodes."""
        n = len(self.actions)
        return sum((e.confusion for e in self.episodes), np.zeros((n, n), np.int64))

    @property
    def total(self) -> EpisodeScore:
        """All episodes as one."""
        return EpisodeScore("all", "", "", "", self.confusion,
                            sum(e.bad_outputs for e in self.episodes))

    def tables(self) -> str:
        """The per-episode lines, the confusion matrix and the summary, as text."""
        width = max([len("file"), *(len(e.file) for e in self.episodes)])
        lines = [(f"{'file':<{width}}  {'outcome':<10} {'source':<6} {'mode':<10} "
                  f"{'steps':>6} {'agree':>7}")]
        lines += [f"{e.file:<{width}}  {e.outcome:<10} {e.source:<6} {e.mode or '-':<10} "
                  f"{e.steps:>6} {_percent(e.agreement):>7}" for e in self.episodes]
        cm = self.confusion
        head = "label \\ predicted"
        lines += ["", f"{head:<18}" + "".join(f"{a:>9}" for a in self.actions)
                  + f"{'steps':>9}{'agree':>9}"]
        for i, name in enumerate(self.actions):
            row = int(cm[i].sum())
            lines.append(f"{name:<18}" + "".join(f"{int(v):>9}" for v in cm[i])
                         + f"{row:>9}{_percent(cm[i, i] / row if row else None):>9}")
        total = self.total
        lines.append(f"{'all':<18}" + "".join(f"{int(v):>9}" for v in cm.sum(axis=0))
                     + f"{total.steps:>9}{_percent(total.agreement):>9}")
        bad = f", {total.bad_outputs} bad outputs scored as stop" if total.bad_outputs else ""
        skipped = f"; {len(self.skipped)} file(s) skipped" if self.skipped else ""
        lines += ["", (f"agreement {_percent(total.agreement)} ({total.agree} of "
                       f"{total.steps} steps) over {len(self.episodes)} episode(s){bad}{skipped}")]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``--json``)."""

        def episode(e: EpisodeScore) -> dict[str, Any]:
            return {"file": e.file, "outcome": e.outcome, "source": e.source, "mode": e.mode,
                    "steps": e.steps, "agree": e.agree, "agreement": e.agreement,
                    "bad_outputs": e.bad_outputs, "confusion": e.confusion.tolist()}

        total = self.total
        return {"model": self.model, "model_sha256": self.model_sha256,
                "actions": list(self.actions), "confusion_rows": "label",
                "steps": total.steps, "agree": total.agree, "agreement": total.agreement,
                "bad_outputs": total.bad_outputs, "confusion": total.confusion.tolist(),
                "episodes": [episode(e) for e in self.episodes],
                "skipped": [{"file": f, "error": why} for f, why in self.skipped]}


_UNUSED_RNG = np.random.default_rng(0)  # choose_actions samples with it, not at temperature 0


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


# ---- replay and scoring ----------------------------------------------------------------


def observations(episode: Episode, fusion: FrameFusion) -> Iterator[Observation]:
    """Each step's observation as the runtime builds it: the step's frames pushed at their
    capture time, the executed actions before the step recorded. ``fusion`` is reset."""
    fusion.reset()
    cameras = fusion.contract.cameras
    for t, stamp in enumerate(episode.timestamp_s.tolist()):
        for cam in cameras:
            fusion.push(cam, episode.images[cam][t], stamp)  # [H, W, 3], as recorded
        yield fusion.observe(stamp)
        fusion.record_action(int(episode.action[t]))


def chosen_action(model: PolicyModel, obs: Observation) -> tuple[int, bool]:
    """(the action the runtime takes from this observation's first chunk step, whether the
    output was bad): the argmax (temperature 0); a bad output
    (:func:`~zima.onboard.policy.output_problem`) is a STOP."""
    out = model.infer(obs.images, obs.action_history)  # [chunk_len, n_actions]
    if output_problem(out, model.contract) is not None:
        return int(Action.STOP), True
    return choose_actions(out, 0.0, _UNUSED_RNG)[0], False


def score_episode(model: PolicyModel, path: Path,
                  on_step: Callable[[], None] = lambda: None) -> EpisodeScore:
    """Score the episode file at ``path`` (``EpisodeFormatError`` when it is not a readable
    episode of the model's contract, ``OSError`` when it cannot be read)."""
    c = model.contract
    with EpisodeReader(path, c) as reader:
        episode = reader.load()
        mode = reader.extras().get("mode", "")
    if not np.isfinite(episode.timestamp_s).all():
        raise EpisodeFormatError(f"{path}: timestamp_s holds values that are not finite")
    confusion = np.zeros((c.n_actions, c.n_actions), np.int64)  # [label, predicted]
    bad = 0
    for t, obs in enumerate(observations(episode, FrameFusion(c))):
        predicted, was_bad = chosen_action(model, obs)
        confusion[int(episode.expert_action[t]), predicted] += 1
        bad += was_bad
        on_step()
    return EpisodeScore(path.name, episode.info.outcome, episode.info.source,
                        mode if isinstance(mode, str) else str(mode), confusion, bad)


def episode_paths(sources: Sequence[Path]) -> list[Path]:
    """The episode files of ``sources``: a folder's ``*.h5`` (sorted, not recursive), a file
    as it is. ``FileNotFoundError`` names a source that does not exist."""
    paths: list[Path] = []
    for source in sources:
        if source.is_dir():
            paths += sorted(source.glob("*.h5"))
        elif source.exists():
            paths.append(source)
        else:
            raise FileNotFoundError(f"{source} does not exist")
    return paths


def score(model: PolicyModel, paths: Sequence[Path],
          progress: Callable[[int, int, int], None] = lambda _i, _n, _s: None,
          on_skip: Callable[[str, str], None] = lambda _f, _why: None) -> ScoreReport:
    """Score ``model`` on every file of ``paths``; unreadable ones are skipped (``on_skip``
    gets the file and the reason). ``progress(file_index, files, steps_done)``."""
    report = ScoreReport(str(model.path), model.sha256, model.contract.actions)
    steps, current = 0, 0

    def step() -> None:
        nonlocal steps
        steps += 1
        progress(current, len(paths), steps)

    for current, path in enumerate(paths):  # noqa: B007 (step() reads it)
        try:
            report.episodes.append(score_episode(model, path, step))
        except (EpisodeFormatError, OSError) as exc:
            report.skipped.append((str(path), str(exc)))
            on_skip(str(path), str(exc))
    return report


def plot_confusion(report: ScoreReport, path: Path) -> Path:
    """The confusion matrix as a PNG: counts, each row shaded by its share of the label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    cm = report.confusion
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # [label, predicted] shares
    fig = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the label's steps")
    n = len(report.actions)
    ax.set(xticks=range(n), yticks=range(n), xticklabels=report.actions,
           yticklabels=report.actions, xlabel="predicted", ylabel="label (recorded)",
           title=f"{Path(report.model).name}: agreement {_percent(report.total.agreement)}")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if rows[i, j] > 0.5 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
