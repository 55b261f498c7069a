// Test-side text form of the message structs: message names, and fields as text in the
// notation of the golden vectors file (PROTOCOL.md section 8). Kept out of the library
// so that the AVR build carries no name strings.
//
// Each struct's zima::visit() field list (messages.h), the one pack() and unpack() use,
// also drives decoding to text, encoding from text and the schema text whose CRC-32
// must be kSchemaHash (PROTOCOL.md section 2).
#ifndef ZIMA_TEST_MESSAGE_FIELDS_H
#define ZIMA_TEST_MESSAGE_FIELDS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "zima_core.h"

namespace zima_fields {

using std::string;

struct MessageName {
  uint8_t id;
  const char* name;
};

const MessageName kMessageNames[] = {
    {0x01, "HELLO"}, {0x02, "HEARTBEAT"}, {0x03, "DRIVE"}, {0x04, "ARM"}, {0x05, "PARAM_SET"},
    {0x06, "PARAM_GET"}, {0x07, "ESTOP"}, {0x08, "CLEAR"}, {0x81, "INFO"}, {0x82, "TELEMETRY"},
    {0x83, "ACK"}, {0x84, "PARAM_VALUE"}, {0x85, "LOG"}, {0x86, "ARM_STATE"}};

const char* const kParamNames[] = {
    "pid_kp", "pid_ki", "pid_kd", "pid_kff", "out_slew_permille_s", "watchdog_ms",
    "batt_low_mv", "batt_crit_mv", "batt_hyst_mv", "batt_divider", "batt_low_debounce_ms",
    "batt_crit_debounce_ms", "batt_filter_ms", "telemetry_hz", "ticks_per_m",
    "max_speed_mm_s", "stall_ms", "servo_max_speed_ddeg_s"};

const char* const kFaultNames[] = {"WATCHDOG", "ESTOP", "BATT_LOW", "BATT_CRITICAL",
                                   "STALL_LEFT", "STALL_RIGHT", "RESET_WATCHDOG", "RESET_BROWNOUT"};

inline const char* message_name(uint8_t id) {
  for (const MessageName& m : kMessageNames) {
    if (m.id == id) return m.name;
  }
  return "?";
}

inline uint8_t message_id(const string& name) {
  for (const MessageName& m : kMessageNames) {
    if (name == m.name) return m.id;
  }
  return 0;
}

/// Calls f(msg) with a zeroed struct of message `id`; false for an unknown id.
template <class F> bool with_message(uint8_t id, F f) {
  switch (id) {
    case 0x01: { zima::Hello m = {}; f(m); return true; }
    case 0x02: { zima::Heartbeat m = {}; f(m); return true; }
    case 0x03: { zima::Drive m = {}; f(m); return true; }
    case 0x04: { zima::Arm m = {}; f(m); return true; }
    case 0x05: { zima::ParamSet m = {}; f(m); return true; }
    case 0x06: { zima::ParamGet m = {}; f(m); return true; }
    case 0x07: { zima::Estop m = {}; f(m); return true; }
    case 0x08: { zima::Clear m = {}; f(m); return true; }
    case 0x81: { zima::Info m = {}; f(m); return true; }
    case 0x82: { zima::Telemetry m = {}; f(m); return true; }
    case 0x83: { zima::Ack m = {}; f(m); return true; }
    case 0x84: { zima::ParamValue m = {}; f(m); return true; }
    case 0x85: { zima::Log m = {}; f(m); return true; }
    case 0x86: { zima::ArmState m = {}; f(m); return true; }
    default: return false;
  }
}

// ---- visitors -----------------------------------------------------------------------

struct Field {
  string name;
  string type;
  string value;
};

inline string float_text(float f) {
  // Shortest %g text that reads back as the same float.
  char buf[32];
  for (int precision = 1; precision <= 9; ++precision) {
    snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(f));
    if (strtof(buf, nullptr) == f) break;
  }
  return buf;
}

inline string hex_text(const uint8_t* data, size_t n) {
  string out;
  char buf[3];
  for (size_t i = 0; i < n; ++i) {
    snprintf(buf, sizeof buf, "%02x", data[i]);
    out += buf;
  }
  return out;
}

/// A field's name: a `#` in a joint field's name stands for its joint.
inline string field_name(const char* name, uint8_t joint) {
  string out = name;
  const size_t hash = out.find('#');
  if (hash != string::npos) out.replace(hash, 1, std::to_string(joint));
  return out;
}

/// Lists name, type and value text of every field.
struct Lister {
  std::vector<Field> fields;
  void add(const char* name, uint8_t joint, const char* type, const string& value) {
    fields.push_back({field_name(name, joint), type, value});
  }
  void operator()(const char* n, uint8_t& v, uint8_t j = 0) { add(n, j, "u8", std::to_string(v)); }
  void operator()(const char* n, uint16_t& v, uint8_t j = 0) { add(n, j, "u16", std::to_string(v)); }
  void operator()(const char* n, uint32_t& v, uint8_t j = 0) { add(n, j, "u32", std::to_string(v)); }
  void operator()(const char* n, int16_t& v, uint8_t j = 0) { add(n, j, "i16", std::to_string(v)); }
  void operator()(const char* n, int32_t& v, uint8_t j = 0) { add(n, j, "i32", std::to_string(v)); }
  void operator()(const char* n, float& v, uint8_t j = 0) { add(n, j, "f32", float_text(v)); }
  void text(const char* n, uint8_t* text, uint8_t& len) { add(n, 0, "text48", hex_text(text, len)); }
};

/// Sets fields from "name=value" tokens, which must list every field in order.
struct Setter {
  const std::vector<string>& tokens;
  size_t next = 0;
  string error;

  explicit Setter(const std::vector<string>& t) : tokens(t) {}

  bool take(const string& name, string* value) {
    if (!error.empty()) return false;
    if (next >= tokens.size()) { error = "missing field " + name; return false; }
    const string& tok = tokens[next++];
    if (tok.compare(0, name.size() + 1, name + "=") != 0) {
      error = "expected field " + name + ", got " + tok;
      return false;
    }
    *value = tok.substr(name.size() + 1);
    return true;
  }
  template <typename T> void integer(const string& name, T& out, long long lo, long long hi) {
    string v;
    if (!take(name, &v)) return;
    char* end = nullptr;
    errno = 0;
    const long long x = strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi) { error = "bad value " + name + "=" + v; return; }
    out = static_cast<T>(x);
  }
  void operator()(const char* n, uint8_t& v, uint8_t j = 0) { integer(field_name(n, j), v, 0, 255); }
  void operator()(const char* n, uint16_t& v, uint8_t j = 0) { integer(field_name(n, j), v, 0, 65535); }
  void operator()(const char* n, uint32_t& v, uint8_t j = 0) { integer(field_name(n, j), v, 0, 4294967295LL); }
  void operator()(const char* n, int16_t& v, uint8_t j = 0) { integer(field_name(n, j), v, -32768, 32767); }
  void operator()(const char* n, int32_t& v, uint8_t j = 0) {
    integer(field_name(n, j), v, -2147483648LL, 2147483647LL);
  }
  void operator()(const char* n, float& v, uint8_t j = 0) {
    string s;
    if (!take(field_name(n, j), &s)) return;
    char* end = nullptr;
    v = strtof(s.c_str(), &end);
    if (s.empty() || *end != '\0') error = "bad value " + field_name(n, j) + "=" + s;
  }
  void text(const char* n, uint8_t* text, uint8_t& len) {
    string s;
    if (!take(n, &s)) return;
    if (s.size() % 2 != 0 || s.size() / 2 > zima::kLogTextMax) { error = "bad text " + s; return; }
    len = static_cast<uint8_t>(s.size() / 2);
    for (size_t i = 0; i < len; ++i) {
      text[i] = static_cast<uint8_t>(strtoul(s.substr(2 * i, 2).c_str(), nullptr, 16));
    }
  }
};

/// Fields of a decoded payload, via the library's typed unpack().
inline std::vector<Field> fields_of(uint8_t id, const uint8_t* payload, size_t len) {
  std::vector<Field> out;
  with_message(id, [&](auto& m) {
    if (!zima::unpack(payload, len, &m)) return;
    Lister lister;
    visit(m, lister);
    out = lister.fields;
  });
  return out;
}

/// Payload bytes of message `id` from "name=value" tokens, via the library's pack().
inline bool fields_from_text(uint8_t id, const std::vector<string>& tokens, uint8_t* payload,
                             size_t* len, string* error) {
  bool ok = false;
  with_message(id, [&](auto& m) {
    Setter setter(tokens);
    visit(m, setter);
    if (setter.error.empty() && setter.next != tokens.size()) setter.error = "extra fields";
    *error = setter.error;
    ok = setter.error.empty();
    if (ok) *len = zima::pack(m, payload);
  });
  return ok;
}

/// A decoded field equals a "name=value" token of the file: same name, and the
/// same text, or for f32 text that reads back as the same 32-bit float.
inline bool field_matches(const Field& got, const string& token) {
  if (token.compare(0, got.name.size() + 1, got.name + "=") != 0) return false;
  const string want = token.substr(got.name.size() + 1);
  if (got.type != "f32") return got.value == want;
  char* end_a = nullptr;
  char* end_b = nullptr;
  const float a = strtof(got.value.c_str(), &end_a);
  const float b = strtof(want.c_str(), &end_b);
  return !want.empty() && *end_a == '\0' && *end_b == '\0' && memcmp(&a, &b, sizeof a) == 0;
}

/// Canonical schema text (PROTOCOL.md section 2).
inline string schema_text() {
  string text;
  for (const MessageName& msg : kMessageNames) {
    text += "msg " + std::to_string(msg.id) + " " + msg.name;
    with_message(msg.id, [&](auto& m) {
      Lister lister;
      visit(m, lister);
      for (const Field& f : lister.fields) text += " " + f.name + ":" + f.type;
    });
    text += "\n";
  }
  for (size_t i = 0; i < sizeof kParamNames / sizeof kParamNames[0]; ++i) {
    text += "param " + std::to_string(i) + " " + kParamNames[i] + "\n";
  }
  for (size_t i = 0; i < sizeof kFaultNames / sizeof kFaultNames[0]; ++i) {
    text += "fault " + std::to_string(i) + " " + kFaultNames[i] + "\n";
  }
  return text;
}

/// CRC-32 (zlib/IEEE: reflected 0x04C11DB7, init and final XOR 0xFFFFFFFF).
inline uint32_t crc32_ieee(const uint8_t* data, size_t n) {
  uint32_t crc = 0xFFFFFFFFUL;
  for (size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320UL & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFUL;
}

}  // namespace zima_fields

#endif  // ZIMA_TEST_MESSAGE_FIELDS_H
