#include "battery.h"

#include "timing.h"

namespace zima {

float adc_counts_to_pack_mv(uint16_t adc_counts, float batt_divider) {
  const float pin_mv = static_cast<float>(adc_counts) * kAdcVrefMv / kAdcCounts;
  return pin_mv * batt_divider;
}

namespace {

// Debounce: true once `below` has held continuously for `debounce_ms`.
bool debounced(bool below, bool* was_below, uint32_t* since_us, uint32_t now_us,
               uint32_t debounce_ms) {
  if (!below) {
    *was_below = false;
    return false;
  }
  if (!*was_below) {
    *was_below = true;
    *since_us = now_us;
  }
  return elapsed_us(now_us, *since_us) >= ms_to_us(debounce_ms);
}

}  // namespace

void BatteryMonitor::sample(uint32_t now_us, uint16_t adc_counts, const Params& params) {
  const float pack_mv = adc_counts_to_pack_mv(adc_counts, params.batt_divider());
  const uint32_t tau_us = ms_to_us(params.batt_filter_ms());
  if (!has_sample_ || tau_us == 0) {
    filtered_mv_ = pack_mv;
  } else {
    // First-order low-pass, exact for any sample interval: alpha = dt / (tau + dt).
    const float dt_us = static_cast<float>(elapsed_us(now_us, last_us_));
    filtered_mv_ += dt_us / (static_cast<float>(tau_us) + dt_us) * (pack_mv - filtered_mv_);
  }
  has_sample_ = true;
  last_us_ = now_us;

  const float low_mv = static_cast<float>(params.batt_low_mv());
  const float crit_mv = static_cast<float>(params.batt_crit_mv());
  const float hyst_mv = static_cast<float>(params.batt_hyst_mv());

  if (debounced(filtered_mv_ < low_mv, &below_low_, &below_low_since_us_, now_us,
                params.batt_low_debounce_ms())) {
    low_ = true;
  } else if (low_ && filtered_mv_ > low_mv + hyst_mv) {
    low_ = false;
  }
  if (debounced(filtered_mv_ < crit_mv, &below_crit_, &below_crit_since_us_, now_us,
                params.batt_crit_debounce_ms())) {
    critical_ = true;  // latched: see clear_critical()
  }
}

bool BatteryMonitor::clear_critical(const Params& params) {
  const float release_mv =
      static_cast<float>(params.batt_crit_mv()) + static_cast<float>(params.batt_hyst_mv());
  if (critical_ && filtered_mv_ > release_mv) {
    critical_ = false;
    below_crit_ = false;
  }
  return !critical_;
}

uint16_t BatteryMonitor::battery_mv() const {
  if (filtered_mv_ <= 0.0f) return 0;
  if (filtered_mv_ >= 65535.0f) return 65535u;
  return static_cast<uint16_t>(filtered_mv_ + 0.5f);
}

}  // namespace zima
