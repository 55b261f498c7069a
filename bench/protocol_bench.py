"""Zima framing vs MAVLink v2 framing for one real TELEMETRY sample.

    .venv/bin/python bench/protocol_bench.py

Bytes per frame (ours: 6 bytes of overhead, MAVLink v2: 12) and the Python encode and
decode rates of both codecs. The MAVLink side is pymavlink's own generator (mavgen,
wire protocol 2.0, offline) run on bench/zima_mavlink.xml, a dialect with one message
carrying the TELEMETRY fields with the same names and types; the module is generated
into a temporary folder each run. Takes about 10 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pymavlink.generator import mavgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import record
from zima.protocol import FRAME_OVERHEAD, Frame, FrameDecoder, FrameEncoder, State, Telemetry

DIALECT = Path(__file__).resolve().parent / "zima_mavlink.xml"
MAVLINK_V2_OVERHEAD = 12  # magic, len, incompat, compat, seq, sysid, compid, msgid (3), crc (2)
TELEMETRY_HZ = 50  # the default telemetry_hz
LINK_BYTES_S = 115200 // 10  # 8N1: 10 bits on the line per byte
STREAM_FRAMES = 2000
SAMPLE = Telemetry(
    mcu_time_ms=123456, enc_left_ticks=20480, enc_right_ticks=-20311, vel_left_mm_s=312,
    vel_right_mm_s=-305, target_left_mm_s=300, target_right_mm_s=-300, out_left_permille=402,
    out_right_permille=-398, battery_mv=11874, state=State.DRIVING, faults=0, rx_frames=1520,
    rx_rejected=2, rx_dropped=1, tx_dropped=0,
)  # fmt: skip
FIELDS = [spec.name for spec in SAMPLE.FIELDS]


def generate_mavlink(folder: Path) -> ModuleType:
    """Run mavgen (wire protocol 2.0) on the dialect and import the generated module."""
    output = folder / "zima_mavlink.py"
    opts = mavgen.Opts(str(output), wire_protocol="2.0", language="Python3", validate=False)
    with contextlib.redirect_stdout(io.StringIO()):  # mavgen narrates every step
        if not mavgen.mavgen(opts, [str(DIALECT)]):
            raise RuntimeError(f"mavgen failed on {DIALECT}")
    spec = importlib.util.spec_from_file_location("zima_mavlink", output)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import the module mavgen wrote: {output}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(work: Callable[[], int], seconds: float = 1.0) -> float:
    """Items per second of ``work`` (which returns how many items it did), best of 3."""
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            done += work()
        best = max(best, done / elapsed)
    return best


def measure(mavlink: Any) -> list[tuple[str, float, float]]:
    """(metric, zima, mavlink) rows."""
    mav = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
    mav_msg = mavlink.MAVLink_zima_telemetry_message(*(getattr(SAMPLE, f) for f in FIELDS))
    mav_wire: bytes = mav_msg.pack(mav)
    encoder = FrameEncoder()
    ours_wire = encoder.encode(SAMPLE)

    # Both decode the sample to the same fields, or the comparison means nothing.
    (decoded,) = mavlink.MAVLink(None).parse_buffer(mav_wire)
    assert [getattr(decoded, f) for f in FIELDS] == [getattr(SAMPLE, f) for f in FIELDS]
    assert FrameDecoder().feed(ours_wire) == [Frame(0, SAMPLE)]
    payload = len(ours_wire) - FRAME_OVERHEAD
    assert len(mav_wire) - MAVLINK_V2_OVERHEAD == payload  # no zero trimming on this sample

    def ours_encode() -> int:
        for _ in range(100):
            encoder.encode(SAMPLE)
        return 100

    def mav_encode() -> int:
        for _ in range(100):
            mav_msg.pack(mav)
        return 100

    ours_stream = b"".join(FrameEncoder().encode(SAMPLE) for _ in range(STREAM_FRAMES))
    mav_stream = b"".join(mav_msg.pack(mav) for _ in range(STREAM_FRAMES))

    def ours_decode() -> int:
        return len(FrameDecoder().feed(ours_stream))

    def mav_decode() -> int:
        return len(mavlink.MAVLink(None).parse_buffer(mav_stream))

    return [
        ("TELEMETRY payload, bytes", payload, payload),
        ("framing overhead, bytes/frame", FRAME_OVERHEAD, len(mav_wire) - payload),
        ("TELEMETRY frame on the wire, bytes", len(ours_wire), len(mav_wire)),
        (f"link load at {TELEMETRY_HZ} Hz, % of 115200 8N1",
         100 * len(ours_wire) * TELEMETRY_HZ / LINK_BYTES_S,
         100 * len(mav_wire) * TELEMETRY_HZ / LINK_BYTES_S),
        ("Python encode, frames/s", rate(ours_encode), rate(mav_encode)),
        ("Python decode (stream), frames/s", rate(ours_decode), rate(mav_decode)),
    ]  # fmt: skip


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 or value == int(value) else f"{value:.1f}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="zima-mavgen-") as folder:
        rows = measure(generate_mavlink(Path(folder)))
    header = ("metric", "zima", "mavlink v2", "zima/mavlink")
    table = [header] + [(m, number(z), number(v), f"{z / v:.2f}") for m, z, v in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for index, row in enumerate(table):
        cells = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        print(row[0].ljust(widths[0]), *cells)
        if index == 0:
            print("-" * (sum(widths) + 3))
    for metric, zima, mavlink in rows:
        if metric.startswith(("TELEMETRY frame", "Python")):
            record("protocol", f"{metric} (zima vs MAVLink v2)",
                   f"{number(zima)} vs {number(mavlink)}")


if __name__ == "__main__":
    main()
