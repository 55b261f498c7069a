# The emulated Zima board (zima-emu), C11 on Debian's libsimavr.
#
#   make -f firmware/emulator/emulator.mk          -> build/emulator/zima-emu
#   make -f firmware/emulator/emulator.mk clean-emulator
#
# or `include` it from the top-level Makefile (targets: emulator, clean-emulator).
# Debian packages: gcc make libsimavr-dev (pulls libsimavr2; headers in /usr/include/simavr)
# libcjson-dev (the JSON of the control lines: -lcjson).
# Links -lsimavr only: simavr's own uart_pty part (libsimavrparts) is not used (see
# uart_bridge.h), and libsimavr.so already brings libelf, so neither -lsimavrparts nor
# -lelf (which would need libelf-dev for the .so link) is on the line.

EMU_MK := $(abspath $(lastword $(MAKEFILE_LIST)))
ifndef EMU_ROOT
EMU_ROOT := $(patsubst %/firmware/emulator/,%,$(dir $(EMU_MK)))
endif
EMU_BUILD ?= $(EMU_ROOT)/build/emulator
EMU_SRC_DIR := $(EMU_ROOT)/firmware/emulator
EMU_CC ?= cc
EMU_SIMAVR_INC ?= /usr/include/simavr
EMU_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -isystem $(EMU_SIMAVR_INC)
EMU_LDLIBS := -lsimavr -lcjson -lutil -lm

EMU_SRC := $(wildcard $(EMU_SRC_DIR)/*.c)
EMU_OBJ := $(patsubst $(EMU_SRC_DIR)/%.c,$(EMU_BUILD)/%.o,$(EMU_SRC))
EMU_BIN := $(EMU_BUILD)/zima-emu

.PHONY: emulator clean-emulator
emulator: $(EMU_BIN)

$(EMU_BUILD)/%.o: $(EMU_SRC_DIR)/%.c $(EMU_MK)
	@mkdir -p $(@D)
	$(EMU_CC) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

$(EMU_BIN): $(EMU_OBJ)
	$(EMU_CC) -o $@ $^ $(EMU_LDLIBS)

clean-emulator:
	rm -rf $(EMU_BUILD)

-include $(EMU_OBJ:.o=.d)
