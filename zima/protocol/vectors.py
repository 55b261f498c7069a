"""Generate or check the golden vectors shared by the Python and C++ codecs.

    python -m zima.protocol.vectors          # (re)write firmware/test/vectors/golden_frames.txt
    python -m zima.protocol.vectors --check  # exit 1 if the file differs from what we generate

Every expected outcome in the file is what this codec decodes, and each case also
states the outcome it is meant to show, so a codec change that moves a vector into
another class fails here rather than silently rewriting the contract. The output is
deterministic: random bytes come from fixed seeds.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from cobs import cobs

from zima.protocol import enums
from zima.protocol.enums import PARAMS, Fault, RejectReason
from zima.protocol.framing import FrameDecoder, crc16, encode_frame
from zima.protocol.golden import (
    FrameVector,
    RejectVector,
    StreamVector,
    Vector,
    format_outcomes,
    render_line,
)
from zima.protocol.messages import (
    Ack,
    Arm,
    ArmState,
    Clear,
    Drive,
    Estop,
    Heartbeat,
    Hello,
    Info,
    Log,
    Message,
    ParamGet,
    ParamSet,
    ParamValue,
    Telemetry,
)
from zima.protocol.schema import MAX_PAYLOAD, PROTOCOL_VERSION, SCHEMA_HASH

GOLDEN_PATH = Path(__file__).resolve().parents[2] / "firmware/test/vectors/golden_frames.txt"
F32_MAX = 3.4028234663852886e38
F32_MIN_SUBNORMAL = 1.401298464324817e-45
_R = RejectReason

_TELEMETRY_TYPICAL = Telemetry(
    mcu_time_ms=123456, enc_left_ticks=20480, enc_right_ticks=-20311, vel_left_mm_s=312,
    vel_right_mm_s=-305, target_left_mm_s=300, target_right_mm_s=-300, out_left_permille=402,
    out_right_permille=-398, battery_mv=11874, state=enums.State.DRIVING, faults=0,
    rx_frames=1520, rx_rejected=2, rx_dropped=1, tx_dropped=0,
)  # fmt: skip


def _all(cls: type[Message], pick: str) -> Message:
    """``cls`` with every field at the minimum (``pick="lo"``) or maximum of its type."""
    values: list[object] = []
    for spec in cls.FIELDS:
        if spec.wire.code == "f":
            values.append(F32_MAX if pick == "hi" else -F32_MAX)
        elif spec.wire.code == "":
            values.append(b"~" * 48 if pick == "hi" else b"")
        else:
            values.append(getattr(spec.wire, pick))
    return cls(*values)


def frame_cases() -> Iterator[tuple[str, int, Message]]:
    """(name, seq, message): every message type with typical and extreme values."""
    yield "heartbeat_1000", 7, Heartbeat(host_time_ms=1000)
    for cls in (Hello, Heartbeat, Drive, Arm, ParamSet, ParamGet, Clear, Info, Telemetry,
                Ack, ParamValue, Log, ArmState):  # fmt: skip
        yield f"{cls.NAME.lower()}_min", 0, _all(cls, "lo")
        yield f"{cls.NAME.lower()}_max", 255, _all(cls, "hi")
    yield "estop_seq0", 0, Estop()
    yield "estop_seq255", 255, Estop()
    yield "hello_typical", 0, Hello(protocol_version=PROTOCOL_VERSION, schema_hash=SCHEMA_HASH)
    yield "drive_typical", 12, Drive(left_mm_s=300, right_mm_s=-300)
    yield "drive_reverse", 13, Drive(left_mm_s=-1000, right_mm_s=-1)
    yield "arm_typical", 40, Arm(900, 0, 450, 600, 1800, 3600, 0xFFFF, 0, 1, 1, 0, 1800)
    for name, value in (("0p1", 0.1), ("1em3", 1e-3), ("neg1p5", -1.5), ("zero", 0.0),
                        ("neg_zero", -0.0), ("min_subnormal", F32_MIN_SUBNORMAL),
                        ("1e5", 100000.0), ("1em7", 1e-7)):  # fmt: skip
        yield f"param_set_{name}", 5, ParamSet(param_id=0, value=value)
    yield "param_get_typical", 9, ParamGet(param_id=enums.ParamId.watchdog_ms)
    yield "clear_estop", 21, Clear(faults=Fault.ESTOP)
    yield "clear_all", 22, Clear(faults=0xFF)
    yield "info_typical", 0, Info(
        protocol_version=PROTOCOL_VERSION, schema_hash=SCHEMA_HASH, fw_major=0, fw_minor=1,
        fw_patch=0, build_id=0x1A2B3C4D, board=enums.Board.MEGA2560, capabilities=0x1F,
        max_payload=MAX_PAYLOAD, reset_cause=enums.ResetCause.EXTERNAL,
    )  # fmt: skip
    yield "telemetry_typical", 100, _TELEMETRY_TYPICAL
    yield "ack_ok", 3, Ack(ref_msg_id=Drive.MSG_ID, ref_seq=12, result=enums.Result.OK)
    yield "ack_out_of_range", 4, Ack(ref_msg_id=Arm.MSG_ID, ref_seq=40, result=3)
    for param in PARAMS.values():
        yield f"param_value_{param.name}", 60 + param.id, ParamValue(param.id, param.default)
    yield "log_empty_debug", 1, Log(level=0, text=b"")
    yield "log_one_char", 2, Log(level=1, text=b"x")
    yield "log_warning", 3, Log(level=2, text=b"battery low: 10.4 V")
    yield "log_two_lines", 4, Log(level=3, text=b"line 1\nline 2")
    yield "log_text48", 5, Log(level=3, text=b"stall left: out 1000 permille, speed 0 mm/s !!!!")
    yield "arm_state_typical", 50, ArmState(900, 450, 1800, 0, 1200, 300)


def _noise(seed: int, length: int, lowest: int = 0) -> bytes:
    """Deterministic random bytes from ``lowest`` to 255 (``lowest=1``: no 0x00)."""
    rng = random.Random(seed)  # noqa: S311 (test data, not cryptography)
    return bytes(rng.randrange(lowest, 256) for _ in range(length))


def _raw_frame(msg_id: int, seq: int, payload: bytes) -> bytes:
    body = bytes((msg_id, seq)) + payload
    encoded: bytes = cobs.encode(body + crc16(body).to_bytes(2, "little"))
    return encoded + b"\x00"


def _flip(wire: bytes, index: int, bit: int) -> bytes:
    return wire[:index] + bytes((wire[index] ^ (1 << bit),)) + wire[index + 1 :]


def reject_cases() -> Iterator[tuple[str, bytes, set[RejectReason]]]:
    """(name, wire, reasons it may show): one reject each, of every reason."""
    hb = encode_frame(Heartbeat(host_time_ms=1000), 7)  # 05 02 07 e8 03 01 03 fd ba 00
    tel = encode_frame(_TELEMETRY_TYPICAL, 100)
    yield "flip_msg_id", _flip(hb, 1, 0), {_R.BAD_CRC}
    yield "flip_payload", _flip(hb, 3, 7), {_R.BAD_CRC}
    yield "flip_crc", _flip(hb, 8, 3), {_R.BAD_CRC}
    yield "flip_telemetry_battery", _flip(tel, 30, 2), {_R.BAD_CRC}
    cut_reasons = {_R.BAD_COBS, _R.TOO_SHORT, _R.BAD_CRC}
    for cut in range(1, len(hb) - 1):  # wire cut short, delimiter kept
        yield f"truncated_wire_{cut}", hb[: -1 - cut] + b"\x00", cut_reasons
    raw: bytes = cobs.decode(hb[:-1])
    for keep in range(4):
        yield f"too_short_{keep}", cobs.encode(raw[:keep]) + b"\x00", {_R.TOO_SHORT}
    yield "truncated_raw_5", cobs.encode(raw[:5]) + b"\x00", {_R.BAD_CRC}
    yield "bad_cobs_first_code", b"\x30" + hb[1:], {_R.BAD_COBS}
    yield "bad_cobs_last_code", hb[:5] + b"\x05" + hb[6:], {_R.BAD_COBS}
    yield "bad_cobs_ff", b"\xff\x01\x02\x03\x00", {_R.BAD_COBS}
    yield "oversize_55", bytes(range(1, 56)) + b"\x00", {_R.OVERSIZE}
    yield "oversize_300", _noise(1, 300, lowest=1) + b"\x00", {_R.OVERSIZE}
    yield "oversize_log_text49", _raw_frame(Log.MSG_ID, 0, b"\x01" + b"a" * 49), {_R.OVERSIZE}
    yield "not_oversize_54", bytes([54]) + bytes(range(1, 54)) + b"\x00", {_R.BAD_CRC}
    for msg_id in (0x00, 0x09, 0x3F, 0x80, 0x87, 0xFF):
        yield f"unknown_id_{msg_id:02x}", _raw_frame(msg_id, 1, b"\x01\x02"), {_R.UNKNOWN_ID}
    yield "unknown_id_empty", _raw_frame(0x40, 0, b""), {_R.UNKNOWN_ID}
    yield "bad_length_heartbeat_3", _raw_frame(Heartbeat.MSG_ID, 2, bytes(3)), {_R.BAD_LENGTH}
    yield "bad_length_heartbeat_5", _raw_frame(Heartbeat.MSG_ID, 2, bytes(5)), {_R.BAD_LENGTH}
    yield "bad_length_estop_1", _raw_frame(Estop.MSG_ID, 3, b"\x00"), {_R.BAD_LENGTH}
    yield "bad_length_log_0", _raw_frame(Log.MSG_ID, 4, b""), {_R.BAD_LENGTH}
    yield "bad_length_telemetry_36", _raw_frame(Telemetry.MSG_ID, 5, bytes(36)), {_R.BAD_LENGTH}
    yield "bad_length_telemetry_38", _raw_frame(Telemetry.MSG_ID, 5, bytes(38)), {_R.BAD_LENGTH}


def stream_cases() -> Iterator[tuple[str, bytes]]:
    """(name, wire): byte streams whose outcomes the decoder reports in order."""
    hb, drive = encode_frame(Heartbeat(1000), 7), encode_frame(Drive(300, -300), 8)
    tel = encode_frame(_TELEMETRY_TYPICAL, 9)
    yield "empty_frames_only", b"\x00\x00\x00"
    yield "leading_zeros", b"\x00\x00\x00" + hb + drive
    yield "garbage_between_frames", hb + b"\x13\x37\xde\xad\xbe\xef\x00" + drive
    yield "glued_no_delimiter", hb[:-1] + drive + tel
    yield "glued_long_no_delimiter", tel[:-1] + tel[:-1] + hb + drive
    yield "oversize_then_frame", _noise(2024, 120, lowest=1) + b"\x00" + hb
    yield "oversize_swallows_glued_frame", bytes(range(1, 60)) + hb + drive
    yield "exactly_54_then_frame", bytes([54]) + bytes(range(1, 54)) + b"\x00" + hb
    yield "truncated_then_frame", hb[:4] + b"\x00" + drive
    for seed, length in ((0, 40), (1, 97), (2, 150)):
        yield f"random_then_frames_{seed}", _noise(seed, length) + b"\x00" + hb + tel + drive
    every = b"".join(encode_frame(msg, seq & 0xFF) for seq, (_, _, msg) in enumerate(frame_cases()))
    yield "every_frame_back_to_back", every
    yield (
        "seq_gap_and_wrap",
        b"".join(encode_frame(Heartbeat(seq), seq) for seq in (250, 251, 253, 255, 0, 3)),
    )


def generate() -> list[Vector]:
    """All vectors, in file order; raises AssertionError if one shows an unintended outcome."""
    vectors: list[Vector] = []
    for name, seq, msg in frame_cases():
        wire = encode_frame(msg, seq)
        vectors.append(FrameVector(name, wire, seq, msg))
    for name, wire, allowed in reject_cases():
        events = FrameDecoder().feed(wire)
        reason = getattr(events[0], "reason", None) if len(events) == 1 else None
        if reason not in allowed:
            raise AssertionError(f"reject {name}: got {events}, meant {sorted(allowed)}")
        vectors.append(RejectVector(name, wire, RejectReason(reason)))
    for name, stream in stream_cases():
        wire = stream[: stream.rindex(0) + 1]  # a stream ends on a delimiter
        vectors.append(StreamVector(name, wire, format_outcomes(FrameDecoder().feed(wire))))
    names = [v.name for v in vectors]
    if len(names) != len(set(names)):
        raise AssertionError("duplicate vector names")
    return vectors


def render() -> str:
    """The whole golden vectors file."""
    head = [
        "# Zima wire protocol golden vectors (firmware/PROTOCOL.md section 8).",
        "# Generated by `python -m zima.protocol.vectors`; do not edit by hand.",
        f"protocol_version {PROTOCOL_VERSION}",
        f"schema_hash 0x{SCHEMA_HASH:08x}",
        f"max_payload {MAX_PAYLOAD}",
    ]
    return "\n".join(head + [render_line(v) for v in generate()]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the golden file, or with ``--check`` report whether it is up to date."""
    parser = argparse.ArgumentParser(prog="python -m zima.protocol.vectors", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--path", type=Path, default=GOLDEN_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.exists() or args.path.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{args.path} is out of date: run python -m zima.protocol.vectors\n")
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
