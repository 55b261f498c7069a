// The robot's hardware as firmware/src drives it: encoders, motor PWM, servo pulses,
// the battery ADC and the 200 Hz control timer. Pins are in pins.h; no logic here,
// the Controller (firmware/lib/zima_core) decides everything.
#ifndef ZIMA_FIRMWARE_BOARD_IO_H
#define ZIMA_FIRMWARE_BOARD_IO_H

#include <stdint.h>

#include "drive.h"

namespace encoders {
void begin();
/// The 4x quadrature counts, read atomically (the ISRs update them).
int32_t left_ticks();
int32_t right_ticks();
}  // namespace encoders

namespace motors {
void begin();
/// Permille (-1000..1000, sign = direction) to 20 kHz PWM duty and the DIR pin;
/// 0 disconnects the compare output and holds the PWM pin low.
void apply(const zima::MotorOutputs& out);
}  // namespace motors

namespace servos {
void begin();
/// Servo angle in 0.1 degree (0..1800) to the pulse width Timer5 puts out next frame.
void set_position_ddeg(uint8_t joint, uint16_t ddeg);
}  // namespace servos

namespace battery_adc {
void begin();
/// Starts one conversion of the battery channel (about 104 us at 125 kHz ADC clock).
void start();
/// True and the 10-bit result once the conversion started last has finished.
bool result(uint16_t* counts);
}  // namespace battery_adc

namespace control_timer {
const uint32_t kHz = 200;
/// Timer1 in CTC mode, one compare-A interrupt per control period (5 ms).
void begin();
/// Control periods elapsed and not yet taken (more than 1: the loop fell behind).
uint8_t take_pending();
bool pending();
}  // namespace control_timer

#endif  // ZIMA_FIRMWARE_BOARD_IO_H
