// Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).
//
// The encoded form contains no 0x00 byte; each code byte gives the distance to
// the next (implicit) zero, 0xFF meaning 254 data bytes and no zero. The frame
// delimiter is not part of these functions: the framing layer appends it.
#ifndef ZIMA_CORE_COBS_H
#define ZIMA_CORE_COBS_H

#include <stddef.h>
#include <stdint.h>

namespace zima {

/// Largest encoded size of `len` input bytes (one code byte per 254, at least one).
inline size_t cobs_max_encoded_len(size_t len) { return len + len / 254 + 1; }

/// Encodes `len` bytes into `out` (capacity `out_cap`). Returns the encoded length,
/// or 0 when `out_cap` is too small. `in` and `out` must not overlap.
size_t cobs_encode(const uint8_t* in, size_t len, uint8_t* out, size_t out_cap);

/// Decodes `len` encoded bytes (no delimiter) into `out`, which may equal `in`
/// (decoding in place is safe: the output never overtakes the input).
/// Returns false when the input holds a 0x00 or a code byte points past its end;
/// otherwise stores the decoded length in `*out_len` (always < len).
bool cobs_decode(const uint8_t* in, size_t len, uint8_t* out, size_t* out_len);

}  // namespace zima

#endif  // ZIMA_CORE_COBS_H
