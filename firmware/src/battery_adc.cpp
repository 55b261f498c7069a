// Battery ADC: ADC0 against AVCC (5 V), started by the main loop and read one control
// period later, so no loop iteration waits for the 104 us conversion (analogRead()
// would, and that wait would show up as control-tick jitter).
#include <avr/io.h>

#include "board_io.h"
#include "pins.h"

static_assert(ZIMA_BATTERY_ADC_CHANNEL < 8, "MUX5 stays 0: channels 0..7 only");

namespace battery_adc {

namespace {
bool g_started = false;
}

void begin() {
  ADMUX = static_cast<uint8_t>((1 << REFS0) | ZIMA_BATTERY_ADC_CHANNEL);  // AVCC, right adjusted
  ADCSRB &= static_cast<uint8_t>(~(1 << MUX5));
  // enabled, clk/128 = 125 kHz (the datasheet wants 50..200 kHz for 10 bits), no interrupt
  ADCSRA = (1 << ADEN) | (1 << ADPS2) | (1 << ADPS1) | (1 << ADPS0);
}

void start() {
  ADCSRA |= (1 << ADSC);
  g_started = true;
}

bool result(uint16_t* counts) {
  if (!g_started || (ADCSRA & (1 << ADSC))) return false;
  g_started = false;
  *counts = ADC;  // ADCL then ADCH, as the compiler reads a 16-bit I/O register
  return true;
}

}  // namespace battery_adc
