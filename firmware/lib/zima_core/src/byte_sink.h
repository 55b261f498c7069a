// Where the core's outgoing frames go. firmware/src implements it over the UART
// transmit ring buffer; tests implement it over a byte vector.
#ifndef ZIMA_CORE_BYTE_SINK_H
#define ZIMA_CORE_BYTE_SINK_H

#include <stddef.h>
#include <stdint.h>

namespace zima {

class ByteSink {
 public:
  /// Queues all `len` bytes, or none of them and returns false when they do not
  /// fit. Never blocks: the caller counts a refused frame in tx_dropped.
  virtual bool write(const uint8_t* data, size_t len) = 0;

 protected:
  ~ByteSink() {}
};

}  // namespace zima

#endif  // ZIMA_CORE_BYTE_SINK_H
