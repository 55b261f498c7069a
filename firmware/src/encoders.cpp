// Encoders: 4x quadrature decoding from both channels' any-edge external interrupts.
#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

#include "board_io.h"
#include "pins.h"
#include "probe.h"

static_assert(ZIMA_ENC_LEFT_A_PORT == 'E' && ZIMA_ENC_LEFT_B_PORT == 'E',
              "the left encoder ISR reads PINE");
static_assert(ZIMA_ENC_RIGHT_A_PORT == 'D' && ZIMA_ENC_RIGHT_B_PORT == 'D',
              "the right encoder ISR reads PIND");

namespace {

// Index (previous AB << 2 | current AB), A as the high bit; A leading B counts up.
// A double step (both channels changed: an edge was missed) counts 0.
const int8_t kQuadStep[16] = {0, -1, +1, 0, +1, 0, 0, -1, -1, 0, 0, +1, 0, +1, -1, 0};

volatile int32_t g_left_ticks = 0;
volatile int32_t g_right_ticks = 0;
uint8_t g_left_ab = 0;   // ISR-only after begin()
uint8_t g_right_ab = 0;

// A track's AB pair from its port's pins, A as the high bit.
inline uint8_t ab_of(uint8_t pin, uint8_t a_bit, uint8_t b_bit) {
  return static_cast<uint8_t>((((pin >> a_bit) & 1u) << 1) | ((pin >> b_bit) & 1u));
}

inline uint8_t left_ab() { return ab_of(PINE, ZIMA_ENC_LEFT_A_BIT, ZIMA_ENC_LEFT_B_BIT); }
inline uint8_t right_ab() { return ab_of(PIND, ZIMA_ENC_RIGHT_A_BIT, ZIMA_ENC_RIGHT_B_BIT); }

// An edge on either channel of one track: the step from its previous AB pair to `ab`.
inline void count_edge(uint8_t ab, volatile int32_t& ticks, uint8_t& last_ab) {
  ticks = ticks + kQuadStep[(last_ab << 2) | ab];
  last_ab = ab;
}

inline void left_edge() {
  probe::isr_begin(probe::kEncoderIsr);
  count_edge(left_ab(), g_left_ticks, g_left_ab);
  probe::isr_end(probe::kEncoderIsr);
}

inline void right_edge() {
  probe::isr_begin(probe::kEncoderIsr);
  count_edge(right_ab(), g_right_ticks, g_right_ab);
  probe::isr_end(probe::kEncoderIsr);
}

int32_t read_atomic(const volatile int32_t& ticks) {
  int32_t value;
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { value = ticks; }  // 4 bytes: not atomic on AVR
  return value;
}

}  // namespace

ISR(INT4_vect) { left_edge(); }
ISR(INT5_vect) { left_edge(); }
ISR(INT3_vect) { right_edge(); }
ISR(INT2_vect) { right_edge(); }

namespace encoders {

void begin() {
  // Inputs with pull-ups (open-collector encoder outputs).
  DDRE &= static_cast<uint8_t>(~((1 << ZIMA_ENC_LEFT_A_BIT) | (1 << ZIMA_ENC_LEFT_B_BIT)));
  PORTE |= (1 << ZIMA_ENC_LEFT_A_BIT) | (1 << ZIMA_ENC_LEFT_B_BIT);
  DDRD &= static_cast<uint8_t>(~((1 << ZIMA_ENC_RIGHT_A_BIT) | (1 << ZIMA_ENC_RIGHT_B_BIT)));
  PORTD |= (1 << ZIMA_ENC_RIGHT_A_BIT) | (1 << ZIMA_ENC_RIGHT_B_BIT);
  g_left_ab = left_ab();
  g_right_ab = right_ab();
  // ISCn1:0 = 01: any logical change. INT2/INT3 in EICRA, INT4/INT5 in EICRB.
  EICRA = static_cast<uint8_t>((EICRA & 0x0F) | (1 << ISC20) | (1 << ISC30));
  EICRB = static_cast<uint8_t>((EICRB & 0xF0) | (1 << ISC40) | (1 << ISC50));
  EIFR = (1 << INTF2) | (1 << INTF3) | (1 << INTF4) | (1 << INTF5);
  EIMSK |= (1 << INT2) | (1 << INT3) | (1 << INT4) | (1 << INT5);
}

int32_t left_ticks() { return read_atomic(g_left_ticks); }
int32_t right_ticks() { return read_atomic(g_right_ticks); }

}  // namespace encoders
