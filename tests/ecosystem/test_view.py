"""`zima view`: episode files and a live robot's telemetry as rerun recordings, read back with
rerun's own reader (``rerun.chunk.RrdReader``). No viewer is ever spawned here: every test
saves a .rrd.

The live tests run a real Mosquitto with the sample ACL; the robot side is the onboard
``Telemetry`` publisher with the robot's account, as the runtime publishes, and the viewer
uses the operator's. Waits are on what arrived; wall-clock limits are hang guards.
"""

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rerun as rr
from hypothesis import given, settings
from hypothesis import strategies as st
from rerun.chunk import RrdReader

from tests.host.hostile import HOSTILE, publish_as_robot
from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, ROBOT_PASSWORD, Broker
from tests.onboard.helpers import run
from zima.cli import main
from zima.contract import DEFAULT, Action
from zima.ecosystem.view import LiveLogger, watch_robot
from zima.episodes import EpisodeInfo, EpisodeReader, EpisodeWriter
from zima.host.mqtt import HostMqttConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.telemetry import Telemetry
from zima.sim.collect import CollectConfig, record_episode
from zima.sim.env import EnvConfig, ZimaEnv

SHORT = EnvConfig(time_limit_s=5.0)


class Recording:
    """A saved .rrd as rows per entity: {entity: [row dict]} of its temporal chunks, and
    the static components per entity."""

    def __init__(self, path: Path) -> None:
        reader = RrdReader(path)
        [self.entry] = reader.recordings()
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.static: dict[str, dict[str, Any]] = defaultdict(dict)
        for chunk in reader.stream():
            batch = chunk.to_record_batch()
            # Time columns as int64 nanoseconds (Python's datetime stops at microseconds).
            columns = [c.cast(pa.int64()) if pa.types.is_temporal(c.type) else c
                       for c in batch.columns]
            for row in pa.RecordBatch.from_arrays(columns, batch.schema.names).to_pylist():
                row.pop("rerun.controls.RowId")
                if chunk.is_static:
                    self.static[chunk.entity_path].update(row)
                else:
                    self.rows[chunk.entity_path].append(row)
        for rows in self.rows.values():
            rows.sort(key=lambda r: r.get("step", 0))

    def values(self, entity: str, column: str = "Scalars:scalars") -> list[Any]:
        """One value per row (a one-element batch unpacked)."""
        out = [r[column] for r in self.rows[entity] if r.get(column) is not None]
        return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in out]


# --- episode files -----------------------------------------------------------------------------


def test_a_simulated_episode_becomes_a_recording_of_every_stream(tmp_path: Path) -> None:
    env = ZimaEnv("arena", SHORT)
    try:
        stats = record_episode(env, 12, tmp_path, CollectConfig(env=SHORT, keep_failures=True))
    finally:
        env.close()
    assert stats.path is not None
    with EpisodeReader(stats.path) as reader:
        episode = reader.load()
    n = len(episode)
    out = tmp_path / "episode.rrd"
    assert main(["view", str(stats.path), "--save", str(out)]) == 0
    rec = Recording(out)
    assert rec.entry.application_id == "zima"
    per_step = ["cameras/forward", "cameras/wrist", "action/executed", "tracks/target_left_mm_s",
                "tracks/target_right_mm_s", "tracks/left_mm_s", "tracks/right_mm_s", "takeover"]
    for entity in per_step:
        assert len(rec.rows[f"/{entity}"]) == n, entity
    assert "/battery/battery_mv" not in rec.rows  # the simulator records no battery
    assert "/action/expert" not in rec.rows  # no correction: the expert drove
    # One timeline: the episode's own timestamps (durations), and the step index.
    times = [r["time"] / 1e9 for r in rec.rows["/action/executed"]]
    np.testing.assert_allclose(times, episode.timestamp_s, atol=1e-6)
    assert [r["step"] for r in rec.rows["/cameras/wrist"]] == list(range(n))
    # Values: actions, the targets they stand for, measured speeds, the frames themselves.
    assert rec.values("/action/executed") == [float(a) for a in episode.action]
    turns = [t for t in range(n) if episode.action[t] == Action.RIGHT]
    assert turns, "the expert's episode turns at least once"
    assert rec.values("/tracks/target_left_mm_s")[turns[0]] == DEFAULT.turn_mm_s
    assert rec.values("/tracks/target_right_mm_s")[turns[0]] == -DEFAULT.turn_mm_s
    np.testing.assert_allclose(rec.values("/tracks/left_mm_s"),
                               episode.telemetry["track_left_mm_s"], rtol=1e-6)
    last = rec.rows["/cameras/forward"][-1]["Image:buffer"][0]
    assert np.array_equal(np.asarray(last, np.uint8), episode.images["forward"][-1].ravel())
    assert rec.static["/cameras/forward"]["Image:format"][0]["width"] == DEFAULT.image_width
    assert rec.values("/events", "TextLog:text") == ["outcome: success"]
    doc = rec.static["/episode"]["TextDocument:text"][0]
    assert "- scene: arena" in doc
    assert "- seed: 12" in doc
    assert "- driver: expert" in doc


def test_a_robot_episode_shows_battery_take_overs_and_corrections(tmp_path: Path) -> None:
    path, n = tmp_path / "robot.h5", 12
    takeover = [False] * 3 + [True] * 4 + [False] * 5  # an operator steps in for 4 steps
    rng = np.random.default_rng(7)
    info = EpisodeInfo("real", "kitchen", outcome="failure")
    with EpisodeWriter(path, info) as writer:
        writer.set_attributes({"robot_id": "zima-7"})
        for t in range(n):
            frame = rng.integers(0, 256, (DEFAULT.image_height, DEFAULT.image_width, 3), np.uint8)
            writer.append(dict.fromkeys(DEFAULT.cameras, frame), Action.FORWARD, 100.0 + 0.1 * t,
                          expert_action=Action.LEFT if takeover[t] else Action.FORWARD,
                          operator_takeover=takeover[t],
                          telemetry={"battery_mv": 12_000.0 - t, "track_left_mm_s": 290.0,
                                     "track_right_mm_s": 310.0})
    out = tmp_path / "robot.rrd"
    assert main(["view", str(path), "--save", str(out)]) == 0
    rec = Recording(out)
    assert rec.values("/battery/battery_mv") == [12_000.0 - t for t in range(n)]
    assert rec.values("/takeover") == [float(t) for t in takeover]
    assert rec.values("/action/expert") == [2.0 if t else 1.0 for t in takeover]
    assert rec.values("/events", "TextLog:text") == [
        "operator took over", "policy drives again", "outcome: failure"]
    assert [r["step"] for r in rec.rows["/events"]] == [3, 7, n - 1]
    assert rec.rows["/events"][0]["time"] == pytest.approx(100.3e9)
    doc = rec.static["/episode"]["TextDocument:text"][0]
    assert "- robot_id: zima-7" in doc
    assert "- take-over steps: 4" in doc


def test_bad_arguments_and_files_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    assert main(["view"]) == 1
    assert "give EPISODE.h5 or --robot NAME" in capsys.readouterr().err
    assert main(["view", str(bad), "--robot", "zima"]) == 1
    assert "not both" in capsys.readouterr().err
    assert main(["view", str(bad), "--save", str(tmp_path / "x.mp4")]) == 1
    assert "ends in .rrd" in capsys.readouterr().err
    assert main(["view", str(bad), "--save", str(tmp_path / "x.rrd")]) == 1
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert not (tmp_path / "x.rrd").exists()
    assert main(["view", "--robot", "zima", "--duration", "0"]) == 1
    assert "--duration 0.0 must be a positive number" in capsys.readouterr().err


# --- a live robot ------------------------------------------------------------------------------


def robot_telemetry(broker: Broker) -> Telemetry:
    """The onboard publisher with the robot's account: battery, odometry, mode and cameras
    records shaped as onboard/MQTT.md says, faster than the runtime's defaults."""
    config = MqttConfig(robot_id=ROBOT, host="127.0.0.1", port=broker.port, username=ROBOT,
                        password=ROBOT_PASSWORD,
                        rates_hz={"battery": 20.0, "odometry": 20.0, "mode": 20.0,
                                  "cameras": 20.0})
    ticks = iter(range(10**9))
    return Telemetry(config, {
        "battery": lambda: {"battery_mv": 11_870, "level": "ok", "low_mv": 10_500,
                            "critical_mv": 9_900, "latched": False, "advice": None,
                            "age_s": 0.02, "stale": False},
        "odometry": lambda: {"left_ticks": next(ticks), "right_ticks": 5, "vel_left_mm_s": 300,
                             "vel_right_mm_s": 290, "target_left_mm_s": 300,
                             "target_right_mm_s": 300, "age_s": 0.01, "stale": False},
        "mode": lambda: {"mode": "autonomous", "owner": "policy", "reason": None},
        "cameras": lambda: {"forward": {"state": "streaming", "stale": False, "frames": 42,
                                        "failures": 0, "age_s": 0.03, "error": None}},
    })


def operator_config(broker: Broker) -> HostMqttConfig:
    return HostMqttConfig(ROBOT, "127.0.0.1", broker.port, "operator", OPERATOR_PASSWORD)


def test_a_live_robot_is_recorded_from_the_telemetry_it_already_publishes(
    broker: Broker, tmp_path: Path
) -> None:
    out = tmp_path / "live.rrd"
    rec = rr.RecordingStream("zima", recording_id="live-test")
    rec.save(out)
    logger = LiveLogger(rec, ROBOT)

    async def main_() -> None:
        async with robot_telemetry(broker) as robot:
            await robot.wait_connected(10.0)
            watch = asyncio.create_task(watch_robot(operator_config(broker), logger, None))
            while min((logger.stats.records.get(s, 0) for s in
                       ("battery", "odometry", "mode", "cameras")), default=0) < 3:
                await asyncio.sleep(0.05)
            await publish_as_robot(broker, [(f"zima/{ROBOT}/telemetry/battery", h)
                                            for h in HOSTILE])
            # All but the first (a well-formed object with an escape sequence) are refused.
            while logger.stats.bad_payloads < len(HOSTILE) - 1:
                assert not watch.done(), watch.exception()
                await asyncio.sleep(0.05)
            watch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watch

    run(main_, guard_s=30.0)
    rec.flush()
    rec.disconnect()
    stats = logger.stats
    recording = Recording(out)
    battery = recording.values("/telemetry/battery/battery_mv")
    # Every good battery record (the hostile first one is a valid object too) is a row.
    assert len(battery) == stats.records["battery"] >= 3
    assert set(battery) == {11_870.0, 11_000.0}
    assert set(recording.values("/telemetry/battery/stale")) == {0.0}
    ticks = recording.values("/telemetry/odometry/left_ticks")
    assert len(ticks) == stats.records["odometry"]
    assert ticks == sorted(ticks)
    assert set(recording.values("/telemetry/cameras/forward/frames")) == {42.0}
    modes = recording.values("/telemetry/mode", "TextLog:text")
    assert modes[0] == "mode=autonomous owner=policy reason=None"
    assert recording.values("/status", "TextLog:text")[0] == "online"
    # The robot's clock is the timeline: stamp_unix_s of each record.
    stamps = [r["robot_time"] for r in recording.rows["/telemetry/odometry/left_ticks"]]
    assert all(s / 1e9 > 1.7e9 for s in stamps)  # unix time, ns: the robot's stamp_unix_s
    assert stats.bad_payloads == len(HOSTILE) - 1
    assert all(line.isprintable() for line in recording.values("/telemetry/battery",
                                                               "TextLog:text"))


def test_view_robot_saves_for_a_duration(broker: Broker, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out, password = tmp_path / "live.rrd", tmp_path / "password"
    password.write_text(OPERATOR_PASSWORD + "\n")
    argv = ["view", "--robot", ROBOT, "--broker", f"127.0.0.1:{broker.port}", "--username",
            "operator", "--password-file", str(password), "--save", str(out), "--duration", "3"]

    async def main_() -> int:
        async with robot_telemetry(broker) as robot:
            await robot.wait_connected(10.0)
            return await asyncio.to_thread(main, argv)

    assert run(main_, guard_s=30.0) == 0
    said = capsys.readouterr().out
    assert said.startswith("logged ")
    assert f"streams to {out}" in said
    recording = Recording(out)
    assert len(recording.values("/telemetry/battery/battery_mv")) >= 1
    assert json.dumps(sorted(recording.rows)).count("/telemetry/") >= 4


def test_a_wrong_password_is_a_clear_error(broker: Broker, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    password = tmp_path / "password"
    password.write_text("wrong\n")
    argv = ["view", "--robot", ROBOT, "--broker", f"127.0.0.1:{broker.port}", "--username",
            "operator", "--password-file", str(password), "--save", str(tmp_path / "x.rrd"),
            "--duration", "1"]
    assert main(argv) == 1
    assert "refused user 'operator'" in capsys.readouterr().err


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.dictionaries(st.text(max_size=10), inner, max_size=5)
    | st.lists(inner, max_size=3), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(suffix=st.text(max_size=40), payload=st.binary(max_size=300) | JSON.map(
    lambda v: json.dumps(v).encode()))
def test_any_topic_and_payload_is_logged_or_skipped(suffix: str, payload: bytes) -> None:
    logger = LiveLogger(rr.RecordingStream("zima-fuzz"), ROBOT)
    logger.message(f"zima/{ROBOT}/telemetry/{suffix}", payload, 1.7e9)
    logger.message(f"zima/{ROBOT}/{suffix}", payload, 1.7e9)
    assert sum(logger.stats.records.values()) + logger.stats.bad_payloads <= 2
