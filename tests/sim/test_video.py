"""The sim's one video writer: size, scale, labels, codec by suffix."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from zima.sim.video import CODECS, VideoWriter


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_frames_are_enlarged_labelled_and_counted(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "new" / f"film{suffix}"  # the folder is made
    image = np.zeros((24, 32, 3), np.uint8)  # [H, W, 3] RGB
    image[:, :16] = (255, 0, 0)  # red left half
    with VideoWriter(path, 10.0, (32, 24), scale=4) as video:
        video.add(image)
        video.add(image, ["seed 7", "FORWARD"])
        video.add(image, ["seed 7"])
    assert video.frames == 3
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
        ok, plain = capture.read()  # [96, 128, 3] BGR
        assert ok
        assert plain.shape == (96, 128, 3)
        assert plain[60, 20, 2] > 200 > plain[60, 20, 0]  # still red on the left (BGR order)
        assert plain[60, 100].max() < 40  # and black on the right
        ok, labelled = capture.read()
        assert ok
        assert labelled[:56, :80].max() > 200 > plain[:56, 64:80].max()  # white text up left
    finally:
        capture.release()


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mp4"):
        VideoWriter(tmp_path / "film.gif", 10.0, (32, 24))
