"""The Python tables against the text of firmware/PROTOCOL.md, the authoritative contract.

These tests read the Markdown tables, so an edit of the contract that the codec does
not follow (or the reverse) fails here, before the golden vectors are regenerated.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest

from zima.protocol import (
    MAX_PAYLOAD,
    MESSAGE_TYPES,
    PARAMS,
    SCHEMA_HASH,
    Arm,
    ArmState,
    Fault,
    Message,
    ParamId,
    RejectReason,
    Result,
    State,
    Telemetry,
    schema_text,
)
from zima.protocol.schema import LAYOUTS, MAX_ENCODED_FRAME, MAX_RAW_FRAME

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "firmware" / "PROTOCOL.md"
TEXT = PROTOCOL_MD.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of one section or subsection, from its heading to the next one."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", TEXT, re.M | re.S)
    assert match, title
    return match.group(1)


def rows(text: str) -> list[list[str]]:
    """The cells of the body rows of every Markdown table in ``text``."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in text.splitlines() if line.startswith("|")]  # fmt: skip
    return [row for row in cells if not set(row[0]) <= set("-: ") and row[0] not in
            ("id", "code", "value", "bit", "field", "condition", "what")]  # fmt: skip


def message_rows() -> list[list[str]]:
    """The rows of the two message tables of section 3: id, name, size, fields, answer."""
    table = rows(section("Host → MCU")) + rows(section("MCU → host"))
    return [r for r in table if r[0].startswith("0x")]


def test_message_ids_names_and_sizes() -> None:
    table = message_rows()
    documented = {int(r[0], 16): (r[1].strip("`"), r[2]) for r in table}
    ours = {}
    for cls in MESSAGE_TYPES:
        layout = LAYOUTS[cls]
        size = str(layout.min_size) if layout.min_size == layout.max_size else (
            f"{layout.min_size}\u2013{layout.max_size}")  # fmt: skip
        ours[cls.MSG_ID] = (cls.NAME, size)
    assert ours == documented


PATTERNED = ("ARM", "TELEMETRY", "ARM_STATE")  # fields described in prose or another table


@pytest.mark.parametrize("cls", [c for c in MESSAGE_TYPES if c.NAME not in PATTERNED])
def test_message_fields(cls: type[Message]) -> None:
    (row,) = [r for r in message_rows() if r[1] == f"`{cls.NAME}`"]
    documented = re.findall(r"`(\w+):(\w+)`", row[3])
    assert documented == [(f.name, f.wire.name) for f in cls.FIELDS]


def test_arm_fields_follow_the_joint_pattern() -> None:
    expected = [n for j in range(6) for n in (f"target{j}_ddeg", f"speed{j}_ddeg_s")]
    assert [f.name for f in Arm.FIELDS] == expected
    assert [f.name for f in ArmState.FIELDS] == [f"pos{j}_ddeg" for j in range(6)]
    assert {f.wire.name for f in Arm.FIELDS + ArmState.FIELDS} == {"u16"}


def test_telemetry_fields() -> None:
    table = rows(section("MCU → host").split("`TELEMETRY` fields, in order:")[1])
    documented = [
        (r[0].strip("`"), r[1]) for r in table if r[1] in ("u8", "u16", "i16", "u32", "i32")
    ]
    assert documented == [(f.name, f.wire.name) for f in Telemetry.FIELDS]


def test_result_codes() -> None:
    table = rows(section("Result codes (`ACK.result`)"))
    assert {int(r[0]): r[1].strip("`") for r in table} == {r.value: r.name for r in Result}


def test_reject_reasons() -> None:
    found = re.findall(
        r"`([A-Z_]+)` \((\d)\)", section("Receiving: what each side does with bad bytes")
    )
    assert {int(code): name for name, code in found} == {r.value: r.name for r in RejectReason}


def test_states_and_faults() -> None:
    five = section("5. States and faults")
    states, faults = five.split("`TELEMETRY.faults` bits:")
    assert {int(r[0]): r[1].strip("`") for r in rows(states)} == {s.value: s.name for s in State}
    assert {1 << int(r[0]): r[1].strip("`") for r in rows(faults)} == {
        f.value: f.name for f in Fault
    }


def test_parameters() -> None:
    table = rows(section("4. Parameters (`PARAM_SET` / `PARAM_GET`)"))
    documented = {
        int(r[0]): (r[1].strip("`"), float(r[3]), float(r[4]), float(r[5])) for r in table
    }
    ours = {p.id.value: (p.name, p.default, p.min, p.max) for p in PARAMS.values()}
    assert ours == documented
    assert set(PARAMS) == set(ParamId)
    assert all(p.contains(p.default) for p in PARAMS.values())


def test_sizes_and_overhead() -> None:
    assert MAX_PAYLOAD == 49
    assert MAX_RAW_FRAME == 53
    assert MAX_ENCODED_FRAME == 54
    assert "`MAX_PAYLOAD` = **49** bytes" in TEXT
    assert "(43 bytes on the wire" in TEXT
    assert LAYOUTS[Telemetry].max_size + 6 == 43


def test_schema_hash_is_crc32_of_the_canonical_text() -> None:
    text = schema_text()
    assert zlib.crc32(text.encode()) == SCHEMA_HASH
    lines = text.splitlines()
    assert lines[0] == "msg 1 HELLO protocol_version:u8 schema_hash:u32"
    assert "msg 7 ESTOP" in lines
    assert "msg 133 LOG level:u8 text:text48" in lines
    assert lines[-1] == "fault 7 RESET_BROWNOUT"
    assert len(lines) == len(MESSAGE_TYPES) + len(ParamId) + len(Fault)
    assert text.endswith("\n")
    assert f"{SCHEMA_HASH:#010x}" == "0x26f1f2a2"  # changes only with the contract
