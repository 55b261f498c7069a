"""Unit tests of messages and framing: validation, the decoder's edge cases, counters."""

from __future__ import annotations

import dataclasses
import doctest
from types import ModuleType

import pytest
from cobs import cobs

from zima.protocol import (
    PARAMS,
    Ack,
    Drive,
    Estop,
    Fault,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Log,
    ParamId,
    ParamSet,
    Reject,
    RejectReason,
    Result,
    crc16,
    decode_frame,
    encode_frame,
    framing,
    messages,
)


def raw_frame(msg_id: int, seq: int, payload: bytes) -> bytes:
    body = bytes((msg_id, seq)) + payload
    encoded: bytes = cobs.encode(body + crc16(body).to_bytes(2, "little"))
    return encoded + b"\x00"


# --- messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Drive(left_mm_s=32768, right_mm_s=0), r"DRIVE\.left_mm_s=32768 .*-32768\.\.32767"),
        (lambda: Drive(left_mm_s=0, right_mm_s=-32769), r"DRIVE\.right_mm_s=-32769"),
        (lambda: Hello(protocol_version=256, schema_hash=0), r"HELLO\.protocol_version=256 .*255"),
        (lambda: Heartbeat(host_time_ms=-1), r"HEARTBEAT\.host_time_ms=-1 .* u32 range"),
        (lambda: Log(level=0, text=b"x" * 49), r"LOG\.text is 49 bytes long, outside 0\.\.48"),
        (lambda: ParamSet(param_id=0, value=1e39), r"PARAM_SET\.value=1e\+39 .* f32 range"),
    ],
)  # fmt: skip
def test_out_of_range_names_message_field_and_range(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_wrong_python_types_are_refused() -> None:
    with pytest.raises(TypeError, match=r"DRIVE\.left_mm_s must be an int"):
        Drive(left_mm_s=1.5, right_mm_s=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an int"):
        Drive(left_mm_s=True, right_mm_s=0)
    with pytest.raises(TypeError, match=r"LOG\.text must be bytes"):
        Log(level=0, text="hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"PARAM_SET\.value must be a float"):
        ParamSet(param_id=0, value="1")  # type: ignore[arg-type]


def test_messages_are_frozen_slotted_and_compare_by_value() -> None:
    drive = Drive(left_mm_s=1, right_mm_s=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        drive.left_mm_s = 3  # type: ignore[misc]
    assert not hasattr(drive, "__dict__")
    assert drive == Drive(1, 2)
    assert drive != Drive(2, 1)
    assert hash(drive) == hash(Drive(1, 2))


def test_f32_fields_hold_the_value_the_wire_carries() -> None:
    msg = ParamSet(param_id=ParamId.pid_kp, value=0.1)
    assert msg.value == 0.10000000149011612
    assert msg == ParamSet(param_id=0, value=0.10000000149011612)
    assert ParamSet(param_id=0, value=5).value == 5.0


def test_enums_are_ints_on_the_wire() -> None:
    ack = Ack(ref_msg_id=Drive.MSG_ID, ref_seq=1, result=Result.ESTOPPED)
    assert type(ack.result) is int  # stored as the plain int the wire carries
    assert decode_frame(encode_frame(ack, 0)[:-1]) == Frame(0, ack)
    assert Fault(0b1010) == Fault.ESTOP | Fault.BATT_CRITICAL
    assert PARAMS[ParamId.watchdog_ms].default == 250


# --- encoding ------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_encoder_sequence_wraps_and_seq_is_checked() -> None:
    encoder = FrameEncoder()
    encoder.next_seq = 255
    assert decode_frame(encoder.encode(Estop())[:-1]) == Frame(255, Estop())
    assert decode_frame(encoder.encode(Estop())[:-1]) == Frame(0, Estop())
    with pytest.raises(ValueError, match="seq=256"):
        encode_frame(Estop(), 256)


# --- decoding ------------------------------------------------------------------------------


def test_oversize_boundary_is_54_encoded_bytes() -> None:
    log48 = encode_frame(Log(level=1, text=b"a" * 48), 0)
    assert len(log48) == 55  # 54 bytes of frame and the delimiter: the largest frame
    assert FrameDecoder().feed(log48) == [Frame(0, Log(1, b"a" * 48))]
    log49 = raw_frame(Log.MSG_ID, 0, b"\x01" + b"a" * 49)
    assert FrameDecoder().feed(log49) == [Reject(RejectReason.OVERSIZE)]


def test_oversize_is_one_reject_reported_at_the_55th_byte() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01" * 54) == []
    assert decoder.feed(b"\x01") == [Reject(RejectReason.OVERSIZE)]
    assert decoder.feed(b"\x01" * 500) == []
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(encode_frame(Estop(), 3)) == [Frame(3, Estop())]
    assert (decoder.rx_rejected, decoder.rx_frames) == (1, 1)


def test_empty_frames_are_ignored() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00" * 10) == []
    assert (decoder.rx_rejected, decoder.rx_frames) == (0, 0)


def test_valid_crc_rejects_carry_id_and_seq_for_the_ack() -> None:
    assert decode_frame(raw_frame(0x42, 9, b"")[:-1]) == Reject(RejectReason.UNKNOWN_ID, 0x42, 9)
    bad_length = raw_frame(Heartbeat.MSG_ID, 10, b"\x01")[:-1]
    assert decode_frame(bad_length) == Reject(RejectReason.BAD_LENGTH, Heartbeat.MSG_ID, 10)
    assert decode_frame(b"\x05\x01") == Reject(RejectReason.BAD_COBS)


def test_only_frames_with_a_valid_crc_move_the_sequence() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(Estop(), 10))
    corrupt = bytearray(encode_frame(Estop(), 200))
    corrupt[2] ^= 0x01  # seq byte: the CRC fails, the sequence must not jump
    assert decoder.feed(bytes(corrupt)) == [Reject(RejectReason.BAD_CRC)]
    decoder.feed(encode_frame(Estop(), 11))
    assert decoder.rx_dropped == 0
    decoder.feed(raw_frame(0x42, 14, b""))  # unknown id, valid CRC: 12 and 13 were lost
    assert decoder.rx_dropped == 2
    assert decoder.sequence.last_seq == 14


def test_sequence_gap_rule() -> None:
    decoder = FrameDecoder()
    steps = [(200, 0), (201, 0), (205, 3), (205, 3), (100, 3), (101, 3), (229, 130), (102, 130)]
    for seq, dropped in steps:  # gap 3 counted, duplicate and restart not; 127 yes, 128 no
        decoder.feed(encode_frame(Estop(), seq))
        assert decoder.rx_dropped == dropped, seq


def test_feed_accepts_bytearray_and_memoryview() -> None:
    wire = encode_frame(Drive(5, -5), 1)
    assert FrameDecoder().feed(bytearray(wire)) == [Frame(1, Drive(5, -5))]
    assert FrameDecoder().feed(memoryview(wire)) == [Frame(1, Drive(5, -5))]


@pytest.mark.parametrize("module", [messages, framing])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0
