// Framing of the Zima wire protocol (PROTOCOL.md section 1): a pure codec.
//
//   raw  = msg_id:u8 | seq:u8 | payload | crc:u16 (CRC-16/CCITT-FALSE, low byte first)
//   wire = COBS(raw) | 0x00
//
// encode_frame() turns one message into wire bytes; FrameDecoder turns a byte
// stream into frames and rejects, resynchronising at the next 0x00 after garbage.
#ifndef ZIMA_CORE_PROTOCOL_H
#define ZIMA_CORE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "messages.h"

namespace zima {

/// id + seq + payload + crc.
const uint8_t kMaxRawFrame = 2 + kMaxPayload + 2;                 // 53
/// COBS adds one code byte to a frame this short.
const uint8_t kMaxEncodedFrame = kMaxRawFrame + 1;               // 54
/// Encoded frame plus the 0x00 delimiter: what a transmit buffer must hold.
const uint8_t kMaxWireFrame = kMaxEncodedFrame + 1;              // 55

/// Encodes one frame, delimiter included, into `out` (capacity `out_cap`).
/// Returns the number of wire bytes, or 0 when `payload_len` exceeds kMaxPayload
/// or `out_cap` is too small. Does not check the id or the payload length.
size_t encode_frame(uint8_t msg_id, uint8_t seq, const uint8_t* payload,
                    size_t payload_len, uint8_t* out, size_t out_cap);

/// Packs a message struct and encodes it as one frame (see encode_frame).
template <typename Msg>
size_t encode_message(const Msg& msg, uint8_t seq, uint8_t* out, size_t out_cap) {
  uint8_t payload[kMaxPayload];
  const size_t len = pack(msg, payload);
  return encode_frame(static_cast<uint8_t>(Msg::kId), seq, payload, len, out, out_cap);
}

/// Why the decoder dropped a frame (PROTOCOL.md section 1).
enum class Reject : uint8_t {
  kNone = 0,
  kOversize = 1,   // more than kMaxEncodedFrame bytes before a 0x00
  kBadCobs = 2,    // a COBS code byte points past the end of the frame
  kTooShort = 3,   // decoded frame shorter than 4 bytes
  kBadCrc = 4,     // CRC mismatch
  kUnknownId = 5,  // valid CRC, unknown msg_id
  kBadLength = 6,  // valid CRC, payload length wrong for msg_id
};

/// A decoded frame. `payload` points into the decoder's buffer and stays valid
/// until the next call to FrameDecoder::push().
struct FrameView {
  uint8_t msg_id;
  uint8_t seq;
  const uint8_t* payload;
  uint8_t payload_len;
};

/// Streaming decoder: push bytes one at a time, act on each event.
///
///   kFrame:  frame() holds a message with valid CRC, known id and right length.
///   kReject: reject() says why. For kUnknownId and kBadLength the CRC was valid,
///            and frame().msg_id / frame().seq name the frame (for the ACK).
///
/// Its only buffer holds the largest encoded frame (54 bytes) and no more;
/// frames are COBS-decoded in place.
class FrameDecoder {
 public:
  enum class Event : uint8_t { kNone, kFrame, kReject };

  FrameDecoder() : len_(0), discarding_(false), reject_(Reject::kNone) { frame_.payload = buf_; }

  /// Feeds one byte.
  Event push(uint8_t byte);

  /// Forgets a partly received frame.
  void reset() { len_ = 0; discarding_ = false; }

  const FrameView& frame() const { return frame_; }
  Reject reject() const { return reject_; }

 private:
  Event finish_frame();
  Event fail(Reject reason) { reject_ = reason; return Event::kReject; }

  uint8_t buf_[kMaxEncodedFrame];
  uint8_t len_;
  bool discarding_;  // after OVERSIZE: skip to the next 0x00
  Reject reject_;
  FrameView frame_;
};

/// Receiver-side sequence check (PROTOCOL.md section 1, "Sequence numbers").
class SeqTracker {
 public:
  SeqTracker() : last_seq_(0), started_(false) {}

  /// Takes the seq of a frame with valid CRC; returns how many frames were lost.
  uint8_t on_frame(uint8_t seq) {
    uint8_t lost = 0;
    if (started_) {
      const uint8_t gap = static_cast<uint8_t>(seq - static_cast<uint8_t>(last_seq_ + 1u));
      if (gap < 128u) lost = gap;  // gap >= 128: duplicate, reorder or restarted peer
    }
    started_ = true;
    last_seq_ = seq;
    return lost;
  }

 private:
  uint8_t last_seq_;
  bool started_;
};

}  // namespace zima

#endif  // ZIMA_CORE_PROTOCOL_H
