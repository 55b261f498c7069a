#include "protocol.h"

#include <string.h>

#include "cobs.h"
#include "crc16.h"

namespace zima {

size_t encode_frame(uint8_t msg_id, uint8_t seq, const uint8_t* payload,
                    size_t payload_len, uint8_t* out, size_t out_cap) {
  if (payload_len > kMaxPayload) {
    return 0;
  }
  uint8_t raw[kMaxRawFrame];
  raw[0] = msg_id;
  raw[1] = seq;
  if (payload_len > 0) {
    memcpy(raw + 2, payload, payload_len);
  }
  const size_t crc_at = 2 + payload_len;
  const uint16_t crc = crc16_ccitt_false(raw, crc_at);
  raw[crc_at] = static_cast<uint8_t>(crc & 0xFFu);
  raw[crc_at + 1] = static_cast<uint8_t>(crc >> 8);
  const size_t raw_len = crc_at + 2;

  if (out_cap < cobs_max_encoded_len(raw_len) + 1) {
    return 0;
  }
  const size_t n = cobs_encode(raw, raw_len, out, out_cap - 1);
  out[n] = 0x00;  // delimiter
  return n + 1;
}

FrameDecoder::Event FrameDecoder::push(uint8_t byte) {
  if (byte != 0x00) {
    if (discarding_) {
      return Event::kNone;
    }
    if (len_ == kMaxEncodedFrame) {
      // One reject per oversize run, reported as soon as it is certain.
      len_ = 0;
      discarding_ = true;
      return fail(Reject::kOversize);
    }
    buf_[len_++] = byte;
    return Event::kNone;
  }
  // Delimiter: end of a frame, of a discarded run, or an empty frame (ignored).
  if (discarding_ || len_ == 0) {
    discarding_ = false;
    len_ = 0;
    return Event::kNone;
  }
  const Event event = finish_frame();
  len_ = 0;
  return event;
}

FrameDecoder::Event FrameDecoder::finish_frame() {
  size_t raw_len = 0;
  if (!cobs_decode(buf_, len_, buf_, &raw_len)) {
    return fail(Reject::kBadCobs);
  }
  if (raw_len < 4) {
    return fail(Reject::kTooShort);
  }
  const size_t payload_len = raw_len - 4;
  const uint16_t rx_crc = static_cast<uint16_t>(buf_[raw_len - 2] | (buf_[raw_len - 1] << 8));
  if (crc16_ccitt_false(buf_, raw_len - 2) != rx_crc) {
    return fail(Reject::kBadCrc);
  }
  frame_.msg_id = buf_[0];
  frame_.seq = buf_[1];
  frame_.payload = buf_ + 2;
  frame_.payload_len = static_cast<uint8_t>(payload_len);

  uint8_t min_len = 0;
  uint8_t max_len = 0;
  if (!message_size_range(frame_.msg_id, &min_len, &max_len)) {
    return fail(Reject::kUnknownId);
  }
  if (payload_len < min_len || payload_len > max_len) {
    return fail(Reject::kBadLength);
  }
  reject_ = Reject::kNone;
  return Event::kFrame;
}

}  // namespace zima
