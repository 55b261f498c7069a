"""The operator API (issue 14): the records' JSON forms both ways, their readers on any
payload, onboard/MQTT.md made from the records, and the commands every front end shares."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.onboard.api import (
    COMMAND_NAMES,
    RECORDS,
    ArmCommand,
    BatteryLevel,
    BatteryRecord,
    CamerasRecord,
    CommandError,
    DriveMode,
    HandBackCommand,
    LeaseCommand,
    ModeRecord,
    Record,
    RecordCommand,
    RecordError,
    mqtt_md,
    parse_command,
    topic_reference,
)
from zima.onboard.mqtt_config import MqttConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = MqttConfig(robot_id="zima-test")

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)
TEXT = st.text(max_size=20)


def _values(tp: Any, bounds: tuple[float, float] | None = None) -> st.SearchStrategy[Any]:
    """Any value a record's field of type ``tp`` (within ``bounds``) may hold."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if args and type(None) in args:
        return st.none() | _values(next(a for a in args if a is not type(None)), bounds)
    if bounds is not None:
        low, high = bounds
        return (st.integers(int(low), int(high)) if tp is int
                else st.floats(low, min(high, 1e9), allow_nan=False, width=32))
    if isinstance(tp, type) and issubclass(tp, DriveMode | BatteryLevel):
        return st.sampled_from(list(tp))
    if origin is list:
        return st.lists(_values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, st.integers() | TEXT, max_size=3)
    return {bool: st.booleans(), int: st.integers(-(2**40), 2**40), float: FINITE,
            str: TEXT}[tp]


def records(cls: type[Record]) -> st.SearchStrategy[Record]:
    hints = typing.get_type_hints(cls)
    return st.fixed_dictionaries(
        {f.name: _values(hints[f.name], f.metadata.get("bounds"))
         for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    ).map(lambda kw: cls(**kw))


PLAIN = [r for r in RECORDS.values() if r is not CamerasRecord]  # one record per stream


@pytest.mark.parametrize("cls", PLAIN, ids=lambda c: c.STREAM)
@settings(max_examples=40)  # per record: ten records, and the fast tier's minute
@given(data=st.data())
def test_every_record_survives_its_json_form(cls: type[Record], data: st.DataObject) -> None:
    record = data.draw(records(cls))
    payload = json.loads(json.dumps(record.to_json(), allow_nan=False))
    payload["stamp_unix_s"] = 1.7e9  # Telemetry adds it; readers ignore what they do not know
    assert cls.from_json(payload) == record


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(TEXT, kids, max_size=3), max_leaves=8)


@pytest.mark.parametrize("cls", [*PLAIN, CamerasRecord], ids=lambda c: c.STREAM)
@settings(max_examples=40)
@given(payload=st.dictionaries(TEXT, JSON, max_size=6) | JSON)
def test_a_reader_takes_any_payload_or_names_the_bad_field(cls: Any, payload: Any) -> None:
    reason = ""
    try:
        record = cls.from_json(payload)
    except RecordError as exc:
        reason = str(exc)
    if reason:
        assert len(reason) < 300
    else:
        assert isinstance(record, cls)


def test_a_bad_field_is_named() -> None:
    good = BatteryRecord(battery_mv=11800, level=BatteryLevel.OK, low_mv=10800,
                         critical_mv=10200, latched=False, clear_mv=10700, advice=None,
                         age_s=0.1, stale=False).to_json()
    with pytest.raises(RecordError, match=r"battery\.level='flat' is not one of"):
        BatteryRecord.from_json({**good, "level": "flat"})
    with pytest.raises(RecordError, match=r"battery\.battery_mv=True is not an integer"):
        BatteryRecord.from_json({**good, "battery_mv": True})
    with pytest.raises(RecordError, match="battery: no low_mv"):
        BatteryRecord.from_json({k: v for k, v in good.items() if k != "low_mv"})
    with pytest.raises(RecordError, match="not a finite number"):
        BatteryRecord.from_json({**good, "age_s": math.inf})


def test_an_older_robot_is_read_without_the_fields_it_did_not_send() -> None:
    old = {"battery_mv": 11800, "level": "low", "low_mv": 10800, "critical_mv": 10200}
    record = BatteryRecord.from_json(old)
    assert record.latched is None
    assert record.stale is None


def test_mode_sends_refused_only_with_a_refusal() -> None:
    quiet = ModeRecord(mode=DriveMode.IDLE, owner="none", reason="idle", refused=None)
    assert "refused" not in quiet.to_json()
    loud = dataclasses.replace(quiet, refused="no model")
    assert loud.to_json()["refused"] == "no model"
    assert ModeRecord.from_json(loud.to_json()) == loud


def test_mqtt_md_is_made_from_the_records() -> None:
    md = (ROOT / "onboard" / "MQTT.md").read_text(encoding="utf-8")
    assert mqtt_md(md) == md, "run: python -m zima.onboard.api --write"
    for stream in RECORDS:
        assert f"zima/<r>/telemetry/{stream}" in topic_reference()
    for name in COMMAND_NAMES:
        assert f"zima/<r>/cmd/{name} " in md, f"cmd/{name} is not documented in MQTT.md"


def test_the_sample_acl_lets_operators_send_every_command() -> None:
    acl = (ROOT / "onboard" / "mosquitto.acl.example").read_text(encoding="utf-8")
    for name in COMMAND_NAMES:
        assert f"pattern read zima/%u/cmd/{name}\n" in acl
        assert f"topic write zima/+/cmd/{name}\n" in acl


@pytest.mark.parametrize(("name", "payload", "command"), [
    ("lease", {"action": "take"}, LeaseCommand("take")),
    ("lease", {"action": "give", "request_id": "r1"}, LeaseCommand("give", "r1")),
    ("handback", {}, HandBackCommand()),
    ("arm", {"targets": [900, None, 450.4, None, None, 0]},
     ArmCommand((900, None, 450, None, None, 0))),
    ("record", {"action": "stop", "outcome": "success"}, RecordCommand("stop", "success")),
])
def test_the_new_commands_parse(name: str, payload: dict[str, object], command: object) -> None:
    assert parse_command(name, json.dumps(payload).encode(), CONFIG) == command


@pytest.mark.parametrize(("name", "payload", "reason"), [
    ("lease", {"action": "steal"}, "action must be one of"),
    ("arm", {"targets": [900]}, "targets needs 6 values"),
    ("arm", {"targets": [2000, None, None, None, None, None]}, r"targets\[0\]=2000 is not"),
    ("arm", {"targets": [True, None, None, None, None, None]},
     r"targets\[0\] must be a finite number"),
    ("arm", {"targets": "up"}, "targets must be a list"),
    ("arm", {"targets": [10**400, None, None, None, None, None]}, r"targets\[0\] must be a"),
    ("handback", {"now": True}, "handback takes exactly"),
])
def test_bad_new_commands_say_why(name: str, payload: dict[str, object], reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        parse_command(name, json.dumps(payload).encode(), CONFIG)


def test_a_record_command_is_checked_wherever_it_is_made() -> None:
    with pytest.raises(CommandError, match="stop takes an outcome"):
        RecordCommand("stop")
    with pytest.raises(CommandError, match="action must be one of"):
        RecordCommand("pause")
    with pytest.raises(CommandError, match="outcome must be one of"):
        RecordCommand("stop", "meh")
