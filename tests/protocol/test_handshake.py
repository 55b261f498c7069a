"""The host's handshake check: a matching INFO passes, any mismatch names both sides."""

import pytest

from zima.protocol import PROTOCOL_VERSION, SCHEMA_HASH, HandshakeError, Info, check_info


def _info(protocol_version: int = PROTOCOL_VERSION, schema_hash: int = SCHEMA_HASH) -> Info:
    return Info(
        protocol_version=protocol_version,
        schema_hash=schema_hash,
        fw_major=0,
        fw_minor=2,
        fw_patch=1,
        build_id=0xDEADBEEF,
        board=1,
        capabilities=0x1F,
        max_payload=49,
        reset_cause=1,
    )


def test_matching_info_passes() -> None:
    check_info(_info())


@pytest.mark.parametrize(
    ("version", "schema"),
    [(PROTOCOL_VERSION + 1, SCHEMA_HASH), (PROTOCOL_VERSION, SCHEMA_HASH ^ 0x1)],
    ids=["version", "schema"],
)
def test_mismatch_names_both_sides_and_the_fix(version: int, schema: int) -> None:
    info = _info(version, schema)
    with pytest.raises(HandshakeError) as caught:
        check_info(info)
    text = str(caught.value)
    assert f"firmware speaks protocol {version}, schema 0x{schema:08x}" in text
    assert f"this host speaks protocol {PROTOCOL_VERSION}, schema 0x{SCHEMA_HASH:08x}" in text
    assert "flash the firmware built from this tree (zima flash)" in text
    assert "firmware 0.2.1 (build deadbeef)" in text
    assert caught.value.info is info


def test_host_side_can_be_given() -> None:
    info = _info(2, 0x12345678)
    check_info(info, protocol_version=2, schema_hash=0x12345678)
    with pytest.raises(HandshakeError, match="this host speaks protocol 1, schema 0x12345678"):
        check_info(info, protocol_version=1, schema_hash=0x12345678)
