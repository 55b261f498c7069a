"""Camera and CameraRig through the real OpenCV path: video files written with
cv2.VideoWriter (MJPG in .avi) opened with cv2.VideoCapture by the same ``open_capture``
the robot uses. A file that ends behaves like an unplugged camera; a deleted file like a
device that is gone until it is plugged back in.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from zima.onboard.camera import Camera, CameraOptions, CameraRig
from zima.onboard.camera_config import CameraConfig, CameraOpenError, CameraState, CameraStatus
from zima.onboard.fusion import fit_image

GUARD_S = 10.0  # wall-clock guard of every wait below

BLUE_BGR = (255, 0, 0)


def write_video(path: Path, n_frames: int, size_wh: tuple[int, int] = (160, 120)) -> Path:
    """An MJPG .avi of ``n_frames`` frames: blue centre, red border (2 px wide)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size_wh)
    assert writer.isOpened()
    w, h = size_wh
    for _ in range(n_frames):
        bgr = np.zeros((h, w, 3), np.uint8)  # [H, W, 3] BGR
        bgr[:] = (0, 0, 255)
        bgr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = BLUE_BGR
        writer.write(bgr)
    writer.release()
    return path


async def until(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(GUARD_S):
        while not predicate():
            await asyncio.sleep(0.005)
    assert predicate(), what


async def status_until(cam: Camera, predicate: Callable[[CameraStatus], bool]) -> CameraStatus:
    """The first status snapshot (at time 0) for which ``predicate`` holds."""
    async with asyncio.timeout(GUARD_S):
        while not predicate(status := cam.status(0.0)):
            await asyncio.sleep(0.001)
    return status


def test_frames_are_cropped_rgb_and_stamped_with_the_injected_clock(tmp_path: Path) -> None:
    video = write_video(tmp_path / "forward.avi", 30)
    ticks = itertools.count(100.0, 0.5)  # a clock that only advances when read

    async def main() -> None:
        config = CameraConfig(name="forward", source=str(video), crop=0.5)
        async with Camera(config, CameraOptions(clock=lambda: next(ticks))) as cam:
            await until(lambda: cam.status(0.0).frames >= 3, "frames")
            frame = cam.latest()
            assert frame is not None
            assert frame.camera == "forward"
            assert frame.image_rgb.shape == (60, 80, 3)  # the central half of 120 x 160
            assert frame.image_rgb.dtype == np.uint8
            blue = frame.image_rgb.reshape(-1, 3).mean(axis=0)  # only the blue centre is left
            assert blue[2] > 200
            assert blue[0] < 50
            assert blue[1] < 50
            assert frame.captured_s >= 100.0
            assert (frame.captured_s - 100.0) % 0.5 == 0  # a value of the injected clock

    asyncio.run(main())


def test_fitted_frames_are_made_on_the_capture_thread_at_the_policy_size(
    tmp_path: Path,
) -> None:
    video = write_video(tmp_path / "forward.avi", 10)

    async def main() -> None:
        config = CameraConfig(name="forward", source=str(video))
        async with Camera(config, CameraOptions(fit_to=(48, 64))) as cam:
            await until(lambda: cam.status(0.0).frames >= 1, "a frame")
            frame = cam.latest()
            assert frame is not None
            assert frame.fitted is not None
            assert frame.fitted.shape == (48, 64, 3)
            np.testing.assert_array_equal(frame.fitted, fit_image(frame.image_rgb, 48, 64))
        async with Camera(config) as plain:
            await until(lambda: plain.status(0.0).frames >= 1, "a frame")
            unfitted = plain.latest()
            assert unfitted is not None
            assert unfitted.fitted is None

    asyncio.run(main())


def test_a_source_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-camera.avi"
    seen: list[CameraStatus] = []

    async def main() -> None:
        config = CameraConfig(name="wrist", source=str(missing))
        with pytest.raises(CameraOpenError, match=r"camera 'wrist': cannot open source .*no-such"):
            async with Camera(config, CameraOptions(on_status=seen.append)):
                pass
        await asyncio.sleep(0)  # let the thread's status reports run on the loop

    asyncio.run(main())
    failed = [s for s in seen if s.state is CameraState.FAILED]
    assert failed
    assert failed[0].error is not None
    assert "cannot open source" in failed[0].error


def test_a_source_that_ends_goes_stale_and_is_retried(tmp_path: Path) -> None:
    video = write_video(tmp_path / "forward.avi", 5)
    now_s = [0.0]

    async def main() -> None:
        config = CameraConfig(name="forward", source=str(video), stale_after_s=0.2,
                              retry_min_s=0.01, retry_max_s=0.02)
        async with Camera(config, CameraOptions(clock=lambda: now_s[0])) as cam:
            # The file ends after 5 frames (an unplugged camera); each reopen reads it again.
            await until(lambda: cam.status(0.0).failures >= 3, "three failures")
            assert cam.status(0.0).frames >= 15
            ended = await status_until(cam, lambda s: s.state is CameraState.FAILED)
            assert ended.error is not None
            assert "stream ended" in ended.error
            video.unlink()  # and now it stays away: every reopen fails
            await until(lambda: "cannot open" in (cam.status(0.0).error or ""), "open fails")
            now_s[0] = 1.0  # nothing captured since: every frame was stamped 0.0
            status = cam.status(1.0)
            assert status.state is CameraState.FAILED
            assert status.stale
            assert status.age_s == pytest.approx(1.0)
            assert not cam.status(0.1).stale

    asyncio.run(main())


def test_a_vanished_source_is_reopened_when_it_comes_back(tmp_path: Path) -> None:
    spare = write_video(tmp_path / "spare.avi", 5)
    video = tmp_path / "forward.avi"
    shutil.copy(spare, video)

    async def main() -> None:
        config = CameraConfig(name="forward", source=str(video), retry_min_s=0.01,
                              retry_max_s=0.05)
        async with Camera(config) as cam:
            await until(lambda: cam.status(0.0).frames >= 5, "first frames")
            video.unlink()  # unplugged: reopening fails until it is back
            failures = cam.status(0.0).failures
            await until(lambda: cam.status(0.0).failures >= failures + 3, "failed reopens")
            status = cam.status(0.0)
            assert status.error is not None
            assert "cannot open source" in status.error
            frames = status.frames
            shutil.copy(spare, video)  # plugged back in
            await until(lambda: cam.status(0.0).frames > frames, "frames again")

    asyncio.run(main())


def test_rig_enters_every_camera_and_hands_out_each_new_frame_once(tmp_path: Path) -> None:
    configs = [CameraConfig(name=name, source=str(write_video(tmp_path / f"{name}.avi", 200)))
               for name in ("forward", "wrist")]

    async def main() -> None:
        async with CameraRig(configs) as rig:
            await until(lambda: all(c.latest() is not None for c in rig.cameras.values()),
                        "a frame from each")
            frames = rig.new_frames()
            assert sorted(f.camera for f in frames) == ["forward", "wrist"]
            again = rig.new_frames()
            seqs = {f.camera: f.seq for f in frames}
            assert all(f.seq > seqs[f.camera] for f in again)
        assert all(s.state is CameraState.STOPPED for s in rig.status(0.0).values())

    asyncio.run(main())


def test_rig_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="distinct"):
        CameraRig([CameraConfig(name="forward"), CameraConfig(name="forward", source=1)])


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="crop"):
        CameraConfig(crop=0.0)
    with pytest.raises(ValueError, match="fps"):
        CameraConfig(fps=0)
