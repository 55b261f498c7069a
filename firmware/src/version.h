/* The firmware's version: the one place it is written. INFO reports it (fw_major,
 * fw_minor, fw_patch) beside the build id, which the build passes as ZIMA_BUILD_ID
 * (firmware/avr.mk: the first 8 hex digits of git HEAD, 0 outside a git tree; builds
 * that do not pass it, such as a plain `pio run`, report 0). Raise the minor version
 * for new behaviour, the patch version for fixes; the wire protocol has its own
 * version (PROTOCOL.md). */
#ifndef ZIMA_FIRMWARE_VERSION_H
#define ZIMA_FIRMWARE_VERSION_H

#define ZIMA_FW_MAJOR 0
#define ZIMA_FW_MINOR 2
#define ZIMA_FW_PATCH 0

#ifndef ZIMA_BUILD_ID
#define ZIMA_BUILD_ID 0
#endif

#endif /* ZIMA_FIRMWARE_VERSION_H */
