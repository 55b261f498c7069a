// Servos: Timer5 in CTC mode (0.5 us per count) puts out the six pulses one after
// another from its compare-A ISR, then a gap that completes the 20 ms frame.
#include <Arduino.h>
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board_io.h"
#include "pins.h"

namespace {

struct ServoPin {
  uint8_t arduino;
  char port;
  uint8_t bit;
};
const ServoPin kServoPins[ZIMA_SERVO_COUNT] = ZIMA_SERVO_PINS;

volatile uint8_t* g_port[ZIMA_SERVO_COUNT];
uint8_t g_mask[ZIMA_SERVO_COUNT];
volatile uint16_t g_width_us[ZIMA_SERVO_COUNT];
uint8_t g_slot = ZIMA_SERVO_COUNT;  // ZIMA_SERVO_COUNT = the gap slot
uint16_t g_frame_busy_us = 0;       // pulse time spent in this frame

}  // namespace

ISR(TIMER5_COMPA_vect) {
  if (g_slot < ZIMA_SERVO_COUNT) *g_port[g_slot] &= static_cast<uint8_t>(~g_mask[g_slot]);
  g_slot = static_cast<uint8_t>(g_slot == ZIMA_SERVO_COUNT ? 0 : g_slot + 1);
  if (g_slot < ZIMA_SERVO_COUNT) {
    const uint16_t us = g_width_us[g_slot];
    if (g_slot == 0) g_frame_busy_us = 0;
    g_frame_busy_us = static_cast<uint16_t>(g_frame_busy_us + us);
    *g_port[g_slot] |= g_mask[g_slot];
    OCR5A = static_cast<uint16_t>(us * 2 - 1);
  } else {
    // the gap completes the 20 ms frame from the widths really output, so a width
    // changed mid-frame cannot stretch or shrink it
    OCR5A = static_cast<uint16_t>((ZIMA_SERVO_FRAME_US - g_frame_busy_us) * 2 - 1);
  }
}

namespace servos {

void begin() {
  for (uint8_t i = 0; i < ZIMA_SERVO_COUNT; ++i) {
    pinMode(kServoPins[i].arduino, OUTPUT);
    digitalWrite(kServoPins[i].arduino, LOW);
    g_port[i] = portOutputRegister(digitalPinToPort(kServoPins[i].arduino));
    g_mask[i] = digitalPinToBitMask(kServoPins[i].arduino);
    g_width_us[i] = (ZIMA_SERVO_MIN_US + ZIMA_SERVO_MAX_US) / 2;
  }
  TCCR5A = 0;
  TCCR5B = (1 << WGM52) | (1 << CS51);  // CTC on OCR5A, clk/8 = 0.5 us per count
  TCNT5 = 0;
  OCR5A = 2000;
  TIFR5 = (1 << OCF5A);
  TIMSK5 = (1 << OCIE5A);
}

void set_position_ddeg(uint8_t joint, uint16_t ddeg) {
  if (joint >= ZIMA_SERVO_COUNT) return;
  if (ddeg > 1800) ddeg = 1800;
  // 0..1800 ddeg -> 500..2500 us, linear
  const uint16_t us = static_cast<uint16_t>(
      ZIMA_SERVO_MIN_US +
      static_cast<uint32_t>(ddeg) * (ZIMA_SERVO_MAX_US - ZIMA_SERVO_MIN_US) / 1800);
  const uint8_t sreg = SREG;
  cli();
  g_width_us[joint] = us;  // 16 bits: the ISR must not see half of it
  SREG = sreg;
}

}  // namespace servos
