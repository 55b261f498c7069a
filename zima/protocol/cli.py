"""`zima protocol`: the MCU wire protocol at a glance, and a decoder for captured bytes.

    zima protocol                      messages, sizes and the schema hash of this build
    zima protocol decode 050207e8...   decode hex (spaces and colons allowed)
    zima protocol decode --file CAPTURE.bin
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zima.protocol.enums import PARAMS
from zima.protocol.framing import Frame, FrameDecoder
from zima.protocol.schema import (
    FRAME_OVERHEAD,
    LAYOUTS,
    MAX_ENCODED_FRAME,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SCHEMA_HASH,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `zima protocol`."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    decode = sub.add_parser("decode", help="decode captured bytes into frames and rejects")
    decode.add_argument("hex", nargs="*", help="bytes as hex; ':' and spaces are ignored")
    decode.add_argument("--file", type=Path, help="a binary capture of the serial stream")


def run(args: argparse.Namespace) -> int:
    """Print the summary, or decode what the user gave."""
    if args.action == "decode":
        return _decode(args)
    _summary()
    return 0


def _summary() -> None:
    print(f"Zima wire protocol {PROTOCOL_VERSION}, schema hash 0x{SCHEMA_HASH:08x}")
    print(
        f"frame: COBS(msg_id | seq | payload | CRC-16/CCITT-FALSE) 0x00; "
        f"overhead {FRAME_OVERHEAD} bytes, payload <= {MAX_PAYLOAD}, "
        f"encoded frame <= {MAX_ENCODED_FRAME} + delimiter"
    )
    print(f"\n{'id':>4}  {'message':<12} {'bytes':>5}  fields")
    for cls, layout in sorted(LAYOUTS.items(), key=lambda item: item[0].MSG_ID):
        size = f"{layout.min_size}" if layout.min_size == layout.max_size else (
            f"{layout.min_size}-{layout.max_size}"
        )
        fields = ", ".join(f"{spec.name}:{spec.wire.name}" for spec in cls.FIELDS) or "-"
        print(f"0x{cls.MSG_ID:02x}  {cls.NAME:<12} {size:>5}  {fields}")
    print(f"\n{'param':<26} {'default':>9} {'min':>9} {'max':>9}  unit")
    for spec in PARAMS.values():
        print(f"{spec.name:<26} {spec.default:>9g} {spec.min:>9g} {spec.max:>9g}  {spec.unit}")
    print("\nthe whole contract: firmware/PROTOCOL.md")


def _read_input(args: argparse.Namespace) -> bytes:
    """The bytes to decode: the file's, or the hex of the arguments (else of stdin);
    ``ValueError`` saying why not."""
    if args.file is not None:
        try:
            return bytes(Path(args.file).read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read {args.file}: {exc.strerror}") from None
    text = "".join(args.hex).replace(":", "").replace(" ", "")
    if not text:
        text = sys.stdin.read().replace(":", "").replace(" ", "").replace("\n", "")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"not hex: {exc}") from None


def _decode(args: argparse.Namespace) -> int:
    try:
        data = _read_input(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    decoder = FrameDecoder()
    frames = rejects = 0
    for event in decoder.feed(data):
        if isinstance(event, Frame):
            frames += 1
            msg = event.message
            fields = " ".join(f"{spec.name}={getattr(msg, spec.name)!r}" for spec in msg.FIELDS)
            print(f"seq={event.seq:<3} {msg.NAME} {fields}".rstrip())
        else:
            rejects += 1
            where = ""
            if event.msg_id is not None:
                where = f" (msg_id 0x{event.msg_id:02x} seq {event.seq})"
            print(f"reject {event.reason.name}{where}")
    print(
        f"{len(data)} bytes: {frames} frames, {rejects} rejected, "
        f"{decoder.rx_dropped} lost by sequence gaps"
    )
    return 0 if rejects == 0 else 1
