// UART0 (the Mega's USB serial port) at 115200 8N1, interrupt driven, never blocking.
//
// Our own small driver rather than Arduino's Serial: its 64-byte transmit buffer
// cannot hold a TELEMETRY frame (43 bytes) plus an INFO and an ACK queued behind it,
// and Serial.write() blocks when the buffer is full. Here the transmit ring holds
// kTxSize bytes and UartSink::write() queues a whole frame or nothing (the
// Controller counts a refused frame in tx_dropped). Arduino's HardwareSerial is not
// linked, so its USART0 ISRs are not either.
#ifndef ZIMA_FIRMWARE_UART_H
#define ZIMA_FIRMWARE_UART_H

#include <stddef.h>
#include <stdint.h>

#include "byte_sink.h"

namespace uart {

const uint32_t kBaud = 115200;
const uint16_t kTxSize = 256;  // a power of two: 5 TELEMETRY frames
const uint8_t kRxSize = 128;   // a power of two: 11 ms of bytes at 115200

void begin();

/// True when received bytes are waiting (call with interrupts disabled or not).
bool rx_pending();

/// Moves up to `cap` received bytes to `out`; returns how many.
size_t read(uint8_t* out, size_t cap);

/// Bytes lost because the receive ring was full (the main loop fell behind).
uint16_t rx_overruns();

/// Queues all `len` bytes, or none (returns false) when they do not fit.
bool write(const uint8_t* data, size_t len);

}  // namespace uart

/// The Controller's outgoing frames, into the UART transmit ring; counts frames.
class UartSink : public zima::ByteSink {
 public:
  UartSink() : frames_(0) {}
  bool write(const uint8_t* data, size_t len) override {
    if (!uart::write(data, len)) return false;
    ++frames_;
    return true;
  }
  uint16_t frames() const { return frames_; }

 private:
  uint16_t frames_;
};

#endif  // ZIMA_FIRMWARE_UART_H
