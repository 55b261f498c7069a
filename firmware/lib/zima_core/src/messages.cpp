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

// ---- pack -----------------------------------------------------------------

size_t pack(const Hello& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.protocol_version);
  w.u32(m.schema_hash);
  return w.size();
}

size_t pack(const Heartbeat& m, uint8_t* out) {
  WireWriter w(out);
  w.u32(m.host_time_ms);
  return w.size();
}

size_t pack(const Drive& m, uint8_t* out) {
  WireWriter w(out);
  w.i16(m.left_mm_s);
  w.i16(m.right_mm_s);
  return w.size();
}

size_t pack(const Arm& m, uint8_t* out) {
  WireWriter w(out);
  for (uint8_t j = 0; j < kJointCount; ++j) {  // interleaved: target<j>, speed<j>
    w.u16(m.target_ddeg[j]);
    w.u16(m.speed_ddeg_s[j]);
  }
  return w.size();
}

size_t pack(const ParamSet& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.param_id);
  w.f32(m.value);
  return w.size();
}

size_t pack(const ParamGet& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.param_id);
  return w.size();
}

size_t pack(const Estop&, uint8_t*) { return 0; }

size_t pack(const Clear& m, uint8_t* out) {
  WireWriter w(out);
  w.u16(m.faults);
  return w.size();
}

size_t pack(const Info& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.protocol_version);
  w.u32(m.schema_hash);
  w.u8(m.fw_major);
  w.u8(m.fw_minor);
  w.u8(m.fw_patch);
  w.u32(m.build_id);
  w.u8(m.board);
  w.u16(m.capabilities);
  w.u8(m.max_payload);
  w.u8(m.reset_cause);
  return w.size();
}

size_t pack(const Telemetry& m, uint8_t* out) {
  WireWriter w(out);
  w.u32(m.mcu_time_ms);
  w.i32(m.enc_left_ticks);
  w.i32(m.enc_right_ticks);
  w.i16(m.vel_left_mm_s);
  w.i16(m.vel_right_mm_s);
  w.i16(m.target_left_mm_s);
  w.i16(m.target_right_mm_s);
  w.i16(m.out_left_permille);
  w.i16(m.out_right_permille);
  w.u16(m.battery_mv);
  w.u8(m.state);
  w.u16(m.faults);
  w.u16(m.rx_frames);
  w.u16(m.rx_rejected);
  w.u16(m.rx_dropped);
  w.u16(m.tx_dropped);
  return w.size();
}

size_t pack(const Ack& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.ref_msg_id);
  w.u8(m.ref_seq);
  w.u8(m.result);
  return w.size();
}

size_t pack(const ParamValue& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.param_id);
  w.f32(m.value);
  return w.size();
}

size_t pack(const Log& m, uint8_t* out) {
  WireWriter w(out);
  w.u8(m.level);
  w.bytes(m.text, m.text_len <= kLogTextMax ? m.text_len : kLogTextMax);
  return w.size();
}

size_t pack(const ArmState& m, uint8_t* out) {
  WireWriter w(out);
  for (uint8_t j = 0; j < kJointCount; ++j) {
    w.u16(m.pos_ddeg[j]);
  }
  return w.size();
}

// ---- unpack ---------------------------------------------------------------

bool unpack(const uint8_t* in, size_t len, Hello* m) {
  if (len != Hello::kSize) return false;
  WireReader r(in);
  m->protocol_version = r.u8();
  m->schema_hash = r.u32();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Heartbeat* m) {
  if (len != Heartbeat::kSize) return false;
  WireReader r(in);
  m->host_time_ms = r.u32();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Drive* m) {
  if (len != Drive::kSize) return false;
  WireReader r(in);
  m->left_mm_s = r.i16();
  m->right_mm_s = r.i16();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Arm* m) {
  if (len != Arm::kSize) return false;
  WireReader r(in);
  for (uint8_t j = 0; j < kJointCount; ++j) {
    m->target_ddeg[j] = r.u16();
    m->speed_ddeg_s[j] = r.u16();
  }
  return true;
}

bool unpack(const uint8_t* in, size_t len, ParamSet* m) {
  if (len != ParamSet::kSize) return false;
  WireReader r(in);
  m->param_id = r.u8();
  m->value = r.f32();
  return true;
}

bool unpack(const uint8_t* in, size_t len, ParamGet* m) {
  if (len != ParamGet::kSize) return false;
  WireReader r(in);
  m->param_id = r.u8();
  return true;
}

bool unpack(const uint8_t*, size_t len, Estop*) { return len == Estop::kSize; }

bool unpack(const uint8_t* in, size_t len, Clear* m) {
  if (len != Clear::kSize) return false;
  WireReader r(in);
  m->faults = r.u16();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Info* m) {
  if (len != Info::kSize) return false;
  WireReader r(in);
  m->protocol_version = r.u8();
  m->schema_hash = r.u32();
  m->fw_major = r.u8();
  m->fw_minor = r.u8();
  m->fw_patch = r.u8();
  m->build_id = r.u32();
  m->board = r.u8();
  m->capabilities = r.u16();
  m->max_payload = r.u8();
  m->reset_cause = r.u8();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Telemetry* m) {
  if (len != Telemetry::kSize) return false;
  WireReader r(in);
  m->mcu_time_ms = r.u32();
  m->enc_left_ticks = r.i32();
  m->enc_right_ticks = r.i32();
  m->vel_left_mm_s = r.i16();
  m->vel_right_mm_s = r.i16();
  m->target_left_mm_s = r.i16();
  m->target_right_mm_s = r.i16();
  m->out_left_permille = r.i16();
  m->out_right_permille = r.i16();
  m->battery_mv = r.u16();
  m->state = r.u8();
  m->faults = r.u16();
  m->rx_frames = r.u16();
  m->rx_rejected = r.u16();
  m->rx_dropped = r.u16();
  m->tx_dropped = r.u16();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Ack* m) {
  if (len != Ack::kSize) return false;
  WireReader r(in);
  m->ref_msg_id = r.u8();
  m->ref_seq = r.u8();
  m->result = r.u8();
  return true;
}

bool unpack(const uint8_t* in, size_t len, ParamValue* m) {
  if (len != ParamValue::kSize) return false;
  WireReader r(in);
  m->param_id = r.u8();
  m->value = r.f32();
  return true;
}

bool unpack(const uint8_t* in, size_t len, Log* m) {
  if (len < Log::kMinSize || len > Log::kSize) return false;
  WireReader r(in);
  m->level = r.u8();
  m->text_len = static_cast<uint8_t>(len - 1);
  r.bytes(m->text, m->text_len);
  return true;
}

bool unpack(const uint8_t* in, size_t len, ArmState* m) {
  if (len != ArmState::kSize) return false;
  WireReader r(in);
  for (uint8_t j = 0; j < kJointCount; ++j) {
    m->pos_ddeg[j] = r.u16();
  }
  return true;
}

}  // namespace zima
