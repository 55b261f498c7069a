#include "messages.h"

#include "wire.h"

namespace zima {

bool message_size_range(uint8_t id, uint8_t* min_len, uint8_t* max_len) {
  uint8_t size;
  switch (id) {
    case msg_id::kHello: size = Hello::kSize; break;
    case msg_id::kHeartbeat: size = Heartbeat::kSize; break;
    case msg_id::kDrive: size = Drive::kSize; break;
    case msg_id::kArm: size = Arm::kSize; break;
    case msg_id::kParamSet: size = ParamSet::kSize; break;
    case msg_id::kParamGet: size = ParamGet::kSize; break;
    case msg_id::kEstop: size = Estop::kSize; break;
    case msg_id::kClear: size = Clear::kSize; break;
    case msg_id::kInfo: size = Info::kSize; break;
    case msg_id::kTelemetry: size = Telemetry::kSize; break;
    case msg_id::kAck: size = Ack::kSize; break;
    case msg_id::kParamValue: size = ParamValue::kSize; break;
    case msg_id::kArmState: size = ArmState::kSize; break;
    case msg_id::kLog:
      *min_len = Log::kMinSize;
      *max_len = Log::kSize;
      return true;
    default:
      return false;
  }
  *min_len = size;
  *max_len = size;
  return true;
}

// ---- pack / unpack: visitors of each message's field list -----------------------

namespace {

/// Writes each field little-endian (the names are not read).
class FieldWriter {
 public:
  explicit FieldWriter(uint8_t* out) : w_(out) {}
  void operator()(const char*, uint8_t v, uint8_t = 0) { w_.u8(v); }
  void operator()(const char*, uint16_t v, uint8_t = 0) { w_.u16(v); }
  void operator()(const char*, uint32_t v, uint8_t = 0) { w_.u32(v); }
  void operator()(const char*, int16_t v, uint8_t = 0) { w_.i16(v); }
  void operator()(const char*, int32_t v, uint8_t = 0) { w_.i32(v); }
  void operator()(const char*, float v, uint8_t = 0) { w_.f32(v); }
  void text(const char*, const uint8_t* text, uint8_t len) {
    w_.bytes(text, len <= kLogTextMax ? len : kLogTextMax);
  }
  size_t size() const { return w_.size(); }

 private:
  WireWriter w_;
};

/// Reads each field little-endian from a payload of `len` bytes (the caller checked
/// `len`); a text takes what the fixed fields leave.
class FieldReader {
 public:
  FieldReader(const uint8_t* in, size_t len) : r_(in), len_(len) {}
  void operator()(const char*, uint8_t& v, uint8_t = 0) { v = r_.u8(); }
  void operator()(const char*, uint16_t& v, uint8_t = 0) { v = r_.u16(); }
  void operator()(const char*, uint32_t& v, uint8_t = 0) { v = r_.u32(); }
  void operator()(const char*, int16_t& v, uint8_t = 0) { v = r_.i16(); }
  void operator()(const char*, int32_t& v, uint8_t = 0) { v = r_.i32(); }
  void operator()(const char*, float& v, uint8_t = 0) { v = r_.f32(); }
  void text(const char*, uint8_t* text, uint8_t& len) {
    len = static_cast<uint8_t>(len_ - r_.size());
    r_.bytes(text, len);
  }

 private:
  WireReader r_;
  size_t len_;
};

template <class Msg> size_t write_fields(const Msg& m, uint8_t* out) {
  FieldWriter w(out);
  Msg::visit(m, w);
  return w.size();
}

/// The shortest payload: the message's size, but LOG's text may be shorter.
template <class Msg> size_t min_size(const Msg&) { return Msg::kSize; }
size_t min_size(const Log&) { return Log::kMinSize; }

template <class Msg> bool read_fields(const uint8_t* in, size_t len, Msg* m) {
  if (len < min_size(*m) || len > Msg::kSize) return false;
  FieldReader r(in, len);
  Msg::visit(*m, r);
  return true;
}

}  // namespace

size_t pack(const Hello& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Heartbeat& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Drive& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Arm& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const ParamSet& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const ParamGet& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Estop& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Clear& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Info& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Telemetry& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Ack& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const ParamValue& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const Log& m, uint8_t* out) { return write_fields(m, out); }
size_t pack(const ArmState& m, uint8_t* out) { return write_fields(m, out); }

bool unpack(const uint8_t* in, size_t len, Hello* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Heartbeat* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Drive* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Arm* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, ParamSet* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, ParamGet* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Estop* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Clear* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Info* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Telemetry* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Ack* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, ParamValue* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, Log* m) { return read_fields(in, len, m); }
bool unpack(const uint8_t* in, size_t len, ArmState* m) { return read_fields(in, len, m); }

}  // namespace zima
