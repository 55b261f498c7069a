"""The golden vectors file: the contract the C++ tests read too.

If the file differs from what the generator produces, the two codecs could drift:
regenerate with ``python -m zima.protocol.vectors`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zima.protocol import (
    MAX_PAYLOAD,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    FrameDecoder,
    RejectReason,
    encode_frame,
)
from zima.protocol.golden import (
    FrameVector,
    GoldenFile,
    RejectVector,
    StreamVector,
    format_f32,
    format_outcomes,
    parse_golden,
)
from zima.protocol.vectors import GOLDEN_PATH, main, render

GOLDEN = parse_golden(GOLDEN_PATH.read_text(encoding="utf-8"))
FRAMES = [v for v in GOLDEN.vectors if isinstance(v, FrameVector)]
REJECTS = [v for v in GOLDEN.vectors if isinstance(v, RejectVector)]
STREAMS = [v for v in GOLDEN.vectors if isinstance(v, StreamVector)]


def feed_whole(wire: bytes) -> tuple[str, ...]:
    return format_outcomes(FrameDecoder().feed(wire))


def feed_bytewise(wire: bytes) -> tuple[str, ...]:
    decoder = FrameDecoder()
    return format_outcomes([e for byte in wire for e in decoder.feed(bytes([byte]))])


def test_file_is_what_the_generator_writes() -> None:
    assert GOLDEN_PATH.read_text(encoding="utf-8") == render()
    assert main(["--check"]) == 0


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "golden_frames.txt"
    stale.write_text(render().replace("max_payload 49", "max_payload 48"), encoding="utf-8")
    assert main(["--check", "--path", str(stale)]) == 1
    assert main(["--path", str(stale)]) == 0
    assert main(["--check", "--path", str(stale)]) == 0


def test_header() -> None:
    assert GOLDEN.protocol_version == PROTOCOL_VERSION == 1
    assert GOLDEN.schema_hash == SCHEMA_HASH
    assert GOLDEN.max_payload == MAX_PAYLOAD == 49


def test_worked_example_of_protocol_md() -> None:
    (heartbeat,) = [v for v in FRAMES if v.name == "heartbeat_1000"]
    assert heartbeat.wire.hex(" ") == "05 02 07 e8 03 01 03 fd ba 00"
    assert heartbeat.seq == 7


def test_coverage() -> None:
    """Every message type, every reject reason, seq 0 and 255, both LOG extremes."""
    assert {v.message.NAME for v in FRAMES} == {cls.NAME for cls in MESSAGE_TYPES}
    assert {v.reason for v in REJECTS} == set(RejectReason)
    assert {0, 255} <= {v.seq for v in FRAMES}
    log_lengths = {len(getattr(v.message, "text", b"x")) for v in FRAMES if v.message.NAME == "LOG"}
    assert {0, 48} <= log_lengths
    assert len(STREAMS) >= 5
    assert len({v.name for v in GOLDEN.vectors}) == len(GOLDEN.vectors)


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v.name)
def test_frame(vector: FrameVector) -> None:
    assert encode_frame(vector.message, vector.seq) == vector.wire
    expected = (f"{vector.message.NAME}@{vector.seq}",)
    assert feed_whole(vector.wire) == feed_bytewise(vector.wire) == expected
    assert FrameDecoder().feed(vector.wire)[0].message == vector.message  # type: ignore[union-attr]


@pytest.mark.parametrize("vector", REJECTS, ids=lambda v: v.name)
def test_reject(vector: RejectVector) -> None:
    expected = (f"!{vector.reason.name}",)
    assert feed_whole(vector.wire) == feed_bytewise(vector.wire) == expected


@pytest.mark.parametrize("vector", STREAMS, ids=lambda v: v.name)
def test_stream(vector: StreamVector) -> None:
    assert feed_whole(vector.wire) == feed_bytewise(vector.wire) == vector.outcomes


def test_every_wire_string_ends_with_its_delimiter() -> None:
    for vector in GOLDEN.vectors:
        assert vector.wire.endswith(b"\x00"), vector.name


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (1e-3, "1e-3"), (-1.5, "-1.5"), (-0.0, "-0"), (250.0, "250"),
     (3.4028234663852886e38, "3.4028235e38"), (1.401298464324817e-45, "1e-45")],
)  # fmt: skip
def test_f32_text_is_shortest_and_reads_back(value: float, text: str) -> None:
    assert format_f32(value) == text


def test_parser_rejects_a_malformed_line() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_golden("frame x 00 NO_SUCH_MESSAGE seq=0\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_golden("# comment\nframe x 0202010101010103508500 HEARTBEAT seq=0 wrong=0\n")
    assert isinstance(
        parse_golden("protocol_version 1\nschema_hash 0x0\nmax_payload 1\n"), GoldenFile
    )
