#include "cobs.h"

namespace zima {

size_t cobs_encode(const uint8_t* in, size_t len, uint8_t* out, size_t out_cap) {
  if (out_cap < cobs_max_encoded_len(len)) {
    return 0;
  }
  size_t code_pos = 0;  // where the current block's code byte goes
  size_t out_pos = 1;
  uint8_t code = 1;     // 1 + data bytes in the current block
  for (size_t i = 0; i < len; ++i) {
    if (in[i] == 0) {
      out[code_pos] = code;
      code_pos = out_pos++;
      code = 1;
      continue;
    }
    out[out_pos++] = in[i];
    ++code;
    if (code == 0xFF) {
      // A full block: 254 data bytes and no implicit zero after them.
      out[code_pos] = code;
      code_pos = out_pos++;
      code = 1;
    }
  }
  out[code_pos] = code;
  return out_pos;
}

bool cobs_decode(const uint8_t* in, size_t len, uint8_t* out, size_t* out_len) {
  size_t in_pos = 0;
  size_t out_pos = 0;
  while (in_pos < len) {
    const uint8_t code = in[in_pos++];
    if (code == 0 || in_pos + code - 1 > len) {
      return false;  // a delimiter inside the frame, or a pointer past its end
    }
    for (uint8_t i = 1; i < code; ++i) {
      const uint8_t byte = in[in_pos++];
      if (byte == 0) {
        return false;
      }
      out[out_pos++] = byte;
    }
    // Each block but the last, and but a full one, ends in an implicit zero.
    if (code != 0xFF && in_pos < len) {
      out[out_pos++] = 0;
    }
  }
  *out_len = out_pos;
  return true;
}

}  // namespace zima
