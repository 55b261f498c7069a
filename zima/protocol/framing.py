"""Framing (PROTOCOL.md section 1): CRC, COBS, the 0x00 delimiter, sequence numbers.

``encode_frame(msg, seq)`` turns a message into wire bytes; ``FrameDecoder.feed(data)``
turns any chunking of wire bytes back into events, ``Frame`` (a message and its seq)
or ``Reject`` (why a frame was dropped), in stream order. The decoder never raises on
input bytes: a receiver must survive whatever the line delivers.

    >>> from zima.protocol import Heartbeat
    >>> wire = encode_frame(Heartbeat(host_time_ms=1000), seq=7)
    >>> wire.hex(" ")
    '05 02 07 e8 03 01 03 fd ba 00'
    >>> FrameDecoder().feed(wire)
    [Frame(seq=7, message=Heartbeat(host_time_ms=1000))]
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from cobs import cobs

from zima.protocol.enums import RejectReason
from zima.protocol.messages import Message
from zima.protocol.schema import MAX_ENCODED_FRAME, MESSAGES_BY_ID, layout_of

__all__ = [
    "Event",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "Reject",
    "SequenceTracker",
    "crc16",
    "decode_frame",
    "encode_frame",
]

_MIN_RAW = 4  # msg_id, seq, crc (2)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(msg: Message, seq: int) -> bytes:
    """The wire bytes of ``msg`` with sequence number ``seq``, trailing 0x00 included."""
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq={seq} is outside the u8 range 0..255")
    body = bytes((msg.MSG_ID, seq)) + layout_of(msg).pack(msg)
    encoded: bytes = cobs.encode(body + crc16(body).to_bytes(2, "little"))
    return encoded + b"\x00"


class FrameEncoder:
    """Encodes messages with this sender's own 8-bit sequence counter (0 after open)."""

    def __init__(self) -> None:
        self.next_seq = 0

    def encode(self, msg: Message) -> bytes:
        """Wire bytes of ``msg`` with the next sequence number (mod 256)."""
        wire = encode_frame(msg, self.next_seq)
        self.next_seq = (self.next_seq + 1) & 0xFF
        return wire


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: its sequence number and message."""

    seq: int
    message: Message


@dataclass(frozen=True, slots=True)
class Reject:
    """A dropped frame. ``msg_id`` and ``seq`` are set when its CRC was valid
    (UNKNOWN_ID, BAD_LENGTH), so the MCU can address its ``ACK``."""

    reason: RejectReason
    msg_id: int | None = None
    seq: int | None = None


Event = Frame | Reject


def decode_frame(encoded: bytes) -> Event:  # noqa: PLR0911 (one return per row of the table)
    """Decode one COBS-encoded frame, without its 0x00 delimiter (checks of section 1)."""
    if len(encoded) > MAX_ENCODED_FRAME:
        return Reject(RejectReason.OVERSIZE)
    try:
        raw: bytes = cobs.decode(encoded)
    except cobs.DecodeError:
        return Reject(RejectReason.BAD_COBS)
    if len(raw) < _MIN_RAW:
        return Reject(RejectReason.TOO_SHORT)
    if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        return Reject(RejectReason.BAD_CRC)
    msg_id, seq = raw[0], raw[1]
    layout = MESSAGES_BY_ID.get(msg_id)
    if layout is None:
        return Reject(RejectReason.UNKNOWN_ID, msg_id, seq)
    payload = raw[2:-2]
    if not layout.min_size <= len(payload) <= layout.max_size:
        return Reject(RejectReason.BAD_LENGTH, msg_id, seq)
    return Frame(seq, layout.unpack(payload))


class SequenceTracker:
    """Counts frames lost according to sequence gaps (the ``rx_dropped`` rule).

    ``gap = (seq - (last_seq + 1)) mod 256``; ``1 <= gap < 128`` adds ``gap`` lost
    frames, ``gap >= 128`` (duplicate, reordering, restarted peer) adds none. The first
    frame is taken as is. The counter is a Python int (the MCU's u16 wraps).
    """

    def __init__(self) -> None:
        self.last_seq: int | None = None
        self.rx_dropped = 0

    def observe(self, seq: int) -> int:
        """Record a frame with a valid CRC; return how many frames it says were lost."""
        lost = 0
        if self.last_seq is not None:
            gap = (seq - self.last_seq - 1) & 0xFF
            lost = gap if gap < 128 else 0
        self.last_seq = seq
        self.rx_dropped += lost
        return lost


class FrameDecoder:
    """Streaming decoder: ``feed`` any chunk of wire bytes, get the events it completes.

    Bytes accumulate until a 0x00. Empty frames (0x00 runs) are ignored. More than
    ``MAX_ENCODED_FRAME`` (54) bytes before a 0x00 is one ``OVERSIZE`` reject, reported
    when the 55th byte arrives; the rest up to the next 0x00 is discarded. Counters
    follow TELEMETRY: ``rx_frames`` decoded, ``rx_rejected``, and ``rx_dropped`` (gaps
    in the sequence numbers of frames whose CRC is valid).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False  # inside an oversize run, until the next 0x00
        self.sequence = SequenceTracker()
        self.rx_frames = 0
        self.rx_rejected = 0

    @property
    def rx_dropped(self) -> int:
        """Frames lost according to sequence gaps."""
        return self.sequence.rx_dropped

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume ``data``; return the frames and rejects it completes, in order."""
        data = bytes(data)
        events: list[Event] = []
        start = 0
        while (end := data.find(0, start)) >= 0:
            if self._buffer or self._discarding:  # a frame begun in an earlier chunk
                self._accumulate(data, start, end, events)
                self._end_frame(events)
            elif end > start:  # a whole frame inside this chunk: no copy into the buffer
                self._record(decode_frame(data[start:end]), events)
            start = end + 1
        self._accumulate(data, start, len(data), events)
        return events

    def _accumulate(self, data: bytes, start: int, end: int, events: list[Event]) -> None:
        if self._discarding or start == end:
            return
        if len(self._buffer) + (end - start) > MAX_ENCODED_FRAME:
            self._buffer.clear()
            self._discarding = True
            self._record(Reject(RejectReason.OVERSIZE), events)
            return
        self._buffer += data[start:end]

    def _end_frame(self, events: list[Event]) -> None:
        if self._discarding:
            self._discarding = False
        elif self._buffer:
            self._record(decode_frame(bytes(self._buffer)), events)
            self._buffer.clear()

    def _record(self, event: Event, events: list[Event]) -> None:
        if isinstance(event, Frame):
            self.rx_frames += 1
            self.sequence.observe(event.seq)
        else:
            self.rx_rejected += 1
            if event.seq is not None:  # valid CRC: its sequence number counts
                self.sequence.observe(event.seq)
        events.append(event)
