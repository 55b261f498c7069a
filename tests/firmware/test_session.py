"""The real firmware on the emulated board: handshake, version refusal, bad bytes, reopen.

Every test runs a fresh board (tests/firmware/conftest.py) and talks the binary protocol
through a real pty with pyserial (tests/firmware/mcu.py).
"""

import random
import re

import pytest
from cobs import cobs

from zima.emulator import EmulatedBoard
from zima.protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Ack,
    ArmState,
    Board,
    Drive,
    Frame,
    FrameDecoder,
    FrameEncoder,
    HandshakeError,
    Heartbeat,
    ResetCause,
    Result,
    State,
    Telemetry,
    check_info,
    crc16,
)

from .conftest import ROOT, git_build_id
from .mcu import Mcu


def _firmware_version() -> tuple[int, int, int]:
    text = (ROOT / "firmware" / "src" / "version.h").read_text()
    parts = [re.search(rf"#define ZIMA_FW_{p} (\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    assert all(parts)
    return tuple(int(m.group(1)) for m in parts if m)  # type: ignore[return-value]




def test_handshake_reports_this_build_and_opens_the_session(port: Mcu) -> None:
    info, result = port.handshake()
    assert result == Result.OK
    check_info(info)  # the host-side check agrees
    assert (info.protocol_version, info.schema_hash) == (PROTOCOL_VERSION, SCHEMA_HASH)
    assert (info.fw_major, info.fw_minor, info.fw_patch) == _firmware_version()
    assert info.build_id == git_build_id()
    assert info.board == Board.MEGA2560
    assert info.capabilities == 0x1F
    assert info.max_payload == 49
    assert info.reset_cause == ResetCause.POWER_ON  # a fresh emulated board
    telemetry = port.telemetry()
    assert telemetry.state == State.IDLE
    assert telemetry.faults == 0
    assert port.rejects == []


def test_version_mismatch_is_refused_on_both_sides(board: EmulatedBoard, port: Mcu) -> None:
    other_schema = SCHEMA_HASH ^ 0x00010000
    info, result = port.handshake(schema_hash=other_schema)
    assert result == Result.VERSION_MISMATCH  # the MCU refuses...
    assert info.schema_hash == SCHEMA_HASH  # ...after saying what it speaks
    with pytest.raises(HandshakeError) as caught:  # and the host refuses what it found
        check_info(info, schema_hash=other_schema)
    message = str(caught.value)
    assert f"firmware speaks protocol {PROTOCOL_VERSION}, schema 0x{SCHEMA_HASH:08x}" in message
    assert f"this host speaks protocol {PROTOCOL_VERSION}, schema 0x{other_schema:08x}" in message
    assert "flash the firmware built from this tree" in message
    # no session: DRIVE is refused and nothing moves
    assert port.request(Drive(300, 300)) == Result.NO_SESSION
    assert port.telemetry().state == State.WAIT_HOST
    assert board.state().duty_left == 0
    assert board.events("motor") == []


def test_reset_cause_external_after_the_reset_pin(board: EmulatedBoard, port: Mcu) -> None:
    board.reset()
    info, result = port.handshake()
    assert result == Result.OK
    assert info.reset_cause == ResetCause.EXTERNAL


def _garbage_stream(encoder: FrameEncoder, rng: random.Random) -> tuple[bytes, int]:
    """Bad frames of every kind between valid HEARTBEATs; returns (bytes, valid frames)."""
    out = bytearray()
    valid = 0

    def heartbeat() -> None:
        nonlocal valid
        out.extend(encoder.encode(Heartbeat(valid)))
        valid += 1

    for _ in range(8):
        heartbeat()
        drive = bytearray(encoder.encode(Drive(500, 500)))
        drive[3] ^= 0x40  # a flipped bit: BAD_CRC
        out.extend(drive)
        heartbeat()
        out.extend(encoder.encode(Drive(-500, 500))[:-4] + b"\x00")  # truncated
        heartbeat()
        out.extend(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + b"\x00")
        heartbeat()
        out.extend(b"\x5a" * 80 + b"\x00")  # OVERSIZE
    heartbeat()
    # valid CRC, but an unknown id (0x3F) and a wrong length (DRIVE with 3 bytes)
    for raw in (bytes([0x3F, encoder.next_seq]), bytes([0x03, encoder.next_seq + 1, 1, 2, 3])):
        out.extend(cobs.encode(raw + crc16(raw).to_bytes(2, "little")) + b"\x00")
    encoder.next_seq = (encoder.next_seq + 2) & 0xFF
    heartbeat()
    return bytes(out), valid


def test_bad_bytes_never_move_a_motor_and_are_counted_exactly(
    board: EmulatedBoard, mcu: Mcu
) -> None:
    before = mcu.telemetry()
    stream, valid = _garbage_stream(mcu.encoder, random.Random(20240601))
    # the reference: the Python codec, held to the C++ one by the golden vectors
    reference = FrameDecoder()
    events = reference.feed(stream)
    decoded = [e for e in events if isinstance(e, Frame)]
    assert [type(f.message) for f in decoded] == [Heartbeat] * valid  # no lucky DRIVE
    mcu.send_raw(stream)
    mcu.send_raw(mcu.encoder.encode(Heartbeat(0xFFFF)))  # a marker: all of it is through

    seen: list[Telemetry] = []
    after = mcu.until(
        lambda t: t.rx_frames - before.rx_frames == valid + 1,
        within_ms=2000,
        on_telemetry=seen.append,
    )
    after = mcu.telemetry()  # one more period for the last answers
    assert after.rx_rejected - before.rx_rejected == reference.rx_rejected
    assert after.rx_frames - before.rx_frames == valid + 1
    assert all(t.out_left_permille == 0 and t.out_right_permille == 0 for t in seen)
    assert all(t.target_left_mm_s == 0 and t.target_right_mm_s == 0 for t in seen)
    assert board.events("motor") == []
    # the two frames with a valid CRC were answered
    results = {Result(f.message.result) for f in mcu.frames if isinstance(f.message, Ack)}
    assert {Result.UNKNOWN_MSG, Result.BAD_LENGTH} <= results
    assert after.state == State.IDLE  # the session survived


def test_mcu_to_host_messages_sent_to_the_mcu_are_rejected(board: EmulatedBoard, mcu: Mcu) -> None:
    """What a confused host or an echoing line sends: counted in rx_rejected, not
    answered (an echo would loop), and nothing else changes."""
    before = mcu.telemetry()
    index = len(mcu.frames)
    echoed = [before, Ack(Heartbeat.MSG_ID, 0, int(Result.OK)), ArmState(900, 900, 0, 0, 0, 0)]
    for message in echoed:
        mcu.send(message)
    mcu.send(Heartbeat(0xFFFF))  # a marker: all of it is through
    after = mcu.until(lambda t: t.rx_frames - before.rx_frames == 1, within_ms=500)
    after = mcu.telemetry()  # one more period for anything it might answer
    assert after.rx_rejected - before.rx_rejected == len(echoed)
    assert after.rx_frames - before.rx_frames == 1
    assert after.rx_dropped == before.rx_dropped
    assert after.state == State.IDLE
    assert [f for f in mcu.frames[index:] if isinstance(f.message, Ack)] == []


def test_closing_and_reopening_the_port_resumes(board: EmulatedBoard, mcu: Mcu) -> None:
    first = mcu.telemetry()
    mcu.close()
    again = Mcu.open(board.port)  # new sequence numbers, new decoder
    try:
        info, result = again.handshake()
        assert result == Result.OK
        assert info.reset_cause == ResetCause.POWER_ON  # no reset: the same MCU run
        later = again.until(lambda t: t.mcu_time_ms > first.mcu_time_ms, within_ms=500)
        assert later.state == State.IDLE
        # the port may open in the middle of a frame: its tail is one reject, no more
        assert len(again.rejects) <= 1
    finally:
        again.close()
