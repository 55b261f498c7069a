"""`zima protocol`: the summary names every message; `decode` turns captured hex into frames."""

import pytest

from zima.cli import main
from zima.protocol import SCHEMA_HASH, Drive, FrameEncoder, Heartbeat
from zima.protocol.messages import MESSAGE_TYPES


def test_summary_lists_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocol"]) == 0
    out = capsys.readouterr().out
    assert f"0x{SCHEMA_HASH:08x}" in out
    for cls in MESSAGE_TYPES:
        assert f"0x{cls.MSG_ID:02x}  {cls.NAME}" in out


def test_decode_frames_and_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    encoder = FrameEncoder()
    first = encoder.encode(Heartbeat(host_time_ms=1000))
    encoder.encode(Drive(left_mm_s=1, right_mm_s=2))  # never sent: one lost by sequence gap
    third = encoder.encode(Drive(left_mm_s=-300, right_mm_s=300))
    corrupt = bytearray(third)
    corrupt[3] ^= 0x01
    capture = first + bytes(corrupt) + third
    assert main(["protocol", "decode", capture.hex(":")]) == 1  # a reject: exit status 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "seq=0   HEARTBEAT host_time_ms=1000",
        "reject BAD_CRC",
        "seq=2   DRIVE left_mm_s=-300 right_mm_s=300",
        f"{len(capture)} bytes: 2 frames, 1 rejected, 1 lost by sequence gaps",
    ]


def test_decode_refuses_bad_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocol", "decode", "0x12zz"]) == 2
    assert "not hex" in capsys.readouterr().err
