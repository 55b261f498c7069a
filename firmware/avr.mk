# AVR build of the Zima firmware with Debian's avr-gcc and Arduino core (the CI path; users
# flash with PlatformIO, which builds the same sources with the same flags).
#
#   make -f firmware/avr.mk            build/avr/zima.elf + zima.hex, sizes checked
#   make -f firmware/avr.mk clean-avr
#
# or `include firmware/avr.mk` from the top-level Makefile (targets: avr-firmware,
# clean-avr; the variables below are all prefixed AVR_ so they do not collide).
#
# Flags come from firmware/build_flags.txt, the one list platformio.ini must agree with.
# The Arduino core (cores/arduino + variants/mega) is built with warnings allowed into
# core.a; firmware/lib/*/src/*.cpp into one archive per library with -Werror; then
# firmware/src/*.cpp with -Werror, linked against both archives (--gc-sections, so
# unused library code costs nothing).
# Debian packages: gcc-avr binutils-avr avr-libc arduino-core-avr (and make, gawk/mawk).

AVR_MK := $(abspath $(lastword $(MAKEFILE_LIST)))
ifndef AVR_ROOT
AVR_ROOT := $(patsubst %/firmware/,%,$(dir $(AVR_MK)))
endif
AVR_BUILD   ?= $(AVR_ROOT)/build/avr
AVR_ARDUINO ?= /usr/share/arduino/hardware/arduino/avr
AVR_FW      := $(AVR_ROOT)/firmware
AVR_FLAGS_FILE := $(AVR_FW)/build_flags.txt
# Libraries linked into the firmware; set empty to build the sketch alone.
AVR_LIBS    ?= $(notdir $(wildcard $(AVR_FW)/lib/*))

# Limits of the ATmega2560 budget we allow ourselves (the chip has 256 KiB / 8 KiB;
# staying in the low half keeps the far-pointer and stack headroom questions away).
AVR_FLASH_MAX ?= 65536
AVR_RAM_MAX   ?= 4096

AVR_CC      := avr-gcc
AVR_CXX     := avr-g++
AVR_AR      := avr-ar
AVR_OBJCOPY := avr-objcopy
AVR_SIZE    := avr-size

avr_flags = $(shell awk '$$1 == "$(1)" { print $$2 }' $(AVR_FLAGS_FILE))
AVR_BOARD_FLAGS := $(call avr_flags,board)
AVR_COMMON      := $(AVR_BOARD_FLAGS) $(call avr_flags,common)
AVR_CFLAGS      := $(AVR_COMMON) $(call avr_flags,c)
AVR_CXXFLAGS    := $(AVR_COMMON) $(call avr_flags,cxx)
AVR_WARN        := $(call avr_flags,warnings)
AVR_LDFLAGS     := $(filter -mmcu=%,$(AVR_BOARD_FLAGS)) $(filter -O%,$(AVR_COMMON)) \
                   $(call avr_flags,link)

AVR_CORE_DIR    := $(AVR_ARDUINO)/cores/arduino
AVR_VARIANT_DIR := $(AVR_ARDUINO)/variants/mega
AVR_CORE_INC    := -I$(AVR_CORE_DIR) -I$(AVR_VARIANT_DIR)
AVR_LIB_INC     := $(foreach l,$(AVR_LIBS),-I$(AVR_FW)/lib/$(l)/src)

AVR_CORE_SRC := $(wildcard $(AVR_CORE_DIR)/*.c $(AVR_CORE_DIR)/*.cpp $(AVR_CORE_DIR)/*.S)
AVR_CORE_OBJ := $(patsubst $(AVR_CORE_DIR)/%,$(AVR_BUILD)/core/%.o,$(AVR_CORE_SRC))
AVR_SRC      := $(wildcard $(AVR_FW)/src/*.cpp)
AVR_OBJ      := $(patsubst $(AVR_FW)/src/%,$(AVR_BUILD)/src/%.o,$(AVR_SRC))
AVR_LIB_ARCHIVES := $(foreach l,$(AVR_LIBS),$(AVR_BUILD)/lib/lib$(l).a)
AVR_ELF := $(AVR_BUILD)/zima.elf
AVR_HEX := $(AVR_BUILD)/zima.hex

.PHONY: avr-firmware clean-avr
avr-firmware: $(AVR_HEX) $(AVR_BUILD)/size.txt

# Everything rebuilds when the flag list or this file changes.
AVR_STAMP := $(AVR_FLAGS_FILE) $(AVR_MK)

# ---- Arduino core: warnings allowed, never -Werror -------------------------------------
$(AVR_BUILD)/core/%.c.o: $(AVR_CORE_DIR)/%.c $(AVR_STAMP)
	@mkdir -p $(@D)
	$(AVR_CC) $(AVR_CFLAGS) $(AVR_CORE_INC) -MMD -MP -c $< -o $@
$(AVR_BUILD)/core/%.cpp.o: $(AVR_CORE_DIR)/%.cpp $(AVR_STAMP)
	@mkdir -p $(@D)
	$(AVR_CXX) $(AVR_CXXFLAGS) $(AVR_CORE_INC) -MMD -MP -c $< -o $@
$(AVR_BUILD)/core/%.S.o: $(AVR_CORE_DIR)/%.S $(AVR_STAMP)
	@mkdir -p $(@D)
	$(AVR_CC) $(AVR_COMMON) -x assembler-with-cpp $(AVR_CORE_INC) -MMD -MP -c $< -o $@
$(AVR_BUILD)/core.a: $(AVR_CORE_OBJ)
	rm -f $@
	$(AVR_AR) rcs $@ $^

# ---- firmware/lib/<name>/src: portable core, -Werror, no Arduino include path ----------
define AVR_LIB_RULES
$(AVR_BUILD)/lib/$(1)/%.cpp.o: $(AVR_FW)/lib/$(1)/src/%.cpp $(AVR_STAMP)
	@mkdir -p $$(@D)
	$(AVR_CXX) $(AVR_CXXFLAGS) $(AVR_WARN) -I$(AVR_FW)/lib/$(1)/src -MMD -MP -c $$< -o $$@
$(AVR_BUILD)/lib/lib$(1).a: $(patsubst $(AVR_FW)/lib/$(1)/src/%,$(AVR_BUILD)/lib/$(1)/%.o,$(wildcard $(AVR_FW)/lib/$(1)/src/*.cpp))
	rm -f $$@
	$(AVR_AR) rcs $$@ $$^
endef
$(foreach l,$(AVR_LIBS),$(eval $(call AVR_LIB_RULES,$(l))))

# ---- build id: first 8 hex digits of git HEAD, 0 outside a git tree ---------------------
# INFO.build_id (firmware/src/version.h holds the version). The stamp file's name carries
# the id, so firmware/src rebuilds when HEAD moves and only then.
AVR_BUILD_ID := $(or $(shell git -C $(AVR_ROOT) rev-parse --verify -q HEAD 2>/dev/null | cut -c1-8),0)
AVR_ID_STAMP := $(AVR_BUILD)/build_id_$(AVR_BUILD_ID)
$(AVR_ID_STAMP):
	@mkdir -p $(@D)
	@rm -f $(AVR_BUILD)/build_id_*
	@touch $@

# ---- firmware/src: pins, timers, ISRs, ADC, UART around the core, -Werror --------------
$(AVR_BUILD)/src/%.cpp.o: $(AVR_FW)/src/%.cpp $(AVR_STAMP) $(AVR_ID_STAMP)
	@mkdir -p $(@D)
	$(AVR_CXX) $(AVR_CXXFLAGS) $(AVR_WARN) -DZIMA_BUILD_ID=0x$(AVR_BUILD_ID) $(AVR_CORE_INC) $(AVR_LIB_INC) -MMD -MP -c $< -o $@

# Archives after the objects; core.a last but once more after the libraries, which may
# need the C runtime helpers it brings (operator new is not used, but abi.cpp is).
$(AVR_ELF): $(AVR_OBJ) $(AVR_LIB_ARCHIVES) $(AVR_BUILD)/core.a
	$(AVR_CC) $(AVR_LDFLAGS) -o $@ $(AVR_OBJ) $(AVR_LIB_ARCHIVES) $(AVR_BUILD)/core.a -lm

$(AVR_HEX): $(AVR_ELF)
	$(AVR_OBJCOPY) -O ihex -R .eeprom $< $@

# flash = .text + .data (the initialisers live in flash); static RAM = .data + .bss + .noinit
$(AVR_BUILD)/size.txt: $(AVR_ELF)
	@$(AVR_SIZE) -A $< | awk -v fmax=$(AVR_FLASH_MAX) -v rmax=$(AVR_RAM_MAX) ' \
	    $$1 == ".text" { text = $$2 } $$1 == ".data" { data = $$2 } \
	    $$1 == ".bss" { bss = $$2 } $$1 == ".noinit" { noinit = $$2 } \
	    END { flash = text + data; ram = data + bss + noinit; \
	          printf "flash_bytes %d\nflash_max %d\nram_bytes %d\nram_max %d\n", flash, fmax, ram, rmax; \
	          printf "AVR firmware: flash %d of %d bytes (%.1f%%), static RAM %d of %d bytes (%.1f%%)\n", \
	                 flash, fmax, 100 * flash / fmax, ram, rmax, 100 * ram / rmax > "/dev/stderr"; \
	          if (flash > fmax) { print "error: flash use over the limit" > "/dev/stderr"; exit 1 } \
	          if (ram > rmax) { print "error: static RAM use over the limit" > "/dev/stderr"; exit 1 } }' \
	    > $@.tmp && mv $@.tmp $@ || { rm -f $@.tmp; exit 1; }
	@cat $@ >/dev/null

clean-avr:
	rm -rf $(AVR_BUILD)

# Files of the Debian Arduino core are never made here: an explicit empty recipe stops
# make from looking for an implicit rule for them. (The dependency files name the core's
# extension-less header `new`; `make -B` once chained built-in rules new.cpp -> new.o ->
# new onto it, failed, and deleted the system's file.) -isystem would avoid naming them
# but makes avr-gcc wrap the core's C++ headers in extern "C".
$(wildcard $(AVR_CORE_DIR)/* $(AVR_VARIANT_DIR)/*): ;

-include $(shell find $(AVR_BUILD) -name '*.d' 2>/dev/null)
