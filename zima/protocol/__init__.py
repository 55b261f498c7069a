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

from zima.protocol import enums, framing, handshake, messages, schema
from zima.protocol.enums import *  # noqa: F403
from zima.protocol.framing import *  # noqa: F403
from zima.protocol.handshake import *  # noqa: F403
from zima.protocol.messages import *  # noqa: F403
from zima.protocol.schema import *  # noqa: F403

# Each module's __all__ names its public API once; the package is their union.
__all__: list[str] = []
__all__ += enums.__all__
__all__ += framing.__all__
__all__ += handshake.__all__
__all__ += messages.__all__
__all__ += schema.__all__
