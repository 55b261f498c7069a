// Battery monitor (PROTOCOL.md section 5): ADC counts -> filtered pack millivolts,
// BATT_LOW with debounce and hysteresis, BATT_CRITICAL with debounce and a latch.
//
// Sag under load is not low: the filtered voltage must stay below batt_low_mv for
// batt_low_debounce_ms before BATT_LOW, and rise above batt_low_mv + batt_hyst_mv to
// clear it. Critical acts faster and latches; only clear_critical() releases it,
// and only once the voltage is above batt_crit_mv + batt_hyst_mv.
#ifndef ZIMA_CORE_BATTERY_H
#define ZIMA_CORE_BATTERY_H

#include <stdint.h>

#include "params.h"

namespace zima {

/// ADC full scale: 10 bits over the 5000 mV reference (ATmega2560 datasheet:
/// counts = Vin * 1024 / Vref).
const uint16_t kAdcCounts = 1024;
const uint16_t kAdcVrefMv = 5000;

/// Pack millivolts at the divider input for `adc_counts` at the ADC pin.
float adc_counts_to_pack_mv(uint16_t adc_counts, float batt_divider);

class BatteryMonitor {
 public:
  BatteryMonitor()
      : filtered_mv_(0.0f), last_us_(0), has_sample_(false), low_(false), critical_(false),
        below_low_(false), below_crit_(false), below_low_since_us_(0), below_crit_since_us_(0) {}

  /// Takes one ADC sample; the first one initialises the filter.
  void sample(uint32_t now_us, uint16_t adc_counts, const Params& params);

  /// Releases a latched BATT_CRITICAL if the voltage has recovered; returns
  /// whether BATT_CRITICAL is now clear.
  bool clear_critical(const Params& params);

  /// Filtered pack voltage, mV (0 before the first sample).
  uint16_t battery_mv() const;
  bool has_sample() const { return has_sample_; }
  bool low() const { return low_; }
  bool critical() const { return critical_; }

 private:
  float filtered_mv_;
  uint32_t last_us_;
  bool has_sample_;
  bool low_;
  bool critical_;
  bool below_low_;
  bool below_crit_;
  uint32_t below_low_since_us_;
  uint32_t below_crit_since_us_;
};

}  // namespace zima

#endif  // ZIMA_CORE_BATTERY_H
