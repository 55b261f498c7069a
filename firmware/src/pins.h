/* Zima pin map: the one place that says which wire of the robot goes where on the
 * Arduino Mega 2560 (ATmega2560 @ 16 MHz).
 *
 * Plain C preprocessor constants and no Arduino header, so that both the firmware
 * (C++11, firmware/src/) and the emulated board (C11, firmware/emulator/) include this
 * same file: a pin moved here moves in the emulator too.
 *
 * Each signal has its Arduino pin number (the Mega's silkscreen), and the AVR port
 * letter and bit behind it (what ISRs and the emulator touch).
 *
 * Timers
 *   Timer0  millis()/micros() of the Arduino core: untouched.
 *   Timer1  the 200 Hz control tick (CTC, compare-A interrupt, main.cpp); its OC1A/OC1B/OC1C
 *           outputs stay disconnected (those pins are servo GPIOs).
 *   Timer2  free (tone()).
 *   Timer3  left motor PWM on OC3A. Channel A only: OC3B/OC3C are the encoder pins
 *           D3/D2, so COM3B/COM3C must stay 0.
 *   Timer4  right motor PWM on OC4A. Channel A only: OC4B/OC4C are servo pins D7/D8,
 *           which are driven as GPIO, so COM4B/COM4C must stay 0.
 *   Timer5  the six servo pulses, one after another from its compare-A ISR:
 *           6 x 2.5 ms at most = 15 ms inside the 20 ms frame, so one timer suffices.
 *
 * Motor PWM: fast PWM with ICRn as TOP (WGM mode 14), prescaler 1, non-inverting:
 *   f = 16 MHz / (TOP + 1) = 16e6 / 800 = 20 kHz (inaudible; within what common
 *   H-bridges switch). OCRnA = permille * (TOP + 1) / 1000 = permille * 4 / 5, so
 *   800 steps of 1.25 permille. Fast PWM holds the pin high for OCR + 1 counts: OCR = 0
 *   is a 62.5 ns spike, not "off", so at zero duty the firmware disconnects the compare
 *   output (COMnA1 = 0) and drives the pin low (the emulator models exactly that).
 *
 * Encoders: all four channels on external interrupts (INT2..INT5, any edge) for 4x
 *   decoding. Forward (DIR high, positive duty) is A leading B, and counts up.
 *
 * Alternate functions checked and left disabled: D18/D19 are TXD1/RXD1 (Serial1 is not
 * used), D2/D3 are OC3B/OC3C, D13 is OC0A/OC1C, D9/D10 are OC2B/OC2A, D11/D12 OC1A/OC1B.
 */
#ifndef ZIMA_FIRMWARE_PINS_H
#define ZIMA_FIRMWARE_PINS_H

/* ---- tracks ------------------------------------------------------------------------ */
#define ZIMA_MOTOR_LEFT_PWM_ARDUINO 5    /* D5,  PE3, OC3A (Timer3) */
#define ZIMA_MOTOR_LEFT_PWM_PORT 'E'
#define ZIMA_MOTOR_LEFT_PWM_BIT 3
#define ZIMA_MOTOR_LEFT_DIR_ARDUINO 22   /* D22, PA0, high = forward */
#define ZIMA_MOTOR_LEFT_DIR_PORT 'A'
#define ZIMA_MOTOR_LEFT_DIR_BIT 0
#define ZIMA_MOTOR_RIGHT_PWM_ARDUINO 6   /* D6,  PH3, OC4A (Timer4) */
#define ZIMA_MOTOR_RIGHT_PWM_PORT 'H'
#define ZIMA_MOTOR_RIGHT_PWM_BIT 3
#define ZIMA_MOTOR_RIGHT_DIR_ARDUINO 23  /* D23, PA1, high = forward */
#define ZIMA_MOTOR_RIGHT_DIR_PORT 'A'
#define ZIMA_MOTOR_RIGHT_DIR_BIT 1

#define ZIMA_MOTOR_LEFT_TIMER 3          /* TCCR3A/B, ICR3, OCR3A */
#define ZIMA_MOTOR_RIGHT_TIMER 4         /* TCCR4A/B, ICR4, OCR4A */
#define ZIMA_MOTOR_PWM_HZ 20000L
#define ZIMA_MOTOR_PWM_TOP 799           /* ICR3 = ICR4: 16e6 / (799 + 1) = 20 kHz */

/* ---- encoders (4x decoding, every channel on an external interrupt) ------------------ */
#define ZIMA_ENC_LEFT_A_ARDUINO 2        /* D2,  PE4, INT4 */
#define ZIMA_ENC_LEFT_A_PORT 'E'
#define ZIMA_ENC_LEFT_A_BIT 4
#define ZIMA_ENC_LEFT_B_ARDUINO 3        /* D3,  PE5, INT5 */
#define ZIMA_ENC_LEFT_B_PORT 'E'
#define ZIMA_ENC_LEFT_B_BIT 5
#define ZIMA_ENC_RIGHT_A_ARDUINO 18      /* D18, PD3, INT3 */
#define ZIMA_ENC_RIGHT_A_PORT 'D'
#define ZIMA_ENC_RIGHT_A_BIT 3
#define ZIMA_ENC_RIGHT_B_ARDUINO 19      /* D19, PD2, INT2 */
#define ZIMA_ENC_RIGHT_B_PORT 'D'
#define ZIMA_ENC_RIGHT_B_BIT 2

/* ---- battery ------------------------------------------------------------------------ */
#define ZIMA_BATTERY_ARDUINO 54          /* A0, PF0, ADC0: pack voltage through the divider */
#define ZIMA_BATTERY_ADC_CHANNEL 0
#define ZIMA_ADC_REF_MV 5000             /* AVCC reference (REFS0) */

/* ---- arm servos: Timer5 pulses, 50 Hz, 500..2500 us ------------------------------------ */
#define ZIMA_SERVO_COUNT 6
#define ZIMA_SERVO_FRAME_US 20000
#define ZIMA_SERVO_MIN_US 500
#define ZIMA_SERVO_MAX_US 2500
/* Joint order as in PROTOCOL.md's ARM message; {Arduino pin, port, bit} per joint. */
#define ZIMA_SERVO_PINS                                                              \
  {                                                                                  \
    {7, 'H', 4},      /* D7,  PH4  joint 0 base yaw */                               \
        {8, 'H', 5},  /* D8,  PH5  joint 1 shoulder */                               \
        {9, 'H', 6},  /* D9,  PH6  joint 2 elbow */                                  \
        {10, 'B', 4}, /* D10, PB4  joint 3 wrist pitch */                            \
        {11, 'B', 5}, /* D11, PB5  joint 4 wrist roll */                             \
        {12, 'B', 6}, /* D12, PB6  joint 5 gripper */                                \
  }

/* ---- status LED ---------------------------------------------------------------------- */
#define ZIMA_LED_ARDUINO 13              /* D13, PB7, the Mega's "L" LED */
#define ZIMA_LED_PORT 'B'
#define ZIMA_LED_BIT 7

#endif /* ZIMA_FIRMWARE_PINS_H */
