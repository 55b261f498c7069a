"""firmware/PROTOCOL.md's worked examples (section 7) are what the Python codec produces.

The block between the ``worked-examples`` markers of PROTOCOL.md (the schema text and its
hash; a DRIVE, an ACK with an error and a TELEMETRY as hex bytes, decoded field by field)
is rendered here from ``zima.protocol``; the test holds the document to it, so the
document cannot drift from the codec (and the codec is held to the C++ one by the golden
vectors). After a deliberate protocol change, rewrite the block with::

    .venv/bin/python -m tests.firmware.test_protocol_doc --write
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import astuple
from pathlib import Path

from zima.protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Ack,
    Drive,
    Fault,
    Frame,
    FrameDecoder,
    Message,
    Result,
    State,
    Telemetry,
    crc16,
    encode_frame,
)
from zima.protocol.schema import layout_of, schema_text

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "firmware" / "PROTOCOL.md"
BEGIN = (
    "<!-- worked-examples:begin (generated: python -m tests.firmware.test_protocol_doc --write) -->"
)
END = "<!-- worked-examples:end -->"

# The three frames; NOTES names the value of an enum field in the decoded table.
DRIVE = Drive(left_mm_s=300, right_mm_s=-150)
DRIVE_SEQ = 12
ACK = Ack(ref_msg_id=Drive.MSG_ID, ref_seq=DRIVE_SEQ, result=int(Result.ESTOPPED))
ACK_SEQ = 40
TELEMETRY = Telemetry(
    mcu_time_ms=123_456,
    enc_left_ticks=4_000,
    enc_right_ticks=-1_200,
    vel_left_mm_s=296,
    vel_right_mm_s=-151,
    target_left_mm_s=300,
    target_right_mm_s=-150,
    out_left_permille=412,
    out_right_permille=-236,
    battery_mv=10_380,
    state=int(State.DRIVING),
    faults=int(Fault.BATT_LOW),
    rx_frames=1_532,
    rx_rejected=2,
    rx_dropped=1,
    tx_dropped=0,
)
TELEMETRY_SEQ = 41
NOTES = {
    ("ACK", "ref_msg_id"): "DRIVE",
    ("ACK", "result"): "ESTOPPED",
    ("TELEMETRY", "state"): "DRIVING",
    ("TELEMETRY", "faults"): "BATT_LOW",
}


def _hex(data: bytes) -> str:
    return data.hex(" ")


def _example(title: str, msg: Message, seq: int) -> list[str]:
    wire = encode_frame(msg, seq)
    raw_payload = layout_of(msg).pack(msg)
    body = bytes((msg.MSG_ID, seq)) + raw_payload
    crc = crc16(body)
    raw = body + crc.to_bytes(2, "little")
    lines = [
        f"**{title}**: `{msg.NAME}` (0x{msg.MSG_ID:02x}) with sequence number {seq}.",
        "",
        "```",
        f"raw  = {_hex(raw)}",
        f"wire = {_hex(wire)}",
        "```",
        "",
        "| bytes of raw | field | type | value |",
        "|---|---|---|---|",
        f"| `{msg.MSG_ID:02x}` | msg_id | u8 | 0x{msg.MSG_ID:02x} = `{msg.NAME}` |",
        f"| `{seq:02x}` | seq | u8 | {seq} |",
    ]
    offset = 0
    for spec, value in zip(type(msg).FIELDS, astuple(msg), strict=True):
        size = spec.wire.size
        chunk = raw_payload[offset : offset + size]
        offset += size
        note = NOTES.get((msg.NAME, spec.name))
        shown = f"{value} = `{note}`" if note else f"{value}"
        lines.append(f"| `{_hex(chunk)}` | {spec.name} | {spec.wire.name} | {shown} |")
    lines.append(f"| `{_hex(raw[-2:])}` | crc | u16 | 0x{crc:04x} |")
    lines.append("")
    return lines


def render() -> str:
    """The generated block of PROTOCOL.md section 7, markers included."""
    lines = [
        BEGIN,
        "",
        f"**Schema hash** of protocol {PROTOCOL_VERSION}: **`0x{SCHEMA_HASH:08x}`**, the CRC-32 of",
        "this text (section 2; every line ends with `\\n`, the last one too):",
        "",
        "```",
        *schema_text().splitlines(),
        "```",
        "",
        (
            "`HELLO` and `INFO` carry it as a `u32`, low byte first: "
            f"`{_hex(SCHEMA_HASH.to_bytes(4, 'little'))}`."
        ),
        "",
        "In each frame below, `raw` is `msg_id | seq | payload | crc` and `wire` is",
        "`COBS(raw) | 00`: COBS drops every 0x00 of `raw` and puts one code byte in front of",
        "each run of non-zero bytes, giving the distance to where the next zero was.",
        "",
    ]
    lines += _example("A DRIVE", DRIVE, DRIVE_SEQ)
    lines += _example("An ACK with an error: that DRIVE refused in e-stop", ACK, ACK_SEQ)
    lines += _example("A TELEMETRY", TELEMETRY, TELEMETRY_SEQ)
    lines.append(END)
    return "\n".join(lines) + "\n"


def _block_in(text: str) -> str:
    start = text.index(BEGIN)
    end = text.index(END, start) + len(END) + 1
    return text[start:end]


def test_the_worked_examples_of_protocol_md_are_the_codecs() -> None:
    text = PROTOCOL_MD.read_text()
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    assert _block_in(text) == render(), (
        "PROTOCOL.md's worked examples differ from the codec: "
        "run .venv/bin/python -m tests.firmware.test_protocol_doc --write"
    )


def test_the_printed_wire_bytes_decode_to_the_printed_messages() -> None:
    # read back from the document itself, not from render(): the bytes a reader copies
    text = _block_in(PROTOCOL_MD.read_text())
    wires = [line.removeprefix("wire = ") for line in text.splitlines() if line.startswith("wire")]
    events = [event for w in wires for event in FrameDecoder().feed(bytes.fromhex(w))]
    assert all(isinstance(e, Frame) for e in events), events
    assert [(e.seq, e.message) for e in events if isinstance(e, Frame)] == [
        (DRIVE_SEQ, DRIVE),
        (ACK_SEQ, ACK),
        (TELEMETRY_SEQ, TELEMETRY),
    ]
    assert f"0x{SCHEMA_HASH:08x}" in text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the block in PROTOCOL.md")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render())
        return 0
    text = PROTOCOL_MD.read_text()
    PROTOCOL_MD.write_text(text.replace(_block_in(text), render()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
