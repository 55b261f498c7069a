// Motors: 20 kHz fast PWM (mode 14, TOP = ICRn = 799, prescaler 1) on OC3A / OC4A,
// direction on a plain output pin. See pins.h for why channel A only.
#include <avr/io.h>

#include "board_io.h"
#include "pins.h"

static_assert(ZIMA_MOTOR_LEFT_TIMER == 3 && ZIMA_MOTOR_RIGHT_TIMER == 4,
              "this file drives Timer3/OC3A and Timer4/OC4A");
static_assert(ZIMA_MOTOR_LEFT_PWM_PORT == 'E' && ZIMA_MOTOR_RIGHT_PWM_PORT == 'H',
              "OC3A is PE3, OC4A is PH3");
static_assert(ZIMA_MOTOR_LEFT_DIR_PORT == 'A' && ZIMA_MOTOR_RIGHT_DIR_PORT == 'A',
              "both DIR pins are on PORTA");

namespace {

// Fast PWM holds the pin high for OCR + 1 of TOP + 1 counts; rounded to the nearest
// count, so 1000 permille is OCR = TOP (always high). 0 never reaches here.
uint16_t permille_to_ocr(uint16_t permille) {
  const uint32_t counts =
      (static_cast<uint32_t>(permille) * (ZIMA_MOTOR_PWM_TOP + 1) + 500) / 1000;
  return counts == 0 ? 0 : static_cast<uint16_t>(counts - 1);
}

uint16_t magnitude(int16_t permille) {
  const int16_t clamped = permille > 1000 ? 1000 : (permille < -1000 ? -1000 : permille);
  return static_cast<uint16_t>(clamped >= 0 ? clamped : -clamped);
}

void set_dir(uint8_t bit, bool forward) {
  if (forward) {
    PORTA |= static_cast<uint8_t>(1 << bit);
  } else {
    PORTA &= static_cast<uint8_t>(~(1 << bit));
  }
}

}  // namespace

namespace motors {

void begin() {
  PORTE &= static_cast<uint8_t>(~(1 << ZIMA_MOTOR_LEFT_PWM_BIT));  // low while disconnected
  DDRE |= (1 << ZIMA_MOTOR_LEFT_PWM_BIT);
  PORTH &= static_cast<uint8_t>(~(1 << ZIMA_MOTOR_RIGHT_PWM_BIT));
  DDRH |= (1 << ZIMA_MOTOR_RIGHT_PWM_BIT);
  PORTA &= static_cast<uint8_t>(~((1 << ZIMA_MOTOR_LEFT_DIR_BIT) | (1 << ZIMA_MOTOR_RIGHT_DIR_BIT)));
  DDRA |= (1 << ZIMA_MOTOR_LEFT_DIR_BIT) | (1 << ZIMA_MOTOR_RIGHT_DIR_BIT);
  // COMnA = 0 (disconnected) until a non-zero output; COMnB/COMnC stay 0 (pins.h).
  TCCR3A = (1 << WGM31);
  TCCR3B = (1 << WGM33) | (1 << WGM32) | (1 << CS30);
  ICR3 = ZIMA_MOTOR_PWM_TOP;
  OCR3A = 0;
  TCCR4A = (1 << WGM41);
  TCCR4B = (1 << WGM43) | (1 << WGM42) | (1 << CS40);
  ICR4 = ZIMA_MOTOR_PWM_TOP;
  OCR4A = 0;
}

void apply(const zima::MotorOutputs& out) {
  const uint16_t left = magnitude(out.left_permille);
  const uint16_t right = magnitude(out.right_permille);
  set_dir(ZIMA_MOTOR_LEFT_DIR_BIT, out.left_permille >= 0);
  set_dir(ZIMA_MOTOR_RIGHT_DIR_BIT, out.right_permille >= 0);
  // OCRnA is double-buffered in fast PWM (updated at BOTTOM): no glitch mid-period.
  if (left == 0) {
    TCCR3A &= static_cast<uint8_t>(~(1 << COM3A1));  // pin back to PORTE: low
  } else {
    OCR3A = permille_to_ocr(left);
    TCCR3A |= (1 << COM3A1);
  }
  if (right == 0) {
    TCCR4A &= static_cast<uint8_t>(~(1 << COM4A1));
  } else {
    OCR4A = permille_to_ocr(right);
    TCCR4A |= (1 << COM4A1);
  }
}

}  // namespace motors
