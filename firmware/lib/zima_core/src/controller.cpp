// Controller, receive side: session, handshake and command dispatch.
#include "controller.h"

namespace zima {

const uint32_t Controller::kSessionTimeoutMs;
const uint32_t Controller::kArmStateHz;
const uint8_t Controller::kLogBurst;
const uint32_t Controller::kLogRefillUs;

Controller::Controller(ByteSink& sink, const BuildInfo& build)
    : sink_(sink), build_(build), tx_seq_(0), session_open_(false), last_rx_us_(0),
      estop_(false), reset_faults_(0), log_bucket_(kLogBurst, kLogRefillUs),
      next_telemetry_us_(0), next_arm_state_us_(0), tx_started_(false) {
  counters_.rx_frames = 0;
  counters_.rx_rejected = 0;
  counters_.rx_dropped = 0;
  counters_.tx_dropped = 0;
  if (build.reset_cause == ResetCause::kWatchdog) reset_faults_ |= fault::kResetWatchdog;
  if (build.reset_cause == ResetCause::kBrownout) reset_faults_ |= fault::kResetBrownout;
}

void Controller::on_rx_bytes(const uint8_t* data, size_t len, uint32_t now_us) {
  advance_clock(now_us);
  for (size_t i = 0; i < len; ++i) {
    const FrameDecoder::Event event = decoder_.push(data[i]);
    if (event == FrameDecoder::Event::kFrame) {
      const FrameView& frame = decoder_.frame();
      count_seq(frame.seq);
      if (is_mcu_to_host(frame.msg_id)) {
        // A message only the MCU sends (a confused host, or a line that echoes): a
        // reject. Not answered (an echoing line would loop the answers back) and it
        // changes nothing, not even the session's silence timer.
        ++counters_.rx_rejected;
        continue;
      }
      ++counters_.rx_frames;
      on_frame(frame, now_us);
    } else if (event == FrameDecoder::Event::kReject) {
      ++counters_.rx_rejected;
      const Reject reason = decoder_.reject();
      if (reason == Reject::kUnknownId || reason == Reject::kBadLength) {
        // The CRC was valid: check the sequence number and tell the host why.
        const FrameView& frame = decoder_.frame();
        count_seq(frame.seq);
        ack(frame, reason == Reject::kUnknownId ? Result::kUnknownMsg : Result::kBadLength);
      }
    }
  }
}

void Controller::count_seq(uint8_t seq) {
  counters_.rx_dropped = static_cast<uint16_t>(counters_.rx_dropped + rx_seq_.on_frame(seq));
}

void Controller::on_frame(const FrameView& frame, uint32_t now_us) {
  last_rx_us_ = now_us;  // any valid frame keeps the session open
  switch (frame.msg_id) {
    case msg_id::kHello: on_hello(frame, now_us); break;
    case msg_id::kHeartbeat: break;  // no answer; it only keeps the session
    case msg_id::kDrive: on_drive(frame, now_us); break;
    case msg_id::kArm: on_arm(frame); break;
    case msg_id::kParamSet: on_param_set(frame); break;
    case msg_id::kParamGet: on_param_get(frame); break;
    case msg_id::kEstop: on_estop(frame, now_us); break;
    case msg_id::kClear: on_clear(frame); break;
    default: ack(frame, Result::kUnknownMsg); break;  // not reached: the decoder knows the ids
  }
}

void Controller::on_hello(const FrameView& frame, uint32_t now_us) {
  Hello hello;
  unpack(frame.payload, frame.payload_len, &hello);
  Info info;
  info.protocol_version = kProtocolVersion;
  info.schema_hash = kSchemaHash;
  info.fw_major = build_.fw_major;
  info.fw_minor = build_.fw_minor;
  info.fw_patch = build_.fw_patch;
  info.build_id = build_.build_id;
  info.board = build_.board;
  info.capabilities = build_.capabilities;
  info.max_payload = kMaxPayload;
  info.reset_cause = static_cast<uint8_t>(build_.reset_cause);
  send(info);  // always, so that the host can name what it found

  if (hello.protocol_version != kProtocolVersion || hello.schema_hash != kSchemaHash) {
    if (session_open_) close_session(now_us, "session closed: HELLO mismatch");
    ack(frame, Result::kVersionMismatch);
    log(now_us, LogLevel::kError, "HELLO: protocol version or schema hash mismatch");
    return;
  }
  // A (re)started session begins at rest: motion needs a DRIVE or an ARM of this
  // session. A reconnecting host does not know the old targets, so they go: the tracks
  // stop and the arm holds where it is.
  drive_.stop();
  servos_.hold();
  session_open_ = true;
  ack(frame, Result::kOk);
}

bool Controller::motion_allowed() const { return motion_refusal() == Result::kOk; }

Result Controller::motion_refusal() const {
  if (!session_open_) return Result::kNoSession;
  if (estop_) return Result::kEstopped;
  if (battery_.critical()) return Result::kBatteryCritical;
  return Result::kOk;
}

void Controller::on_drive(const FrameView& frame, uint32_t now_us) {
  Drive drive;
  unpack(frame.payload, frame.payload_len, &drive);
  Result result = motion_refusal();
  const int32_t limit = static_cast<int32_t>(params_.max_speed_mm_s());
  if (result == Result::kOk &&
      (drive.left_mm_s > limit || drive.left_mm_s < -limit ||
       drive.right_mm_s > limit || drive.right_mm_s < -limit)) {
    result = Result::kOutOfRange;  // the previous targets stay
  }
  if (result != Result::kOk) {
    ack(frame, result);  // DRIVE is answered only when refused
    return;
  }
  drive_.set_targets(drive.left_mm_s, drive.right_mm_s, now_us);
}

void Controller::on_arm(const FrameView& frame) {
  Arm arm;
  unpack(frame.payload, frame.payload_len, &arm);
  Result result = motion_refusal();
  if (result == Result::kOk && !ServoBank::arm_in_range(arm)) {
    result = Result::kOutOfRange;
  }
  if (result == Result::kOk) {
    servos_.command(arm, static_cast<uint16_t>(params_.servo_max_speed_ddeg_s()));
  }
  ack(frame, result);
}

void Controller::on_param_set(const FrameView& frame) {
  ParamSet set;
  unpack(frame.payload, frame.payload_len, &set);
  const Result result = session_open_ ? params_.set(set.param_id, set.value) : Result::kNoSession;
  ack(frame, result);
  if (result == Result::kOk) {
    send_param_value(set.param_id);
  }
}

void Controller::on_param_get(const FrameView& frame) {
  ParamGet get;
  unpack(frame.payload, frame.payload_len, &get);
  if (param_spec(get.param_id) == nullptr) {
    ack(frame, Result::kUnknownParam);
    return;
  }
  send_param_value(get.param_id);
}

void Controller::on_estop(const FrameView& frame, uint32_t now_us) {
  if (!estop_) log(now_us, LogLevel::kWarning, "ESTOP");
  estop_ = true;  // accepted in every state, without a session too
  drive_.stop();
  servos_.hold();
  ack(frame, Result::kOk);
}

void Controller::on_clear(const FrameView& frame) {
  Clear clear;
  unpack(frame.payload, frame.payload_len, &clear);
  if (!session_open_) {
    ack(frame, Result::kNoSession);
    return;
  }
  if (clear.faults & fault::kEstop) estop_ = false;
  if (clear.faults & fault::kBattCritical) battery_.clear_critical(params_);
  reset_faults_ &= static_cast<uint16_t>(~clear.faults);
  // OK only when every requested bit is now clear; the others are cleared anyway.
  ack(frame, (faults() & clear.faults) ? Result::kConditionActive : Result::kOk);
}

}  // namespace zima
