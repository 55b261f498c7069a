"""`zima status` shows how fresh the robot's view is and how steady its loop: the fields
``telemetry/policy`` and ``telemetry/loop`` carry for it (onboard/MQTT.md)."""

import json

from zima.host.status import StatusBoard

TOPIC = "zima/r1/telemetry/"
# What every robot sends (zima.onboard.api's PolicyRecord and LoopRecord, without the
# fields added later, which older robots leave out).
POLICY = {"model_hash": None, "model_path": None, "latency_ms": None, "latency_max_ms": None,
          "plans": 0, "reloads": 0, "reload_error": None}
LOOP = {"rate_hz": 50.0, "period_p50_ms": 20.0, "period_p99_ms": 21.2, "overruns": 0}


def policy(**changes: object) -> bytes:
    return json.dumps({**POLICY, **changes}).encode()


def test_status_shows_observation_age_lead_dry_ticks_and_jitter_percentiles() -> None:
    board = StatusBoard("r1")
    board.take(TOPIC + "loop", json.dumps({
        **LOOP, "jitter_p50_ms": 0.24, "jitter_p99_ms": 1.26, "jitter_max_ms": 4.9}).encode(),
        0.0)
    board.take(TOPIC + "policy", policy(
        model_hash="ab" * 32, latency_ms=3.1, latency_max_ms=5.2, plans=42, obs_age_ms=31.0,
        obs_age_p50_ms=36.44, obs_age_p99_ms=52.5, lead_ms=20.0, dry_ticks=0, stale_ticks=0),
        0.0)
    lines = dict(line.split(maxsplit=1) for line in board.render()[1:] if "no data" not in line)
    assert lines["loop"] == ("50.0 Hz, period p50 20.0 ms p99 21.2 ms, jitter p50/p99/max "
                             "0.2/1.3/4.9 ms, overruns 0")
    assert lines["policy"] == ("model sha256 abababababababab, latency 3.1 ms (max 5.2 ms), "
                               "plans 42, obs age p50/p99 36.4/52.5 ms (last 31.0 ms), "
                               "lead 20 ms, dry ticks 0")


def test_an_older_robot_without_the_fields_still_reads() -> None:
    board = StatusBoard("r1")
    board.take(TOPIC + "loop", json.dumps(LOOP).encode(), 0.0)  # before the jitter fields
    board.take(TOPIC + "policy", policy(), 0.0)  # before the observation ages
    text = "\n".join(board.render())
    assert "ignored" not in text
    assert "jitter p50/p99/max -/-/-, overruns 0" in text
    assert "no model, latency - (max -), plans 0\n" in text + "\n"


def test_plot_draws_the_distribution_of_the_readings_received() -> None:
    board = StatusBoard("r1")
    ages = [21.0] * 8 + [40.0, 60.0]  # ms: mostly one tick, two late ones
    for i, age in enumerate(ages):
        board.take(TOPIC + "policy", policy(obs_age_ms=age), float(i))
    board.take(TOPIC + "policy", policy(obs_age_ms=None), 11.0)  # no chunk yet
    board.take(TOPIC + "loop", b"not json", 12.0)  # skipped, as everywhere
    lines = board.plot()
    assert lines[0] == ("observation age at its chunk's first action: 10 readings, "
                        "p50 21.0 ms, p99 58.2 ms, max 60.0 ms")
    bars = lines[1:11]
    assert bars[0] == "     21.0 -    24.9 ms |" + "#" * 40 + "| 8"
    assert [int(bar.rsplit("| ", 1)[1]) for bar in bars] == [8, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert lines[11] == "control loop jitter p99 (recent window): no readings"
