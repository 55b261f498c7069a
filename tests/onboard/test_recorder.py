"""Recorder: real episode files read back with EpisodeReader, a real full disk (a tiny
tmpfs, or a file size limit where mounting is not permitted) and a real SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.onboard.helpers import run
from zima.contract import DEFAULT, Action
from zima.episodes import EpisodeFormatError, EpisodeReader
from zima.onboard.fusion import fit_image
from zima.onboard.recorder import Recorder, RecorderConfig, RecorderError, RecorderStatus

META = {"robot_id": "zima-07", "software": "zima 0.1.0", "model_sha256": "ab" * 32}
H, W = DEFAULT.image_height, DEFAULT.image_width


def frames(value: int) -> dict[str, np.ndarray]:
    """Camera-sized frames of one grey value (+100 on the wrist camera, a smaller sensor)."""
    return {"forward": np.full((480, 640, 3), value, np.uint8),
            "wrist": np.full((240, 320, 3), value + 100, np.uint8)}


def stamps(t: float) -> dict[str, float]:
    return {"forward": t, "wrist": t - 0.01}


async def until(predicate: Callable[[], bool]) -> None:
    """Poll the (writer-thread driven) recorder until ``predicate()``; the run guard bounds it."""
    while not predicate():
        await asyncio.sleep(0.005)


def test_two_episodes_read_back_with_frames_actions_times_outcome_and_metadata(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (300, 500, 3), np.uint8)  # another aspect: cropped and resized

    async def main() -> tuple[list[Path], RecorderStatus]:
        async with Recorder(RecorderConfig(tmp_path, scene="lab"), DEFAULT, META) as rec:
            assert rec.status.leftover_partials == ()
            name = rec.start(source="teleop", now_s=10.0)
            assert rec.status.recording
            assert rec.status.episode == name
            for i in range(5):
                images = frames(i) if i else {"forward": odd, "wrist": frames(0)["wrist"]}
                assert rec.add_step(images, stamps(10 + i / 10), Action.FORWARD if i else 0,
                                    {"battery_mv": 7400 - i, "track_left_mm_s": 3 * i},
                                    now_s=10.02 + i / 10)
            assert rec.status.steps == 5
            first = await rec.stop(outcome="success")
            rec.start(source="supervised", now_s=20.0)
            for i in range(6):
                if i == 2:
                    assert rec.mark_event("takeover", now_s=20.15)
                    assert rec.status.takeover
                if i == 4:
                    rec.mark_event("handback", now_s=20.35)
                rec.add_step(frames(50 + i), stamps(20 + i / 10), Action.LEFT, now_s=20 + i / 10)
            second = await rec.stop(outcome="failure")
            return [first, second], rec.status

    paths, status = run(main)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert status == RecorderStatus(
        recording=False, episode=None, steps=0, episodes_written=2,
        action_counts={"stop": 1, "forward": 4, "left": 6, "right": 0}, dropped_steps=0,
        error=None, takeover=False, leftover_partials=(), last_step_s=20.5)

    with EpisodeReader(paths[0], DEFAULT) as reader:
        ep, extras = reader.load(), reader.extras()
    assert (ep.info.source, ep.info.scene, ep.info.outcome) == ("real", "lab", "success")
    assert extras == {**META, "mode": "teleop", "events": "[]"}
    assert ep.images["forward"].shape == (5, H, W, 3)
    # Fitted exactly as the onboard fusion fits what the policy sees.
    assert np.array_equal(ep.images["forward"][0], fit_image(odd, H, W))
    assert ep.images["forward"][1:, :, :, 0].mean(axis=(1, 2)).tolist() == [1, 2, 3, 4]
    assert ep.images["wrist"][:, 0, 0, 0].tolist() == [100, 101, 102, 103, 104]
    assert ep.action.tolist() == [0, 1, 1, 1, 1]
    np.testing.assert_allclose(ep.timestamp_s, [9.99, 10.09, 10.19, 10.29, 10.39])  # oldest
    assert ep.telemetry["battery_mv"].tolist() == [7400, 7399, 7398, 7397, 7396]
    assert ep.telemetry["track_left_mm_s"].tolist() == [0, 3, 6, 9, 12]
    assert not ep.operator_takeover.any()

    with EpisodeReader(paths[1], DEFAULT) as reader:
        ep, extras = reader.load(), reader.extras()
    assert ep.info.outcome == "failure"
    assert extras["mode"] == "supervised"
    assert json.loads(str(extras["events"])) == [
        {"kind": "takeover", "t_s": 20.15, "step": 2},
        {"kind": "handback", "t_s": 20.35, "step": 4}]
    assert ep.operator_takeover.tolist() == [False, False, True, True, False, False]
    assert ep.images["forward"][:, 5, 5, 1].tolist() == [50, 51, 52, 53, 54, 55]
    assert ep.telemetry == {}


def test_the_configured_source_marks_simulated_episodes(tmp_path: Path) -> None:
    async def main() -> Path:
        config = RecorderConfig(tmp_path, scene="arena", source="sim")  # as `zima sim run`
        async with Recorder(config, DEFAULT, META) as rec:
            rec.start(source="autonomous", now_s=0.0)
            rec.add_step(frames(1), stamps(0.0), Action.FORWARD, now_s=0.0)
            return await rec.stop(outcome="success")

    with EpisodeReader(run(main), DEFAULT) as reader:
        assert (reader.info.source, reader.info.scene) == ("sim", "arena")
    with pytest.raises(ValueError, match="must be one of"):
        RecorderConfig(tmp_path, source="simulated")


def test_discard_drops_the_episode_and_its_actions(tmp_path: Path) -> None:
    async def main() -> RecorderStatus:
        async with Recorder(RecorderConfig(tmp_path), DEFAULT, META) as rec:
            rec.start(source="autonomous", now_s=0.0)
            for i in range(20):
                rec.add_step(frames(i), stamps(i / 10), Action.RIGHT, now_s=i / 10)
            await rec.discard()
            assert not rec.recording
            rec.start(source="autonomous", now_s=5.0)
            rec.add_step(frames(1), stamps(5.0), Action.STOP, now_s=5.0)
            await rec.stop(outcome="success")
            return rec.status

    status = run(main)
    assert status.episodes_written == 1
    assert status.action_counts == {"stop": 1, "forward": 0, "left": 0, "right": 0}
    (kept,) = tmp_path.iterdir()  # no partial of the discarded episode
    assert kept.suffix == ".h5"
    with EpisodeReader(kept) as reader:
        assert len(reader) == 1


def test_shutdown_mid_episode_keeps_it_as_aborted(tmp_path: Path) -> None:
    async def main() -> None:
        async with Recorder(RecorderConfig(tmp_path), DEFAULT) as rec:
            rec.start(source="teleop", now_s=0.0)
            for i in range(3):
                rec.add_step(frames(i), stamps(i / 10), Action.FORWARD, now_s=i / 10)

    run(main)
    (path,) = tmp_path.iterdir()
    with EpisodeReader(path) as reader:
        assert (reader.info.outcome, len(reader)) == ("aborted", 3)


def test_wrong_use_and_bad_input_are_clear_errors(tmp_path: Path) -> None:
    rec = Recorder(RecorderConfig(tmp_path), DEFAULT)
    with pytest.raises(RecorderError, match="async with"):
        rec.start(source="teleop", now_s=0.0)
    with pytest.raises(ValueError, match="model_sha256"):
        Recorder(RecorderConfig(tmp_path), DEFAULT, {"model_sha256": None})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"\['outcome'\]"):
        Recorder(RecorderConfig(tmp_path), DEFAULT, {"outcome": "great"})
    with pytest.raises(ValueError, match="max_queued_steps"):
        RecorderConfig(tmp_path, max_queued_steps=0)

    async def main() -> None:
        async with rec:
            assert not rec.add_step(frames(0), stamps(0), 0, now_s=0)  # not recording
            assert not rec.mark_event("takeover", now_s=0)
            with pytest.raises(RecorderError, match="not recording"):
                await rec.stop(outcome="success")
            with pytest.raises(ValueError, match="source must be one of"):
                rec.start(source="dreaming", now_s=0)
            rec.start(source="teleop", now_s=0)
            with pytest.raises(RecorderError, match="already recording"):
                rec.start(source="teleop", now_s=0)
            with pytest.raises(ValueError, match="unknown telemetry \\['vel_left'\\]"):
                rec.add_step(frames(0), stamps(0), 0, {"vel_left": 1.0}, now_s=0)
            with pytest.raises(ValueError, match="cameras"):
                rec.add_step({"forward": frames(0)["forward"]}, stamps(0), 0, now_s=0)
            with pytest.raises(ValueError, match=r"'wrist'.*uint8"):
                rec.add_step({**frames(0), "wrist": np.zeros((4, 4), np.uint8)}, stamps(0), 0,
                             now_s=0)
            with pytest.raises(ValueError, match="action 7"):
                rec.add_step(frames(0), stamps(0), 7, now_s=0)
            rec.add_step(frames(0), stamps(0), 0, {"battery_mv": 7000}, now_s=0)
            with pytest.raises(ValueError, match="telemetry of the first"):
                rec.add_step(frames(0), stamps(0), 0, now_s=0)
            with pytest.raises(ValueError, match="kind"):
                rec.mark_event("nap", now_s=0)
            with pytest.raises(ValueError, match="outcome must be one of"):
                await rec.stop(outcome="meh")
            await rec.stop(outcome="success")

    run(main)


@contextlib.contextmanager
def tiny_disk(path: Path, size: int) -> Iterator[str]:
    """``path`` on a filesystem of ``size`` bytes: a tmpfs where mounting is permitted
    (ENOSPC), else a file size limit on this process (EFBIG, with SIGXFSZ ignored).
    Yields the error text that writes beyond it will give."""
    path.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, check=False).returncode == 0
    if mounted:
        try:
            yield "No space left on device"
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, limits[1]))
    try:
        yield "File too large"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_stops_recording_with_an_error_and_add_step_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (40, H, W, 3), np.uint8)  # incompressible
    directory = tmp_path / "disk"
    config = RecorderConfig(directory, flush_every=1, max_queued_steps=64)

    async def main(expected: str) -> list[Path]:
        async with Recorder(config, DEFAULT, META) as rec:
            rec.start(source="teleop", now_s=0.0)
            rec.add_step(frames(3), stamps(0.0), Action.FORWARD, now_s=0.0)
            finished = await rec.stop(outcome="success")
            rec.start(source="teleop", now_s=1.0)
            name = rec.status.episode
            for i in range(40):  # 74 KB a step: 1 MB fills within 14 steps
                queued = rec.add_step({"forward": noise[i], "wrist": noise[-1 - i]},
                                      stamps(1 + i / 10), Action.LEFT, now_s=1 + i / 10)
                assert queued or not rec.recording  # never raises, whatever the disk does
                await asyncio.sleep(0)
            await until(lambda: not rec.recording)
            error = rec.status.error
            assert error is not None
            assert f"{directory / str(name)}" in error
            assert expected in error
            assert "partial file was removed" in error
            assert not rec.add_step(frames(0), stamps(9), 0, now_s=9)  # ignored, no raise
            with pytest.raises(RecorderError, match=expected):
                await rec.stop(outcome="success")
            # The next start tries again; the removed partial freed the disk.
            rec.start(source="teleop", now_s=10.0)
            assert rec.status.error is None
            rec.add_step(frames(4), stamps(10.0), Action.STOP, now_s=10.0)
            again = await rec.stop(outcome="success")
            assert rec.status.episodes_written == 2
            return [finished, again]

    with caplog.at_level(logging.ERROR), tiny_disk(directory, 1 << 20) as expected:
        paths = run(lambda: main(expected))
        assert sorted(directory.iterdir()) == sorted(paths)  # nothing of the failed one
        for path, value in zip(paths, (3, 4), strict=True):
            with EpisodeReader(path) as reader:
                episode = reader.load()
            assert len(episode) == 1
            assert (episode.images["forward"] == value).all()
    assert any(expected in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


CHILD = """
import asyncio, sys
from pathlib import Path
import numpy as np
from zima.contract import DEFAULT
from zima.onboard.recorder import Recorder, RecorderConfig

def step(rec, i):
    images = {"forward": np.full((480, 640, 3), i, np.uint8),
              "wrist": np.full((480, 640, 3), 200 - i, np.uint8)}
    rec.add_step(images, {"forward": i / 10, "wrist": i / 10}, i % 4, now_s=i / 10)

async def main():
    directory = Path(sys.argv[1])
    async with Recorder(RecorderConfig(directory, flush_every=4), DEFAULT,
                        {"robot_id": "zima-07"}) as rec:
        rec.start(source="teleop", now_s=0.0)
        for i in range(12):
            step(rec, i)
        await rec.stop(outcome="success")
        name = rec.start(source="teleop", now_s=2.0)
        for i in range(12):
            step(rec, 20 + i)
        while not (directory / (name + ".partial")).exists():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # a few steps written
        sys.stdout.write("recording\\n")
        sys.stdout.flush()
        await asyncio.sleep(60)

asyncio.run(main())
"""


def test_sigkill_mid_episode_leaves_finished_episodes_intact(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30.0)  # hang guard
        assert ready
        assert child.stdout.readline() == "recording\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    finished = sorted(tmp_path.glob("*.h5"))
    partials = sorted(tmp_path.glob("*.partial"))
    assert len(finished) == 1
    assert len(partials) == 1
    with EpisodeReader(finished[0]) as reader:
        episode, extras = reader.load(), reader.extras()
    assert episode.info.outcome == "success"
    assert extras["robot_id"] == "zima-07"
    assert episode.action.tolist() == [i % 4 for i in range(12)]
    assert episode.images["forward"][:, 0, 0, 0].tolist() == list(range(12))
    assert episode.images["wrist"][:, 0, 0, 0].tolist() == [200 - i for i in range(12)]
    with pytest.raises(EpisodeFormatError):
        EpisodeReader(partials[0])

    async def restart() -> RecorderStatus:
        async with Recorder(RecorderConfig(tmp_path), DEFAULT) as rec:
            return rec.status

    assert run(restart).leftover_partials == (partials[0].name,)
    assert sorted(tmp_path.iterdir()) == sorted([*finished, *partials])  # left as they were
