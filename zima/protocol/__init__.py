"""The Zima wire protocol (firmware/PROTOCOL.md), as a pure codec: bytes in, messages out.

No I/O and no serial library: the link layer (``zima.onboard``) owns the port and hands
bytes to :class:`FrameDecoder`, and sends what :func:`encode_frame` /
:class:`FrameEncoder` return.

Errors. The codec raises nothing of its own. Building a message or encoding a frame
with a value its wire type cannot carry raises ``ValueError`` naming the message, the
field and the range (``TypeError`` for a value of the wrong Python type). Decoding
never raises on input bytes: a bad frame becomes a :class:`Reject` event carrying a
:class:`RejectReason`, as section 1 of the contract prescribes.

Modules, in reading order: ``fields`` (wire types), ``enums`` (named numbers),
``messages`` (the message table), ``schema`` (layouts, MAX_PAYLOAD, schema hash),
``framing`` (CRC, COBS, encoder, streaming decoder, sequence gaps), ``handshake`` (the
host's check of ``INFO``: :class:`HandshakeError`), ``vectors`` (the golden vectors
shared with the C++ codec).
"""

from zima.protocol.enums import (
    PARAMS,
    Board,
    Capability,
    Fault,
    LogLevel,
    ParamId,
    ParamSpec,
    RejectReason,
    ResetCause,
    Result,
    State,
)
from zima.protocol.framing import (
    Event,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Reject,
    SequenceTracker,
    crc16,
    decode_frame,
    encode_frame,
)
from zima.protocol.handshake import HandshakeError, check_info, describe_info
from zima.protocol.messages import (
    MESSAGE_TYPES,
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
from zima.protocol.schema import (
    FRAME_OVERHEAD,
    MAX_ENCODED_FRAME,
    MAX_PAYLOAD,
    MAX_RAW_FRAME,
    MESSAGES_BY_ID,
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    schema_text,
)

__all__ = [
    "FRAME_OVERHEAD",
    "MAX_ENCODED_FRAME",
    "MAX_PAYLOAD",
    "MAX_RAW_FRAME",
    "MESSAGES_BY_ID",
    "MESSAGE_TYPES",
    "PARAMS",
    "PROTOCOL_VERSION",
    "SCHEMA_HASH",
    "Ack",
    "Arm",
    "ArmState",
    "Board",
    "Capability",
    "Clear",
    "Drive",
    "Estop",
    "Event",
    "Fault",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "HandshakeError",
    "Heartbeat",
    "Hello",
    "Info",
    "Log",
    "LogLevel",
    "Message",
    "ParamGet",
    "ParamId",
    "ParamSet",
    "ParamSpec",
    "ParamValue",
    "Reject",
    "RejectReason",
    "ResetCause",
    "Result",
    "SequenceTracker",
    "State",
    "Telemetry",
    "check_info",
    "crc16",
    "decode_frame",
    "describe_info",
    "encode_frame",
    "schema_text",
]
