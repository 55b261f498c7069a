// Umbrella header of the portable firmware core (see controller.h for the
// entry points firmware/src calls, protocol.h for the codec).
#ifndef ZIMA_CORE_ZIMA_CORE_H
#define ZIMA_CORE_ZIMA_CORE_H

#include "battery.h"
#include "byte_sink.h"
#include "cobs.h"
#include "controller.h"
#include "crc16.h"
#include "drive.h"
#include "messages.h"
#include "odometry.h"
#include "params.h"
#include "pid.h"
#include "protocol.h"
#include "servo.h"
#include "stall.h"
#include "timing.h"
#include "wire.h"

#endif  // ZIMA_CORE_ZIMA_CORE_H
