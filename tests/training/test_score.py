"""`zima score`: tiny ONNX models whose choices are known (tests/onboard/onnx_models.py)
scored on hand-written episodes, so every agreement and confusion count is exact."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.onboard.onnx_models import build_model
from zima.contract import DEFAULT, Action, Contract
from zima.episodes import EpisodeInfo, EpisodeReader, EpisodeWriter
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import PolicyModel, load_model
from zima.training import score_cli
from zima.training.score import observations, score, score_episode

TINY = Contract(image_height=12, image_width=16, image_history=2, action_history=2,
                chunk_len=2)
S, F, L, R = (int(a) for a in Action)  # STOP, FORWARD, LEFT, RIGHT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_episode(path: Path, contract: Contract, actions: Sequence[int], *,
                  labels: Sequence[int] | None = None, brightness: Sequence[int] | None = None,
                  times_s: Sequence[float] | None = None, outcome: str = "success",
                  source: str = "real") -> Path:
    """An episode of ``actions``; frames of a uniform ``brightness`` per step (default: the
    step index), captured at ``times_s`` (default 0.1 s apart); ``labels`` an expert's."""
    shape = (contract.image_height, contract.image_width, 3)
    with EpisodeWriter(path, EpisodeInfo(source, "lab", outcome=outcome), contract) as w:
        for t, action in enumerate(actions):
            level = t if brightness is None else brightness[t]
            frame = np.full(shape, level, np.uint8)
            w.append(dict.fromkeys(contract.cameras, frame), action,
                     t * 0.1 if times_s is None else times_s[t],
                     expert_action=None if labels is None else labels[t])
    return path


def table_model(path: Path, contract: Contract, action: Action,
                nan_above_mean: float | None = None) -> PolicyModel:
    """A model whose every chunk step prefers ``action`` (NaN there on bright input)."""
    table = np.zeros((contract.chunk_len, contract.n_actions), np.float32)
    table[:, int(action)] = 5.0
    build_model(path, contract, kind="table", table=table, nan_above_mean=nan_above_mean,
                nan_column=int(action))
    return load_model(path, contract)


def test_a_constant_model_agrees_where_the_label_is_its_action(tmp_path: Path) -> None:
    model = table_model(tmp_path / "forward.onnx", TINY, Action.FORWARD)
    actions = [S, F, F, F, L, L, F, R, S]  # forward at 4 of 9 steps
    result = score_episode(model, write_episode(tmp_path / "a.h5", TINY, actions))
    expected = np.zeros((4, 4), np.int64)
    expected[:, F] = np.bincount(actions, minlength=4)  # every step predicted forward
    assert (result.confusion == expected).all()
    assert (result.steps, result.agree, result.agreement) == (9, 4, 4 / 9)
    assert (result.outcome, result.source, result.mode, result.bad_outputs) == (
        "success", "real", "", 0)


def test_the_history_is_the_executed_actions_and_the_label_the_experts(tmp_path: Path) -> None:
    # The `history` model's first choice is (newest history entry + 1) mod 4: the step
    # before's executed action plus one (STOP before the start). Where an expert relabelled
    # a step, its label is what the choice is compared with, never the executed action.
    model = load_model(build_model(tmp_path / "history.onnx", TINY, kind="history"), TINY)
    actions = [S, F, L, R, R, F, S]
    labels = [F, F, L, R, S, L, F]  # differs from the executed action at 4 steps
    result = score_episode(model, write_episode(tmp_path / "a.h5", TINY, actions,
                                                labels=labels))
    predicted = [(previous + 1) % 4 for previous in [S, *actions[:-1]]]  # [F, F, L, R, S, S, L]
    expected = np.zeros((4, 4), np.int64)
    for label, choice in zip(labels, predicted, strict=True):
        expected[label, choice] += 1
    assert (result.confusion == expected).all()
    # 5 of 7; scored against the executed actions it would be 3, with the labels as the
    # history 4
    assert result.agree == 5


def test_a_bad_output_is_a_stop_and_counted(tmp_path: Path) -> None:
    # NaN on observations brighter than 130 on average (the random warm-up's is ~127.5):
    # frames are 255 from step 5 on, but step 5 also sees step 4's dark frame (mean 127.5),
    # so steps 6.. are bad. The runtime would stop there, and so does the score.
    model = table_model(tmp_path / "nan.onnx", TINY, Action.FORWARD, nan_above_mean=130.0)
    actions = [F] * 10
    brightness = [0] * 5 + [255] * 5
    result = score_episode(model, write_episode(tmp_path / "a.h5", TINY, actions,
                                                brightness=brightness))
    assert result.bad_outputs == 4
    assert result.confusion[F].tolist() == [4, 6, 0, 0]  # 4 stops (bad), 6 forward


def test_the_image_history_is_picked_by_capture_time_as_the_runtime_does(
        tmp_path: Path) -> None:
    # Frames of step t have brightness 10 t. After the gap (an idle run trimmed away) the
    # frame nearest 0.4 s is the one of 0.5 s, not the row before it.
    path = write_episode(tmp_path / "gap.h5", TINY, [F, L, R, F],
                         brightness=[0, 10, 20, 30], times_s=[0.0, 0.1, 0.2, 0.5])
    with EpisodeReader(path, TINY) as reader:
        episode = reader.load()
    seen = [(obs.images[0, :, 0, 0, 0].tolist(), obs.action_history[0].tolist())
            for obs in observations(episode, FrameFusion(TINY))]
    # images: [forward oldest, forward newest, wrist oldest, wrist newest]
    assert seen == [([0, 0, 0, 0], [S, S]), ([0, 10, 0, 10], [S, F]),
                    ([10, 20, 10, 20], [F, L]), ([30, 30, 30, 30], [L, R])]


def test_unreadable_files_are_skipped_with_their_reason_and_counted(tmp_path: Path) -> None:
    model = table_model(tmp_path / "stop.onnx", TINY, Action.STOP)
    good = write_episode(tmp_path / "good.h5", TINY, [S, S, F])
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file" * 10)
    other = write_episode(tmp_path / "other.h5", DEFAULT, [S, F])  # another contract
    skipped: list[tuple[str, str]] = []
    report = score(model, [junk, good, other, tmp_path / "gone.h5"],
                   on_skip=lambda f, why: skipped.append((f, why)))
    assert [e.file for e in report.episodes] == ["good.h5"]
    assert report.skipped == skipped
    assert [Path(f).name for f, _ in skipped] == ["junk.h5", "other.h5", "gone.h5"]
    assert "not a readable HDF5 file" in skipped[0][1]
    assert "another contract" in skipped[1][1]
    assert report.total.agree == 2


def test_an_empty_episode_has_no_agreement(tmp_path: Path) -> None:
    model = table_model(tmp_path / "stop.onnx", TINY, Action.STOP)
    result = score_episode(model, write_episode(tmp_path / "empty.h5", TINY, []))
    assert (result.steps, result.agreement) == (0, None)


# ---- the command -------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    score_cli.add_arguments(parser)
    return score_cli.run(parser.parse_args(argv))


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """Two short episodes of the runtime's contract and one bad file, in one folder."""
    folder = tmp_path / "real"
    folder.mkdir()
    write_episode(folder / "a.h5", DEFAULT, [S, F, F, F, L, S], outcome="success")
    write_episode(folder / "b.h5", DEFAULT, [F, F, R, R], outcome="failure", source="sim")
    (folder / "c.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    return folder


def test_the_command_prints_episodes_the_confusion_matrix_and_writes_json_and_png(
        recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = table_model(tmp_path / "forward.onnx", DEFAULT, Action.FORWARD).path
    out_json, out_png = tmp_path / "score.json", tmp_path / "cm.png"
    assert _cli([str(model), str(recorded), "--json", str(out_json), "--plot", str(out_png),
                 "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "skipped" in err
    assert "c.h5" in err
    lines = out.splitlines()
    assert any(line.split() == ["a.h5", "success", "real", "-", "6", "50.0%"] for line in lines)
    assert any(line.split() == ["b.h5", "failure", "sim", "-", "4", "50.0%"] for line in lines)
    assert any(line.split() == ["forward", "0", "5", "0", "0", "5", "100.0%"] for line in lines)
    assert any(line.split() == ["stop", "0", "2", "0", "0", "2", "0.0%"] for line in lines)
    assert any(line.split() == ["all", "0", "10", "0", "0", "10", "50.0%"] for line in lines)
    assert "agreement 50.0% (5 of 10 steps) over 2 episode(s); 1 file(s) skipped" in out
    report = json.loads(out_json.read_text())
    assert (report["steps"], report["agree"], report["agreement"]) == (10, 5, 0.5)
    assert report["actions"] == ["stop", "forward", "left", "right"]
    assert report["confusion"] == [[0, 2, 0, 0], [0, 5, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0]]
    assert [e["file"] for e in report["episodes"]] == ["a.h5", "b.h5"]
    assert [Path(s["file"]).name for s in report["skipped"]] == ["c.h5"]
    assert out_png.read_bytes().startswith(PNG_MAGIC)


def test_json_to_stdout_replaces_the_tables(recorded: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = table_model(tmp_path / "stop.onnx", DEFAULT, Action.STOP).path
    assert _cli([str(model), str(recorded / "a.h5"), "--json", "-", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["steps"], report["agree"]) == (6, 2)


def test_the_command_fails_when_nothing_can_be_scored(recorded: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = table_model(tmp_path / "stop.onnx", DEFAULT, Action.STOP).path
    assert _cli([str(model), str(recorded / "c.h5"), "--quiet"]) == 2
    assert "no episode could be scored (1 file(s) skipped)" in capsys.readouterr().err
    assert _cli([str(model), str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli([str(model), str(empty)]) == 2
    assert "no episode files" in capsys.readouterr().err
    tiny = build_model(tmp_path / "tiny.onnx", TINY, kind="table")  # another contract
    assert _cli([str(tiny), str(recorded)]) == 2
    assert "the runtime refuses this model" in capsys.readouterr().err
