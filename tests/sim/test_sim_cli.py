"""`zima sim`: scenes, the expert's summary and its video."""

import argparse
from pathlib import Path

import cv2
import pytest

from zima.contract import DEFAULT
from zima.sim import cli
from zima.sim.scenes import SCENES
from zima.sim.video import CODECS


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_scenes_lists_every_registered_scene(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("scenes") == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(SCENES)


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_expert_prints_success_rate_and_writes_a_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    video = tmp_path / "not" / "yet" / f"episode{suffix}"  # folders are made as needed
    assert _run("expert", "--scene", "arena", "--episodes", "3", "--video", str(video)) == 0
    out = capsys.readouterr().out
    assert "success 100.0% over 3 episodes" in out
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    assert ok
    assert frame.shape == (DEFAULT.image_height, DEFAULT.image_width, 3)
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) > 5
    capture.release()


def test_bad_arguments_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("expert", "--scene", "moon") == 2
    assert _run("expert", "--video", "out.gif") == 2
    assert "error" in capsys.readouterr().err
