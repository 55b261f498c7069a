#include "params.h"

#include <math.h>

namespace zima {

namespace {

// Order is the param id. Ranges are PROTOCOL.md section 4, verbatim.
const ParamSpec kSpecs[param::kCount] = {
    {0.6f, 0.0f, 100.0f, false},          // pid_kp, permille per mm/s
    {4.0f, 0.0f, 1000.0f, false},         // pid_ki, permille per mm
    {0.0f, 0.0f, 10.0f, false},           // pid_kd, permille per mm/s^2
    {1.0f, 0.0f, 100.0f, false},          // pid_kff, permille per mm/s
    {5000.0f, 100.0f, 100000.0f, false},  // out_slew_permille_s
    {250.0f, 20.0f, 5000.0f, true},       // watchdog_ms
    {10500.0f, 0.0f, 60000.0f, true},     // batt_low_mv
    {9900.0f, 0.0f, 60000.0f, true},      // batt_crit_mv
    {200.0f, 0.0f, 5000.0f, true},        // batt_hyst_mv
    {4.0f, 1.0f, 30.0f, false},           // batt_divider, pack V / ADC pin V
    {10000.0f, 0.0f, 60000.0f, true},     // batt_low_debounce_ms
    {1000.0f, 0.0f, 60000.0f, true},      // batt_crit_debounce_ms
    {500.0f, 0.0f, 10000.0f, true},       // batt_filter_ms
    {50.0f, 1.0f, 200.0f, true},          // telemetry_hz
    {4000.0f, 100.0f, 100000.0f, false},  // ticks_per_m
    {1000.0f, 10.0f, 5000.0f, true},      // max_speed_mm_s
    {500.0f, 50.0f, 10000.0f, true},      // stall_ms
    {1800.0f, 1.0f, 3600.0f, true},       // servo_max_speed_ddeg_s
};

}  // namespace

const ParamSpec* param_spec(uint8_t id) {
  return id < param::kCount ? &kSpecs[id] : nullptr;
}

Params::Params() {
  for (uint8_t id = 0; id < param::kCount; ++id) {
    values_[id] = kSpecs[id].default_value;
  }
}

Result Params::set(uint8_t id, float value) {
  const ParamSpec* spec = param_spec(id);
  if (spec == nullptr) {
    return Result::kUnknownParam;
  }
  // Written so that NaN fails the test.
  if (!(value >= spec->min_value && value <= spec->max_value)) {
    return Result::kOutOfRange;
  }
  if (spec->is_integer) {
    value = floorf(value + 0.5f);  // ranges are non-negative: round half up
  }
  // batt_low_mv must stay above batt_crit_mv.
  if ((id == param::kBattLowMv && !(value > values_[param::kBattCritMv])) ||
      (id == param::kBattCritMv && !(value < values_[param::kBattLowMv]))) {
    return Result::kOutOfRange;
  }
  values_[id] = value;
  return Result::kOk;
}

bool Params::get(uint8_t id, float* value) const {
  if (id >= param::kCount) {
    return false;
  }
  *value = values_[id];
  return true;
}

}  // namespace zima
