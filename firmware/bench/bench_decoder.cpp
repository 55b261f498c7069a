// Decoder benchmark: cost per received byte of FrameDecoder (COBS + CRC + checks)
// on a realistic link mix, in the host build.
//
//   bench_decoder [megabytes] [--results FILE]
//
// (default 64 MB of frames, best of 5 passes). With --results, the headline figures are
// also appended to FILE as JSON lines in bench/results.py's format (what `make bench`
// gathers into its one table).
//
// The mix is what the robot computer receives at 50 Hz telemetry: per 20 ms one
// TELEMETRY (43 wire bytes), plus an ARM_STATE every 5th period, an ACK every
// 4th and a 30-character LOG every 50th. Prints one table line per figure.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <vector>

#include "zima_core.h"

using namespace zima;

namespace {

template <typename Msg>
void append(std::vector<uint8_t>& out, const Msg& msg, uint8_t seq) {
  uint8_t wire[kMaxWireFrame];
  const size_t n = encode_message(msg, seq, wire, sizeof wire);
  out.insert(out.end(), wire, wire + n);
}

std::vector<uint8_t> build_stream(size_t target_bytes, size_t* frames) {
  std::vector<uint8_t> out;
  out.reserve(target_bytes + 64);
  uint8_t seq = 0;
  *frames = 0;
  for (uint32_t period = 0; out.size() < target_bytes; ++period) {
    Telemetry t;
    memset(&t, 0, sizeof t);
    t.mcu_time_ms = period * 20u;
    t.enc_left_ticks = static_cast<int32_t>(period * 7u);
    t.enc_right_ticks = -static_cast<int32_t>(period * 5u);
    t.vel_left_mm_s = static_cast<int16_t>(period % 700);
    t.vel_right_mm_s = static_cast<int16_t>(period % 650);
    t.out_left_permille = static_cast<int16_t>(period % 1000);
    t.battery_mv = static_cast<uint16_t>(11000 + period % 500);
    t.state = 2;
    t.rx_frames = static_cast<uint16_t>(period);
    append(out, t, seq++);
    ++*frames;
    if (period % 5 == 0) {
      ArmState a;
      for (uint8_t j = 0; j < kJointCount; ++j) a.pos_ddeg[j] = static_cast<uint16_t>(900 + j + period % 100);
      append(out, a, seq++);
      ++*frames;
    }
    if (period % 4 == 0) {
      Ack k = {msg_id::kArm, static_cast<uint8_t>(period), 0};
      append(out, k, seq++);
      ++*frames;
    }
    if (period % 50 == 0) {
      Log l;
      l.level = 1;
      l.text_len = 30;
      memcpy(l.text, "battery 11.42 V, 3 frames lost", 30);
      append(out, l, seq++);
      ++*frames;
    }
  }
  return out;
}

// One row of bench/results.py's file; part, metric and value carry no quote or backslash.
void record(FILE* out, const char* metric, const char* value) {
  fprintf(out, "{\"part\": \"protocol decoder (C++, host)\", \"metric\": \"%s\", "
          "\"value\": \"%s\", \"goal\": \"\", \"ok\": null}\n", metric, value);
}

}  // namespace

int main(int argc, char** argv) {
  double megabytes = 64.0;
  const char* results = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--results") == 0 && i + 1 < argc) {
      results = argv[++i];
    } else if (atof(argv[i]) > 0) {
      megabytes = atof(argv[i]);
    } else {
      fprintf(stderr, "usage: bench_decoder [megabytes] [--results FILE]; got '%s'\n", argv[i]);
      return 2;
    }
  }
  size_t frames = 0;
  const std::vector<uint8_t> stream = build_stream(static_cast<size_t>(megabytes * 1e6), &frames);

  double best_s = 1e30;
  size_t decoded = 0;
  for (int pass = 0; pass < 5; ++pass) {
    FrameDecoder decoder;
    size_t got = 0;
    uint32_t checksum = 0;  // keeps the compiler from dropping the work
    const auto t0 = std::chrono::steady_clock::now();
    for (uint8_t b : stream) {
      if (decoder.push(b) == FrameDecoder::Event::kFrame) {
        ++got;
        checksum += decoder.frame().payload_len + decoder.frame().seq;
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    if (s < best_s) best_s = s;
    decoded = got;
    if (checksum == 0xFFFFFFFFu) printf("#\n");
  }
  if (decoded != frames) {
    fprintf(stderr, "decoded %zu frames of %zu\n", decoded, frames);
    return 1;
  }
  const double ns_per_byte = best_s * 1e9 / static_cast<double>(stream.size());
  printf("bench_decoder: %zu bytes, %zu frames (mean %.1f B/frame), best of 5\n", stream.size(),
         frames, static_cast<double>(stream.size()) / static_cast<double>(frames));
  printf("%-14s %12s %14s %12s\n", "metric", "ns/byte", "frames/s", "MB/s");
  const double frames_s = static_cast<double>(frames) / best_s;
  const double mb_s = static_cast<double>(stream.size()) / best_s / 1e6;
  printf("%-14s %12.2f %14.0f %12.1f\n", "decoder", ns_per_byte, frames_s, mb_s);
  if (results != nullptr) {
    FILE* out = fopen(results, "a");
    if (out == nullptr) {
      fprintf(stderr, "bench_decoder: cannot append to %s\n", results);
      return 1;
    }
    char value[64];
    snprintf(value, sizeof value, "%.2f ns/byte", ns_per_byte);
    record(out, "decode cost per received byte (link mix)", value);
    snprintf(value, sizeof value, "%.0f MB/s, %.1f M frames/s", mb_s, frames_s / 1e6);
    record(out, "decode throughput", value);
    if (fclose(out) != 0) {
      fprintf(stderr, "bench_decoder: writing %s failed\n", results);
      return 1;
    }
  }
  return 0;
}
