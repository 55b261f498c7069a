// CRC-16/CCITT-FALSE: polynomial 0x1021, init 0xFFFF, no reflection, no final XOR.
// Check value: crc16_ccitt_false("123456789") == 0x29B1.
#ifndef ZIMA_CORE_CRC16_H
#define ZIMA_CORE_CRC16_H

#include <stddef.h>
#include <stdint.h>

namespace zima {

/// Initial value of the running CRC.
const uint16_t kCrc16Init = 0xFFFFu;

/// Folds one byte into a running CRC (start from kCrc16Init).
uint16_t crc16_update(uint16_t crc, uint8_t byte);

/// CRC-16/CCITT-FALSE of `len` bytes.
uint16_t crc16_ccitt_false(const uint8_t* data, size_t len);

}  // namespace zima

#endif  // ZIMA_CORE_CRC16_H
