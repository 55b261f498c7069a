#include "crc16.h"

namespace zima {

namespace {

// CRC of each 4-bit value shifted to the top: two lookups per byte. A 16-entry
// table (32 bytes) instead of 256 entries keeps the AVR's RAM free, and it has
// no per-bit branch (which also keeps fuzzing fast).
const uint16_t kNibbleTable[16] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
};

}  // namespace

uint16_t crc16_update(uint16_t crc, uint8_t byte) {
  crc = static_cast<uint16_t>((crc << 4) ^ kNibbleTable[(crc >> 12) ^ (byte >> 4)]);
  crc = static_cast<uint16_t>((crc << 4) ^ kNibbleTable[(crc >> 12) ^ (byte & 0x0Fu)]);
  return crc;
}

uint16_t crc16_ccitt_false(const uint8_t* data, size_t len) {
  uint16_t crc = kCrc16Init;
  for (size_t i = 0; i < len; ++i) {
    crc = crc16_update(crc, data[i]);
  }
  return crc;
}

}  // namespace zima
