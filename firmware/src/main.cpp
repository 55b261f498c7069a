// The Zima MCU firmware: pins, timers, ISRs, ADC and UART around zima::Controller,
// which holds all the logic (firmware/lib/zima_core; the wire contract is PROTOCOL.md).
//
// Time base: Timer0's micros() (Arduino core) is the clock every Controller call is
// handed. Timer1 raises a compare interrupt every 5 ms; the main loop runs one control
// tick per interrupt, so the rate is fixed by hardware and the jitter is only the loop's
// latency (measured on the emulated board: bench/firmware_bench.py). Every 4th tick
// moves the servos (50 Hz), every 10th starts a battery conversion that the next tick
// reads (20 Hz). TELEMETRY and ARM_STATE leave from poll_tx after each tick.
//
// When nothing is pending the CPU sleeps (SLEEP_MODE_IDLE: timers and UART run on):
// it saves power on the robot and lets simavr skip the idle cycles.
//
// Watchdog: cleared first thing at reset (.init3), enabled deliberately at 250 ms at
// the end of setup(), reset on every loop pass (the loop passes at least every 5 ms).
#include <Arduino.h>
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>

#include "board_io.h"
#include "controller.h"
#include "pins.h"
#include "probe.h"
#include "uart.h"
#include "version.h"

// ---- reset cause --------------------------------------------------------------------
// Runs in .init3, before .bss is cleared and before any constructor: an old bootloader
// or a watchdog reset leaves the WDT running (at 15 ms after a watchdog reset), which
// would reset-loop the board before setup() could turn it off.
uint8_t g_mcusr_at_boot __attribute__((section(".noinit")));
extern "C" void early_wdt_off() __attribute__((naked, used, section(".init3")));
extern "C" void early_wdt_off() {
  g_mcusr_at_boot = MCUSR;
  MCUSR = 0;
  wdt_disable();
}

static zima::ResetCause reset_cause(uint8_t mcusr) {
  // A power-on may set BORF as well (the supply rose through the brown-out level).
  if (mcusr & (1 << PORF)) return zima::ResetCause::kPowerOn;
  if (mcusr & (1 << WDRF)) return zima::ResetCause::kWatchdog;
  if (mcusr & (1 << BORF)) return zima::ResetCause::kBrownout;
  if (mcusr & (1 << EXTRF)) return zima::ResetCause::kExternal;
  return zima::ResetCause::kUnknown;
}

static zima::BuildInfo build_info() {
  zima::BuildInfo info;
  info.fw_major = ZIMA_FW_MAJOR;
  info.fw_minor = ZIMA_FW_MINOR;
  info.fw_patch = ZIMA_FW_PATCH;
  info.build_id = static_cast<uint32_t>(ZIMA_BUILD_ID);
  info.board = zima::kBoardMega2560;
  info.capabilities = zima::capability::kAll;
  info.reset_cause = reset_cause(g_mcusr_at_boot);  // set in .init3, before constructors
  return info;
}

static UartSink g_sink;
static zima::Controller g_controller(g_sink, build_info());

// ---- 200 Hz control timer: Timer1, CTC on OCR1A, clk/8 ------------------------------
static volatile uint8_t g_ticks_pending = 0;

ISR(TIMER1_COMPA_vect) {
  if (g_ticks_pending != 0xFF) g_ticks_pending = static_cast<uint8_t>(g_ticks_pending + 1);
}

namespace control_timer {

void begin() {
  TCCR1A = 0;  // OC1A/B/C disconnected (their pins are servo GPIOs)
  TCCR1B = (1 << WGM12) | (1 << CS11);  // CTC, TOP = OCR1A, 16 MHz / 8 = 2 MHz
  OCR1A = static_cast<uint16_t>(F_CPU / 8 / kHz - 1);  // 9999: 5 ms
  TCNT1 = 0;
  TIFR1 = (1 << OCF1A);
  TIMSK1 = (1 << OCIE1A);
}

uint8_t take_pending() {
  const uint8_t sreg = SREG;
  cli();
  const uint8_t n = g_ticks_pending;
  g_ticks_pending = 0;
  SREG = sreg;
  return n;
}

bool pending() { return g_ticks_pending != 0; }

}  // namespace control_timer

// ---- the loop's jobs ----------------------------------------------------------------
static uint8_t g_tick_index = 0;  // 0..19: servo every 4th tick, battery every 10th

static void control_tick() {
  probe::begin(probe::kControl);
  const uint32_t now_us = micros();
  const zima::MotorOutputs out =
      g_controller.control_tick(now_us, encoders::left_ticks(), encoders::right_ticks());
  motors::apply(out);
  probe::end(probe::kControl);

  if (g_tick_index % 10 == 1) {  // read the conversion started one tick ago
    uint16_t counts;
    if (battery_adc::result(&counts)) {
      probe::begin(probe::kBattery);
      g_controller.battery_sample(micros(), counts);
      probe::end(probe::kBattery);
    }
  } else if (g_tick_index % 10 == 0) {
    battery_adc::start();
  }
  if (g_tick_index % 4 == 0) {
    probe::begin(probe::kServo);
    g_controller.servo_tick(micros());
    for (uint8_t j = 0; j < ZIMA_SERVO_COUNT; ++j) {
      servos::set_position_ddeg(j, g_controller.servo_position_ddeg(j));
    }
    probe::end(probe::kServo);
  }
  g_tick_index = static_cast<uint8_t>(g_tick_index == 19 ? 0 : g_tick_index + 1);

  probe::begin(probe::kTx);
  const uint16_t frames_before = g_sink.frames();
  g_controller.poll_tx(micros());
  probe::end(g_sink.frames() != frames_before ? probe::kTxSent : probe::kTx);
}

static void receive() {
  uint8_t bytes[32];
  size_t n;
  while ((n = uart::read(bytes, sizeof bytes)) > 0) {
    probe::begin(probe::kRx);
    g_controller.on_rx_bytes(bytes, n, micros());
    probe::end(probe::kRx);
  }
}

// Sleeps until the next interrupt unless work is pending. The check and the sleep are
// atomic: `sei` lets one more instruction run before any interrupt, and that is `sleep`.
static void sleep_until_interrupt() {
  cli();
  if (!control_timer::pending() && !uart::rx_pending()) {
    sleep_enable();
    sei();
    sleep_cpu();
    sleep_disable();
  }
  sei();
}

void setup() {
  // init() of the Arduino core has run: Timer0 (micros), ADC prescaler, interrupts on.
  motors::begin();
  encoders::begin();
  servos::begin();
  battery_adc::begin();
  uart::begin();
  set_sleep_mode(SLEEP_MODE_IDLE);
  control_timer::begin();
  wdt_enable(WDTO_250MS);  // deliberately, once everything above is running
}

void loop() {
  wdt_reset();
  // Ticks first: a burst of received bytes must not delay the control period.
  // More than one period pending means the loop fell behind: one tick, with the longer
  // dt, rather than a burst of ticks a few microseconds apart.
  if (control_timer::take_pending() > 0) control_tick();
  receive();
  sleep_until_interrupt();
}
