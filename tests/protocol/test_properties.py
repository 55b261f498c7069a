"""Property tests of the codec: round trips, corruption, resynchronisation, sequence gaps.

The strategies are built from the message table, so every message (and any message
added later) is covered over the full range of every field.
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import example, given
from hypothesis import strategies as st

from zima.protocol import (
    MESSAGE_TYPES,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Message,
    Reject,
    SequenceTracker,
    decode_frame,
    encode_frame,
)
from zima.protocol.fields import F32_T, TEXT48_T, TEXT_MAX_BYTES, FieldSpec


def field_values(spec: FieldSpec) -> st.SearchStrategy[object]:
    """Every value the field's wire type can carry (not NaN: it never equals itself)."""
    if spec.wire is F32_T:
        return st.floats(width=32, allow_nan=False)
    if spec.wire is TEXT48_T:
        return st.binary(max_size=TEXT_MAX_BYTES)
    return st.integers(spec.wire.lo, spec.wire.hi)


def messages_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Messages of one type over the full range of each of its fields."""
    return st.builds(cls, *(field_values(spec) for spec in cls.FIELDS))


messages = st.sampled_from(MESSAGE_TYPES).flatmap(messages_of)
seqs = st.integers(0, 255)


def code_byte_positions(wire: bytes) -> set[int]:
    """Indices of the COBS code bytes in one encoded frame (delimiter excluded)."""
    positions, index = set(), 0
    while index < len(wire) - 1:
        positions.add(index)
        index += wire[index]
    return positions


def assert_never_another(events: list[Frame | Reject], msg: Message, seq: int) -> None:
    for event in events:
        if isinstance(event, Frame):
            assert (event.message, event.seq) == (msg, seq)


# --- round trips ------------------------------------------------------------------------


def test_strategies_cover_every_message() -> None:
    assert {cls.NAME for cls in MESSAGE_TYPES} == {
        "HELLO", "HEARTBEAT", "DRIVE", "ARM", "PARAM_SET", "PARAM_GET", "ESTOP", "CLEAR",
        "INFO", "TELEMETRY", "ACK", "PARAM_VALUE", "LOG", "ARM_STATE",
    }  # fmt: skip


@given(st.data())
def test_every_message_type_round_trips(data: st.DataObject) -> None:
    for cls in MESSAGE_TYPES:  # each type in every example, not just when sampled
        msg, seq = data.draw(messages_of(cls)), data.draw(seqs)
        assert FrameDecoder().feed(encode_frame(msg, seq)) == [Frame(seq, msg)]


@given(messages, seqs)
def test_round_trip_byte_by_byte(msg: Message, seq: int) -> None:
    wire = encode_frame(msg, seq)
    assert wire.count(0) == 1
    assert wire[-1] == 0
    decoder = FrameDecoder()
    events = [event for byte in wire for event in decoder.feed(bytes([byte]))]
    assert events == [Frame(seq, msg)]
    assert decode_frame(wire[:-1]) == Frame(seq, msg)


@given(st.lists(st.tuples(messages, seqs), max_size=8), st.data())
def test_any_chunking_gives_the_same_events(
    frames: list[tuple[Message, int]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(msg, seq) for msg, seq in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += decoder.feed(stream[start:end])
    assert events == [Frame(seq, msg) for msg, seq in frames]


# --- corruption ---------------------------------------------------------------------------


class Site(NamedTuple):
    """A message, its frame on the wire, and a byte position in that frame."""

    msg: Message
    seq: int
    wire: bytes
    pos: int


@st.composite
def sites(draw: st.DrawFn, *, past_end: bool = False) -> Site:
    """Any message's frame and any index in it (``past_end``: up to ``len(wire)`` too,
    where a byte can be inserted)."""
    msg, seq = draw(messages), draw(seqs)
    wire = encode_frame(msg, seq)
    last = len(wire) if past_end else len(wire) - 1
    return Site(msg, seq, wire, draw(st.integers(0, last), label="index"))


@given(sites(), st.integers(0, 7))
def test_single_bit_flip_never_gives_another_message(site: Site, bit: int) -> None:
    msg, seq, wire, index = site
    bad = bytearray(wire)
    bad[index] ^= 1 << bit
    decoder = FrameDecoder()
    events = decoder.feed(bytes(bad) + b"\x00")  # the 0x00 closes a flipped delimiter
    assert_never_another(events, msg, seq)
    if index not in code_byte_positions(wire) and index != len(wire) - 1 and bad[index]:
        # one flipped data bit: the CRC detects it with certainty
        assert decoder.rx_frames == 0
        assert decoder.rx_rejected == 1


@given(sites())
def test_dropped_byte_never_gives_another_message(site: Site) -> None:
    msg, seq, wire, index = site
    events = FrameDecoder().feed(wire[:index] + wire[index + 1 :] + b"\x00")
    assert_never_another(events, msg, seq)
    if index < len(wire) - 1:  # (dropping the delimiter only delays the frame to our 0x00)
        assert not any(isinstance(e, Frame) for e in events)


@given(sites(past_end=True), st.integers(0, 255))
def test_inserted_byte_never_gives_another_message(site: Site, byte: int) -> None:
    msg, seq, wire, index = site
    events = FrameDecoder().feed(wire[:index] + bytes([byte]) + wire[index:])
    assert_never_another(events, msg, seq)


@given(st.binary(max_size=300), messages, seqs)
@example(garbage=bytes(range(1, 200)), msg=Heartbeat(1), seq=1)  # an oversize run
def test_resync_after_garbage(garbage: bytes, msg: Message, seq: int) -> None:
    decoder = FrameDecoder()
    events = decoder.feed(garbage + b"\x00" + encode_frame(msg, seq))
    assert events[-1] == Frame(seq, msg)
    assert decoder.rx_frames + decoder.rx_rejected == len(events)


@given(st.binary(max_size=300))
def test_decoder_never_raises_and_counts_every_event(data: bytes) -> None:
    decoder = FrameDecoder()
    events = decoder.feed(data)
    assert decoder.rx_rejected == sum(isinstance(e, Reject) for e in events)
    assert decoder.rx_frames == sum(isinstance(e, Frame) for e in events)


# --- sequence gaps --------------------------------------------------------------------------


@given(seqs, st.lists(st.integers(0, 127), max_size=600))
def test_lost_frames_are_counted_across_wraps(first: int, gaps: list[int]) -> None:
    """A sender whose frames are lost in runs shorter than 128: every loss counted."""
    sent_seqs = [first]
    for gap in gaps:
        sent_seqs.append((sent_seqs[-1] + 1 + gap) & 0xFF)
    decoder = FrameDecoder()
    stream = b"".join(encode_frame(Heartbeat(i), seq) for i, seq in enumerate(sent_seqs))
    decoder.feed(stream)
    assert decoder.rx_frames == len(sent_seqs)
    assert decoder.rx_dropped == sum(gaps)


@given(st.lists(seqs, max_size=50))
def test_gaps_of_128_or_more_are_not_counted(sequence: list[int]) -> None:
    tracker = SequenceTracker()
    total = 0
    for seq in sequence:
        previous = tracker.last_seq
        lost = tracker.observe(seq)
        assert 0 <= lost < 128
        if previous is not None and lost:
            assert (previous + 1 + lost) & 0xFF == seq
        total += lost
    assert tracker.rx_dropped == total


@given(st.integers(1, 1000))
def test_encoder_counts_mod_256(count: int) -> None:
    encoder = FrameEncoder()
    wires = [encoder.encode(Heartbeat(0)) for _ in range(count)]
    decoder = FrameDecoder()
    events = decoder.feed(b"".join(wires))
    assert [e.seq for e in events] == [i & 0xFF for i in range(count)]
    assert decoder.rx_dropped == 0
