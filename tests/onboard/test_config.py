"""The runtime's TOML configuration: the shipped sample loads, mistakes name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zima.onboard.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    RuntimeConfig,
    config_from_table,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "onboard" / "onboard.example.toml"


def test_the_example_config_loads_and_matches_the_defaults_it_claims() -> None:
    config = load_config(EXAMPLE)
    default = RuntimeConfig()
    assert config.robot_id == "zima"
    assert [c.name for c in config.cameras] == ["forward", "wrist"]
    assert config.link.port == Path("/dev/zima-mcu")
    assert config.mqtt.broker.username == "zima"  # the ACL's %u: username = robot id
    assert config.mqtt.broker.robot_id == "zima"
    assert config.mqtt.password_file == Path("/etc/zima/mqtt-password")
    assert config.safety == default.safety
    assert config.recorder == default.recorder
    assert config.mqtt.broker.rates_hz == default.mqtt.broker.rates_hz


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "robot.toml"
    path.write_text('robot_id = "r2"\n[policy]\nmodel_path = "models/p.onnx"\n'
                    '[recorder]\ndirectory = "episodes"\n[mqtt]\npassword_file = "pw"\n')
    config = load_config(path)
    assert config.policy.model_path == tmp_path / "models" / "p.onnx"
    assert config.recorder.directory == tmp_path / "episodes"
    assert config.mqtt.broker.topic("status") == "zima/r2/status"
    (tmp_path / "pw").write_text("s3cret\n")
    assert config.broker_config().password == "s3cret"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loop_hz = 1000.0", "loop_hz"),
        ("control_hz = 1000.0", "loop_hz"),
        ("control_hz = 50.0\nloop_hz = 50.0", "give loop_hz only"),
        ("controlhz = 50", "unknown key 'controlhz'"),
        ('[link]\nbaud = "fast"', "link.baud must be of type int"),
        ("[link]\ntelemetry_timeout_s = -1", "telemetry_timeout_s"),
        ('[[cameras]]\nname = "forward"\ncrop = 2.0', "crop"),
        ("[policy]\nexecute_k = 0", "execute_k"),
        ('[mqtt]\nrobot_id = "x"', "robot_id"),
        ('[mqtt]\nenabled = "yes"', "mqtt.enabled"),
        ("[safety]\nmax_track_mm_s = -5", "max_track_mm_s"),
        ("robot_id = [", "not valid TOML"),
    ],
)
def test_mistakes_are_errors_that_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_missing_file_and_an_unreadable_password_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.toml")
    config = config_from_table({"mqtt": {"password_file": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):
        config.broker_config()


SECTIONS = ["", "[link]", "[[cameras]]", "[fusion]", "[policy]", "[safety]", "[mqtt]",
            "[mqtt.rates_hz]", "[recorder]", "[web]", "[mqtt.broker]", "[x.y.z]"]
KEYS = ["robot_id", "loop_hz", "control_hz", "track_gauge_m", "port", "name", "source", "fps",
        "crop", "model_path", "execute_k", "temperature", "enabled", "password_file", "battery",
        "queue_len", "max_backlog_age_s", "token_file", "mqtt", "link", "cameras", "a.b.c"]
VALUES = ["1", "-5", "0", "1.5", "inf", "nan", "-inf", "1e400", "9" * 400, "9" * 5000,
          "true", '"x"', '""', '"a/b"', '"\\u0000"', "[1, 2]", "[]", "[[1]]", "{a = 1}", "{}",
          '["a", 1]', "1979-05-27T07:32:00Z", "07:32:00", "0x7f", "[" * 50 + "]" * 50,
          '"' + "x" * 5000 + '"']
DOCUMENTS = st.lists(
    st.sampled_from(SECTIONS)
    | st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)).map(" = ".join),
    max_size=12).map(lambda lines: "\n".join(lines).encode())


@given(DOCUMENTS | st.binary(max_size=300)
       | st.integers(0, 20_000).map(lambda n: b"a = " + b"[" * n)
       | st.integers(0, 5_000).map(lambda n: b"a = " + b"{b = " * n))
@example(b"loop_hz = " + b"9" * 400)  # an int no float can hold
@example(b"mqtt = 5")
@example(b'mqtt = ["ab"]')
@example(b"[mqtt]\nrates_hz = 1")
@example(b"robot_id = [" * 3000)
@example("robot_id = \"zürich\"".encode("utf-16"))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_give_a_config_or_a_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "any.toml"
    path.write_bytes(raw)
    config: RuntimeConfig | None = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        reason = str(exc)
    if config is None:
        assert reason.startswith(f"{path}: ")
        assert len(reason) < 700


def test_an_oversized_config_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(ConfigError, match="over the limit"):
        load_config(path)


def test_the_old_control_hz_key_still_sets_the_loop_rate_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.toml"
    path.write_text("control_hz = 40.0\n")  # an onboard.toml from before the rename
    with caplog.at_level("WARNING", logger="zima.onboard.config"):
        config = load_config(path)
    assert config.loop_hz == 40.0
    assert "control_hz is now loop_hz" in caplog.text
