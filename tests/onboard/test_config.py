"""The runtime's TOML configuration: the shipped sample loads, mistakes name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from zima.onboard.config import ConfigError, RuntimeConfig, config_from_table, load_config

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
        ("control_hz = 1000.0", "control_hz"),
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
