"""The operator's commands: records, bounds and the parser of their JSON form (no broker)."""

import json
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zima.episodes import JUDGED_OUTCOMES, Outcome
from zima.onboard.commands import (
    COMMAND_NAMES,
    RECORD_OUTCOMES,
    RELOAD_TARGETS,
    REQUESTABLE_MODES,
    TELEOP_LIMITS,
    Command,
    CommandError,
    EstopCommand,
    ModeCommand,
    TeleopCommand,
    parse_command,
    request_id_of,
    teleop_command,
)
from zima.onboard.config import ConfigError, config_from_table
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.recorder import OUTCOMES
from zima.onboard.safety import DriveMode

MQTT_MD = Path(__file__).resolve().parents[2] / "onboard" / "MQTT.md"


def test_parse_command_is_strict() -> None:
    config = MqttConfig()
    ok = parse_command("teleop", b'{"linear_m_per_s": 0.5, "angular_rad_per_s": -1}', config)
    assert ok == TeleopCommand(0.5, -1.0)
    for name, payload in [
        ("teleop", b'{"linear_m_per_s": 0.5}'),
        ("teleop", b'{"linear_m_per_s": true, "angular_rad_per_s": 0}'),
        ("teleop", b'{"linear_m_per_s": NaN, "angular_rad_per_s": 0}'),
        ("mode", b'{"mode": "fly"}'),
        ("estop", b'{"engaged": 1}'),
        ("reload", b'{"target": "firmware"}'),
        ("reload", b"[]"),
        ("dance", b"{}"),
        ("mode", b'{"mode": "idle", "request_id": 7}'),
    ]:
        with pytest.raises(CommandError):
            parse_command(name, payload, config)


COMMAND_BODIES = st.dictionaries(
    st.sampled_from(["mode", "engaged", "target", "action", "outcome", "request_id",
                     "linear_m_per_s", "angular_rad_per_s", "x"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
    | st.sampled_from(["idle", "autonomous", "stop", "success", "policy"])
    | st.lists(st.integers(), max_size=3),
    max_size=4)
HOSTILE_PAYLOADS = (
    st.binary(max_size=200)
    | COMMAND_BODIES.map(lambda body: json.dumps(body).encode())
    | st.integers(0, 10_000).map(lambda n: b"[" * n)
    | st.integers(0, 2_000).map(lambda n: b'{"a": ' * n)
    | st.text(max_size=200).map(lambda rid: json.dumps({"request_id": rid}).encode())
    | st.integers(60, 5_000).map(lambda n: b'{"request_id": "' + b"x" * n + b'"}'))


@given(st.sampled_from([*COMMAND_NAMES, "dance", ""]), HOSTILE_PAYLOADS)
@example("mode", b"[" * 3000)
@example("mode", b'{"mode": "idle", "request_id": "' + b"x" * 65 + b'"}')
@example("teleop", b'{"linear_m_per_s": 1e999, "angular_rad_per_s": 0}')
@example("teleop", b'{"linear_m_per_s": 1' + b"0" * 400 + b', "angular_rad_per_s": 0}')
@example("estop", b'{"engaged": true, "engaged": false}')
@example("mode", b'{"mode": {"a": 1}}')
@example("heartbeat", b"{}")
def test_any_bytes_give_a_command_or_a_clear_refusal(name: str, payload: bytes) -> None:
    rid = request_id_of(payload)
    assert rid is None or (len(rid) <= 64 and rid.isprintable())
    command: Command | None = None
    try:
        command = parse_command(name, payload, MqttConfig())
    except CommandError as exc:
        refusal = str(exc)
    if command is None:
        assert 0 < len(refusal) < 500
    else:
        assert command.request_id is None or command.request_id == rid
        assert type(command).__name__.lower().startswith(name)


def test_a_request_id_is_at_most_64_printable_characters() -> None:
    config = MqttConfig()
    ok = b'{"engaged": true, "request_id": "' + b"r" * 64 + b'"}'
    assert parse_command("estop", ok, config) == EstopCommand(engaged=True, request_id="r" * 64)
    for rid in ["r" * 65, "", "line\nbreak", "\u001b[2J"]:
        payload = json.dumps({"engaged": True, "request_id": rid}).encode()
        with pytest.raises(CommandError, match=r"request_id must be a string of 1\.\.64"):
            parse_command("estop", payload, config)
        assert request_id_of(payload) is None


def test_one_teleop_bound_refused_beyond_on_every_path() -> None:
    limit = TELEOP_LIMITS.linear_m_per_s
    assert teleop_command(limit, -TELEOP_LIMITS.angular_rad_per_s) == TeleopCommand(limit, -2.0)
    body = {"linear_m_per_s": limit + 0.01, "angular_rad_per_s": 0}
    with pytest.raises(CommandError, match=r"linear_m_per_s=1\.01 is outside"):
        teleop_command(limit + 0.01, 0)
    with pytest.raises(CommandError, match=r"linear_m_per_s=1\.01 is outside"):
        TeleopCommand(limit + 0.01, 0.0)
    with pytest.raises(CommandError, match=r"linear_m_per_s=1\.01 is outside"):
        parse_command("teleop", json.dumps(body).encode(), MqttConfig())
    with pytest.raises(CommandError, match="must be a number"):
        teleop_command(linear_m_per_s=True, angular_rad_per_s=0)


def test_a_mode_command_holds_only_a_mode_an_operator_may_ask_for() -> None:
    assert [ModeCommand(m).mode for m in REQUESTABLE_MODES] == list(REQUESTABLE_MODES)
    for mode in (DriveMode.ESTOP, DriveMode.LOW_BATTERY):
        with pytest.raises(CommandError, match="mode must be one of"):
            ModeCommand(mode)
        with pytest.raises(CommandError, match="mode must be one of"):
            parse_command("mode", json.dumps({"mode": mode.value}).encode(), MqttConfig())


def test_outcomes_are_the_episode_files_own() -> None:
    assert RECORD_OUTCOMES == ("success", "failure") == tuple(JUDGED_OUTCOMES)
    assert set(OUTCOMES) == {*JUDGED_OUTCOMES, Outcome.ABORTED}


def test_the_old_mqtt_teleop_limits_are_refused_in_the_config_not_ignored() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.max_linear_m_per_s is no longer a setting"):
        config_from_table({"mqtt": {"max_linear_m_per_s": 0.5}}, Path())


def test_mqtt_md_states_the_commands_bounds_as_defined_here() -> None:
    text = " ".join(MQTT_MD.read_text().split())
    assert "|".join(f'"{m.value}"' for m in REQUESTABLE_MODES) in text
    assert (f"refused beyond |{TELEOP_LIMITS.linear_m_per_s}| m/s, "
            f"|{TELEOP_LIMITS.angular_rad_per_s}| rad/s") in text
    assert "|".join(f'"{t}"' for t in RELOAD_TARGETS) in text
    assert '"outcome": ' + "|".join(f'"{o}"' for o in RECORD_OUTCOMES) in text
