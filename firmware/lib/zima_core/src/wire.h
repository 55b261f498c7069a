// Little-endian field writer and reader for message payloads.
//
// Messages are packed field by field, never by copying a packed struct, so the
// layout is the one PROTOCOL.md gives on every compiler and every CPU.
#ifndef ZIMA_CORE_WIRE_H
#define ZIMA_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace zima {

// The f32 fields travel as IEEE-754 binary32; avr-gcc's float and double are that too.
static_assert(sizeof(float) == 4, "f32 fields need a 32-bit float");

/// Appends little-endian fields to a caller-owned buffer (the caller sizes it).
class WireWriter {
 public:
  explicit WireWriter(uint8_t* out) : out_(out), len_(0) {}

  void u8(uint8_t v) { out_[len_++] = v; }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v & 0xFFu));
    u8(static_cast<uint8_t>(v >> 8));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v & 0xFFFFu));
    u16(static_cast<uint16_t>(v >> 16));
  }
  void i16(int16_t v) { u16(static_cast<uint16_t>(v)); }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void f32(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    u32(bits);
  }
  void bytes(const uint8_t* data, size_t n) {
    memcpy(out_ + len_, data, n);
    len_ += n;
  }

  /// Bytes written so far.
  size_t size() const { return len_; }

 private:
  uint8_t* out_;
  size_t len_;
};

/// Reads little-endian fields in order; the caller has checked the length.
class WireReader {
 public:
  explicit WireReader(const uint8_t* in) : in_(in), pos_(0) {}

  uint8_t u8() { return in_[pos_++]; }
  uint16_t u16() {
    uint16_t lo = u8();
    uint16_t hi = u8();
    return static_cast<uint16_t>(lo | (hi << 8));
  }
  uint32_t u32() {
    uint32_t lo = u16();
    uint32_t hi = u16();
    return lo | (hi << 16);
  }
  // Two's complement by arithmetic, not by an implementation-defined cast.
  int16_t i16() {
    uint16_t v = u16();
    return v < 0x8000u ? static_cast<int16_t>(v)
                       : static_cast<int16_t>(static_cast<int32_t>(v) - 0x10000L);
  }
  int32_t i32() {
    uint32_t v = u32();
    return v < 0x80000000UL ? static_cast<int32_t>(v)
                            : -static_cast<int32_t>(~v) - 1;
  }
  float f32() {
    uint32_t bits = u32();
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
  }
  void bytes(uint8_t* out, size_t n) {
    memcpy(out, in_ + pos_, n);
    pos_ += n;
  }

  /// Bytes read so far.
  size_t size() const { return pos_; }

 private:
  const uint8_t* in_;
  size_t pos_;
};

}  // namespace zima

#endif  // ZIMA_CORE_WIRE_H
