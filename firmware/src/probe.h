// Cycle probes: markers written to the general-purpose I/O registers GPIOR0/GPIOR1
// (one `out` instruction, 1 cycle; no pin, no side effect on the real board). The
// emulated board watches these two registers and records the cycle count of every
// write, which gives the control loop's rate and jitter and the cost of each region
// in exact CPU cycles (bench/firmware_bench.py, firmware/emulator/README.md).
//
// Protocol of a register: writing `id` (1..127) opens a region, writing `0x80 | id2`
// closes the open one and files its length under id2 (usually id2 == id; poll_tx
// closes as kTxSent when it queued a frame, as kTx when it had nothing to send).
// GPIOR0 is used by the main loop only, GPIOR1 by the encoder ISRs only, so the two
// never interleave within one register.
#ifndef ZIMA_FIRMWARE_PROBE_H
#define ZIMA_FIRMWARE_PROBE_H

#include <avr/io.h>
#include <stdint.h>

namespace probe {

// GPIOR0, main loop
const uint8_t kControl = 1;   // control tick: encoders -> Controller::control_tick -> PWM
const uint8_t kRx = 2;        // Controller::on_rx_bytes on the bytes drained from the UART
const uint8_t kTx = 3;        // Controller::poll_tx that sent nothing
const uint8_t kTxSent = 4;    // Controller::poll_tx that queued at least one frame
const uint8_t kBattery = 5;   // ADC read + Controller::battery_sample
const uint8_t kServo = 6;     // Controller::servo_tick + pulse widths handed to Timer5
// GPIOR1, ISRs
const uint8_t kEncoderIsr = 1;  // body of one encoder edge ISR

const uint8_t kEnd = 0x80;

inline void begin(uint8_t id) { GPIOR0 = id; }
inline void end(uint8_t id) { GPIOR0 = static_cast<uint8_t>(kEnd | id); }
inline void isr_begin(uint8_t id) { GPIOR1 = id; }
inline void isr_end(uint8_t id) { GPIOR1 = static_cast<uint8_t>(kEnd | id); }

}  // namespace probe

#endif  // ZIMA_FIRMWARE_PROBE_H
