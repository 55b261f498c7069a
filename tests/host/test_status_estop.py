"""`zima status` and `zima estop` against the real robot side (emulated board, McuLink, the
onboard Telemetry publisher) over a real Mosquitto with the sample ACL; hostile and stale
payloads from a robot's account, and any bytes into the board (hypothesis)."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.host.hostile import HOSTILE, json_values, publish_as_robot
from tests.host.robot import CLEAR_MV, CRITICAL_MV, LOW_MV, robot_side
from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from tests.onboard.helpers import run, until_mcu
from tests.onboard.test_runtime import constant_policy, running, runtime_config
from zima.cli import main
from zima.contract import Action
from zima.emulator import EmulatedBoard
from zima.host.estop import EstopOutcome, send_estop
from zima.host.status import STREAMS, StatusBoard, collect_status
from zima.onboard import api
from zima.onboard.link_config import LinkConfig
from zima.protocol import Fault, ParamId, State


def as_operator(broker: Broker, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``zima <argv[0]>`` on ``broker`` as the operator (the password in the environment):
    its exit code and what it printed."""
    monkeypatch.setenv("ZIMA_MQTT_PASSWORD", OPERATOR_PASSWORD)
    code = main([argv[0], *broker.operator_flags(), *argv[1:]])
    return code, capsys.readouterr().out


def test_status_shows_every_topic_and_names_the_silent_one(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> tuple[StatusBoard, StatusBoard]:
        async with robot_side(broker, link_config, silent=frozenset({"policy"})) as robot:
            partial = await collect_status(broker.operator_config(), timeout_s=2.0)
            robot.silent.clear()
            full = await collect_status(broker.operator_config(), timeout_s=10.0)
            return partial, full

    partial, full = run(main_, guard_s=30.0)
    assert partial.missing == ["policy"]
    assert partial.exit_status == 3
    text = "\n".join(partial.render())
    assert "policy   no data" in text
    assert full.missing == []
    assert full.exit_status == 0
    lines = full.render()
    assert lines[0] == f"robot {ROBOT}: online"
    text = "\n".join(lines)
    assert "mode     idle (owner none)" in text
    assert "MCU connected, firmware 0." in text
    assert "battery  12.0" in text or "battery  11.9" in text
    assert "ok" in text
    assert "model sha256 abababababababab" in text
    assert "faults   none (MCU IDLE)" in text
    assert "overruns 0" in text
    assert all(any(line.strip().startswith(s) for line in lines) for s in STREAMS)


def test_status_of_a_robot_that_never_spoke(
    broker: Broker, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text(OPERATOR_PASSWORD + "\n")
    argv = ["status", *broker.operator_flags(), "--password-file", str(password),
            "--timeout", "0.5"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "status unknown" in out
    assert "no data within 0.5 s on: mode, link, battery" in out


def test_wrong_password_is_a_clear_error(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIMA_MQTT_PASSWORD", "wrong")
    argv = ["status", "--broker", f"127.0.0.1:{broker.port}", "--username", "operator"]
    assert main(argv) == 1
    assert "refused user 'operator'" in capsys.readouterr().err


def test_estop_engages_and_releases_with_confirmation(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> None:
        async with robot_side(broker, link_config) as robot:
            robot.link.drive(200, 200)  # moving when the stop comes
            engaged = await send_estop(broker.operator_config(), engaged=True, timeout_s=10.0)
            assert engaged.confirmed, engaged.describe()
            assert engaged.mode == "estop"
            assert "CONFIRMED" in engaged.describe()
            state = await robot.link.wait_for(lambda s: s.state == State.ESTOP, 5.0)
            assert state.state == State.ESTOP  # the MCU itself latched it
            assert robot.estops[-1].request_id == engaged.request_id
            released = await send_estop(broker.operator_config(), engaged=False, timeout_s=10.0)
            assert released.confirmed, released.describe()
            assert released.mode == "idle"
            await robot.link.wait_for(lambda s: s.state != State.ESTOP, 5.0)

    run(main_, guard_s=40.0)


def test_estop_without_a_robot_is_not_confirmed(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = as_operator(broker, monkeypatch, capsys, "estop", "--timeout", "0.5")
    assert code == 2
    assert "no result for e-stop request" in out
    assert "NOT CONFIRMED" in out


def test_a_refused_estop_says_why() -> None:
    refused = EstopOutcome(engaged=True, request_id="r1", mode="teleop", mode_confirmed=False,
                           result=api.CommandResult("estop", "r1", accepted=False, error="busy"))
    assert not refused.confirmed
    assert "REFUSED the e-stop: busy" in refused.describe()


# --- any bytes, stale data, the battery latch -----------------------------------------------

def record(stream: str, **changes: object) -> bytes:
    """A well-formed record of ``stream`` (zima.onboard.api), with changes."""
    records: dict[str, api.Record] = {
        "mode": api.ModeRecord(mode=api.DriveMode.LOW_BATTERY, owner="none",
                               reason="battery critical", refused=None),
        "link": api.LinkRecord(connected=True, reason="ok", telemetry_hz=50.0, rx_rejected=0,
                               rx_dropped=0, connects=1, firmware="0.2.0+00000000", since_s=3.0,
                               age_s=0.02),
        "battery": api.BatteryRecord(battery_mv=12_000, level=api.BatteryLevel.CRITICAL,
                                     low_mv=LOW_MV, critical_mv=CRITICAL_MV, latched=True,
                                     clear_mv=CLEAR_MV, advice=None, age_s=0.02, stale=False),
        "faults": api.FaultsRecord(active=["BATT_CRITICAL"], mcu_state="FAULT", parts={},
                                   age_s=0.02, stale=False),
        "loop": api.LoopRecord(rate_hz=20.0, period_p50_ms=50.0, period_p99_ms=51.0,
                               jitter_p50_ms=0.2, jitter_p99_ms=1.0, jitter_max_ms=1.5,
                               overruns=0),
        "policy": api.PolicyRecord(
            model_hash="cd" * 32, model_path="/var/lib/zima/policy.onnx", latency_ms=5.0,
            latency_max_ms=9.0, plans=3, reloads=0, reload_error=None, reload_failures=0,
            bad_outputs=0, bad_in_row=0, last_bad_output=None, faulty=None, obs_age_ms=None,
            obs_age_p50_ms=None, obs_age_p99_ms=None, lead_ms=None, dry_ticks=0,
            stale_ticks=0, stretches=0, backend="local", connected=None, round_trip_ms=None,
            round_trip_p99_ms=None, reconnects=0, remote_losses=0, remote_error=None),
        "odometry": api.OdometryRecord(left_ticks=1, right_ticks=2, vel_left_mm_s=0,
                                       vel_right_mm_s=0, target_left_mm_s=0, target_right_mm_s=0,
                                       out_left_permille=0, out_right_permille=0, age_s=0.02,
                                       stale=False),
    }
    return json.dumps({**records[stream].to_json(), "stamp_unix_s": 1.7e9,
                       **changes}).encode()


def test_status_skips_hostile_payloads_and_shows_stale_data_as_stale(broker: Broker) -> None:
    topic = f"zima/{ROBOT}/telemetry/"
    escape = "\x1b[2J\x1b]0;owned\x07"  # clear screen, set the terminal's title
    # Per stream: hostile bytes, then a good record; so whenever the tool subscribed, a
    # good record of each stream reaches it only after hostile ones.
    rounds: list[tuple[str, bytes]] = [(f"zima/{ROBOT}/status", b"online")]
    for i, stream in enumerate(STREAMS):
        rounds.append((topic + stream, HOSTILE[i % len(HOSTILE)]))
        changes: dict[str, object] = {}
        if stream == "odometry":
            changes = {"stale": True, "age_s": 11.0}
        if stream == "mode":
            changes = {"reason": "battery critical " + escape}
        rounds.append((topic + stream, record(stream, **changes)))

    async def main_() -> StatusBoard:
        task = asyncio.create_task(collect_status(broker.operator_config(), timeout_s=15.0))
        while not task.done():
            await publish_as_robot(broker, rounds)
            await asyncio.sleep(0.05)
        return await task

    board = run(main_, guard_s=30.0)
    assert board.missing == []
    assert board.bad_payloads >= len(STREAMS) - 1
    assert board.stale == ["odometry"]
    assert board.exit_status == 3  # stale data is not a complete status
    lines = board.render()
    assert all(line.isprintable() for line in lines), lines
    text = "\n".join(lines)
    assert "odometry STALE (not current, data 11.0 s old): ticks 1/2" in text
    assert "battery critical \\x1b[2J\\x1b]0;owned\\x07" in text
    assert (f"battery  12.00 V CRITICAL, critical, latch can clear: the pack is back at 12.00 V,"
            f" above the {CLEAR_MV / 1000:.2f} V the MCU clears at: ask for idle") in text
    assert f"ignored {board.bad_payloads} bad payloads (last: " in lines[-1]


def test_status_command_says_which_data_is_stale(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    retained = [(f"zima/{ROBOT}/status", b"online")] + [
        (f"zima/{ROBOT}/telemetry/{s}",
         record(s, stale=True, age_s=4.5) if s in ("faults", "odometry") else record(s))
        for s in STREAMS]
    run(lambda: publish_as_robot(broker, retained, retain=True))
    code, out = as_operator(broker, monkeypatch, capsys, "status", "--timeout", "5")
    assert code == 3
    assert "stale data (not current) on: faults, odometry" in out
    assert "faults   STALE (not current, data 4.5 s old): BATT_CRITICAL (MCU FAULT)" in out


def test_estop_is_confirmed_through_hostile_payloads(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> None:
        # Retained junk reaches the tool the moment it subscribes, before any answer.
        await publish_as_robot(broker, [(f"zima/{ROBOT}/telemetry/mode", b"[" * 3000),
                                        (f"zima/{ROBOT}/cmd/result", b"\xff" * 70_000)],
                               retain=True)
        async with robot_side(broker, link_config):
            engaged = await send_estop(broker.operator_config(), engaged=True, timeout_s=10.0)
            assert engaged.confirmed, engaged.describe()
            assert engaged.bad_payloads == 2
            assert "ignored 2 bad payloads meanwhile" in engaged.describe()

    run(main_, guard_s=40.0)


# Whatever arrives, on any topic: the board never fails, and what it prints is plain text
# of bounded width (no escape sequence reaches the operator's terminal).
known_keys = st.sampled_from(["mode", "owner", "reason", "connected", "firmware", "battery_mv",
                              "level", "low_mv", "critical_mv", "latched", "clear_mv", "age_s",
                              "stale", "active", "mcu_state", "model_hash", "reload_error",
                              "rate_hz", "left_ticks", "telemetry_hz"])
records = st.dictionaries(known_keys | st.text(max_size=10), json_values, max_size=8)
payloads = st.one_of(
    st.binary(max_size=300),
    records.map(lambda body: json.dumps(body).encode()),
    st.sampled_from(HOSTILE),
)
messages = st.tuples(st.sampled_from([*STREAMS, "cameras", "status"]), payloads)


@settings(max_examples=300)
@given(st.lists(messages, max_size=20))
def test_any_bytes_on_any_topic_leave_a_printable_status(
    sequence: list[tuple[str, bytes]]
) -> None:
    board = StatusBoard("r1")
    for i, (stream, payload) in enumerate(sequence):
        topic = "zima/r1/status" if stream == "status" else f"zima/r1/telemetry/{stream}"
        board.take(topic, payload, now_s=float(i))
    for lines in (board.render(), board.render(now_s=100.0)):
        for line in lines:
            assert line.isprintable(), line
            assert len(line) < 1200, line
    assert board.exit_status in (0, 3)


@settings(max_examples=200)
@given(st.builds(api.CommandResult, st.text(max_size=20), st.text(max_size=64) | st.none(),
                 st.booleans(), st.text(max_size=400) | st.none()),
       st.text(max_size=200) | st.none())
def test_an_estop_outcome_prints_plain_text_whatever_came_back(
    result: api.CommandResult, mode: str | None
) -> None:
    outcome = EstopOutcome(engaged=True, request_id="r1", result=result, mode=mode,
                           mode_confirmed=False, bad_payloads=1)
    assert all(line.isprintable() for line in outcome.describe().splitlines())


def test_status_follows_a_critical_battery_through_the_running_runtime(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    """The real runtime's records: the latch, what to do, and the idle that clears it."""
    constant_policy(tmp_path / "policy.onnx", Action.STOP)
    mqtt = broker.robot_mqtt(tmp_path, rates_hz={"battery": 5.0, "faults": 5.0, "link": 5.0})

    async def until_status(check: Callable[[str], bool]) -> str:
        async with asyncio.timeout(20.0):
            while True:  # a record sent just before the change may still arrive: look again
                text = "\n".join((await collect_status(broker.operator_config(), 5.0)).render())
                if check(text):
                    return text

    async def main_() -> tuple[str, str, str]:
        async with running(runtime_config(tmp_path, link_config, robot_id=ROBOT,
                                          mqtt=mqtt)) as runtime:
            await runtime.link.set_param(ParamId.batt_crit_debounce_ms, 0)
            await asyncio.to_thread(board.set_battery, 9_500)
            await until_mcu(runtime.link, lambda s: Fault.BATT_CRITICAL in s.faults, 3000)
            latched = await until_status(lambda t: "critical, latched" in t
                                         and "mode     low_battery" in t)
            await asyncio.to_thread(board.set_battery, 12_000)
            await until_mcu(runtime.link, lambda s: s.telemetry.battery_mv > CLEAR_MV + 500,
                            3000)
            clearable = await until_status(lambda t: "latch can clear" in t)
            await publish_as_operator(broker, "cmd/mode", {"mode": "idle"})
            cleared = await until_status(lambda t: "mode     idle" in t and "V ok" in t)
            return latched, clearable, cleared

    latched, clearable, cleared = run(main_, guard_s=90.0)
    assert f"once the pack is above {CLEAR_MV / 1000:.2f} V, ask for idle" in latched
    assert "low_battery (owner none, reason: battery critical (latched by the MCU" in latched
    assert "critical, latch can clear: the pack is back at" in clearable
    assert "BATT_CRITICAL" not in cleared


async def publish_as_operator(broker: Broker, suffix: str, body: dict[str, object]) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, username="operator",
                              password=OPERATOR_PASSWORD, identifier="operator-test") as client:
        await client.publish(f"zima/{ROBOT}/{suffix}", json.dumps(body).encode(), qos=1)
