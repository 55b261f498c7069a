"""`zima episodes`: list, verify, mark, remove and plot an episode folder, through the CLI."""

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from zima.cli import main
from zima.contract import DEFAULT, Action, Contract
from zima.episodes import EpisodeInfo, EpisodeReader, EpisodeWriter, mark_bad, unmark_bad
from zima.training.config import TrainConfig
from zima.training.score import episode_paths
from zima.training.train import episode_files

SMALL = Contract(image_height=12, image_width=16)


def _write(path: Path, actions: Sequence[int], c: Contract = SMALL, outcome: str = "success",
           source: str = "sim") -> Path:
    with EpisodeWriter(path, EpisodeInfo(source, "arena", seed=1), c, flush_every=4) as w:
        for t, a in enumerate(actions):
            frame = np.full((c.image_height, c.image_width, 3), t * 10, np.uint8)
            w.append(dict.fromkeys(c.cameras, frame), a, t / c.control_hz,
                     operator_takeover=t == 0)
        w.set_outcome(outcome)
    return path


def _partial(path: Path, c: Contract = SMALL) -> Path:
    """A writer that never closed: what a crash leaves."""
    w = EpisodeWriter(path, EpisodeInfo("real", "lab"), c)
    w.append(dict.fromkeys(c.cameras, np.zeros((c.image_height, c.image_width, 3), np.uint8)),
             0, 0.0)
    w.abort()  # as the context manager does when an exception leaves it
    return path.with_name(path.name + ".partial")


def test_list_shows_length_outcome_source_cameras_and_actions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "a.h5", [Action.FORWARD] * 3 + [Action.STOP])
    _write(tmp_path / "b.h5", [Action.LEFT, Action.RIGHT], outcome="collision", source="real")
    _partial(tmp_path / "c.h5")
    assert main(["episodes", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    a_row = next(line for line in out.splitlines() if line.startswith("a.h5"))
    assert a_row.split()[:6] == ["a.h5", "ok", "4", "success", "sim", "arena"]
    assert "forward,wrist" in a_row
    assert "25%" in a_row
    assert "75%" in a_row
    b_row = next(line for line in out.splitlines() if line.startswith("b.h5"))
    assert "collision" in b_row
    assert "real" in b_row
    assert "c.h5.partial" in out
    assert "partial" in out
    assert "2 episodes, 6 steps" in out
    assert "forward 50%" in out


def test_verify_passes_a_sound_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "a.h5", [1, 2, 3], c=DEFAULT)
    assert main(["episodes", "verify", str(tmp_path)]) == 0
    assert "1 episode(s) sound, 0 problem(s)" in capsys.readouterr().out


def test_verify_names_each_bad_file_and_why(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "good.h5", [1, 2, 3], c=DEFAULT)
    _write(tmp_path / "small.h5", [1, 2], c=SMALL)  # another contract than training's
    leftover = _partial(tmp_path / "crashed.h5")
    truncated = tmp_path / "truncated.h5"
    data = _write(tmp_path / "whole.h5", [1] * 20, c=DEFAULT).read_bytes()
    (tmp_path / "whole.h5").unlink()
    truncated.write_bytes(data[: len(data) // 2])
    # A .partial renamed by hand is still not a finished file: it has no n_steps.
    renamed = tmp_path / "renamed.h5"
    _partial(tmp_path / "renamed.h5", DEFAULT).rename(renamed)
    assert main(["episodes", "verify", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert f"{leftover}: unfinished" in err
    assert f"{tmp_path / 'small.h5'}: recorded under another contract" in err
    assert f"{truncated}:" in err
    assert f"{renamed}:" in err
    assert "incomplete episode" in err
    assert "good.h5" not in err
    assert "1 episode(s) sound, 4 problem(s)" in captured.out


def test_verify_refuses_mixed_contracts_and_an_empty_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["episodes", "verify", str(tmp_path)]) == 1
    assert "no episode files" in capsys.readouterr().err
    _write(tmp_path / "a.h5", [1], c=SMALL)
    _write(tmp_path / "b.h5", [1], c=Contract(image_height=12, image_width=18))
    assert main(["episodes", "verify", "--any-contract", str(tmp_path)]) == 1
    assert "2 different contracts" in capsys.readouterr().err


def test_verify_refuses_timestamps_that_go_back(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with EpisodeWriter(tmp_path / "a.h5", EpisodeInfo("sim", "arena"), DEFAULT) as w:
        for stamp in (0.0, 0.2, 0.1):
            w.append(dict.fromkeys(DEFAULT.cameras, np.zeros((96, 128, 3), np.uint8)), 1, stamp)
    assert main(["episodes", "verify", str(tmp_path)]) == 1
    assert "timestamp_s is not finite and non-decreasing" in capsys.readouterr().err


def test_a_marked_episode_leaves_the_training_set_until_unmarked(tmp_path: Path) -> None:
    config = cast(TrainConfig, SimpleNamespace(data=SimpleNamespace(dirs=(str(tmp_path),))))
    keep, bad = _write(tmp_path / "keep.h5", [1, 2]), _write(tmp_path / "bad.h5", [3, 3])
    assert main(["episodes", "mark", str(bad)]) == 0
    marked = tmp_path / "bad.h5.bad"
    assert marked.exists()
    assert not bad.exists()
    assert episode_files(config) == [keep]  # what `zima train` clones
    assert episode_paths([tmp_path]) == [keep]  # what `zima score` scores
    with EpisodeReader(marked, SMALL) as reader:  # the data is intact
        assert reader.read("action").tolist() == [3, 3]
    assert main(["episodes", "mark", "--undo", str(marked)]) == 0
    assert episode_files(config) == [bad, keep]


def test_mark_refuses_what_is_not_a_finished_episode(tmp_path: Path) -> None:
    leftover = _partial(tmp_path / "x.h5")
    with pytest.raises(ValueError, match="only a finished episode"):
        mark_bad(leftover)
    assert main(["episodes", "mark", str(leftover)]) == 2
    ep = _write(tmp_path / "y.h5", [1])
    mark_bad(ep)
    _write(ep, [2])  # a new episode under the old name
    with pytest.raises(FileExistsError):
        mark_bad(ep)  # would overwrite the marked one
    with pytest.raises(FileExistsError):
        unmark_bad(ep)  # would overwrite the new one
    with pytest.raises(ValueError, match="not a marked episode"):
        unmark_bad(leftover)


def test_remove_partial_and_marked_files(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    keep = _write(tmp_path / "keep.h5", [1])
    leftover = _partial(tmp_path / "crashed.h5")
    marked = mark_bad(_write(tmp_path / "bad.h5", [1]))
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["episodes", "remove", "--dry-run", "--partial", str(tmp_path),
                 "--marked", str(tmp_path)]) == 0
    assert leftover.exists()
    assert marked.exists()
    assert f"would remove {leftover}" in capsys.readouterr().out
    assert main(["episodes", "remove", "--partial", str(tmp_path), "--marked",
                 str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5", "notes.txt"]
    assert main(["episodes", "remove", str(tmp_path / "notes.txt")]) == 2  # not an episode
    assert main(["episodes", "remove", str(keep)]) == 0
    assert not keep.exists()


def test_plot_draws_the_action_distribution(tmp_path: Path) -> None:
    _write(tmp_path / "a.h5", [0, 1, 1, 2, 3])
    png = tmp_path / "plots" / "actions.png"
    assert main(["episodes", "plot", str(tmp_path), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["episodes", "plot", str(tmp_path / "plots"), "--out", str(png)]) == 2


def test_a_missing_folder_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("list", "verify"):
        assert main(["episodes", command, str(tmp_path / "nowhere")]) == 2
        assert "is not a folder" in capsys.readouterr().err
