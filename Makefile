# Zima — every entry point of the project. `make demo` and `make test` are the two commands
# a newcomer needs: both install what they need first (Debian packages, then .venv).
#
#   make test      lint, type checks, C++ unit tests, fuzz-corpus replay, Python tests
#   make test-fast the pure-logic Python tests only (no firmware, broker, sim, browser): < 60 s
#   make demo      the main job: the whole robot in simulation (runtime, emulated MCU, MuJoCo)
#   make firmware  the ATmega2560 firmware with Debian's avr-gcc (build/avr/zima.hex)
#   make bench     every benchmark of the project, in one table per part
#   make fuzz      libFuzzer on the protocol decoder (FUZZ_RUNS executions, default 10 million)
#   make policy    the demo policy: collect, train, export, evaluate (models/zima-demo.onnx)
#   make pick-policy  the pick-up policy's four stages, then its evaluation (runs/pick/)

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BUILD := build
HOST_BUILD := $(BUILD)/firmware-host
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_RUNS  ?= 10000000
JOBS  ?= $(shell nproc)
# Python extras the tests need (onboard: pyserial for the emulated board's port; sim:
# MuJoCo; train: the CPU build of torch 2.13.0 and h5py; ecosystem: pyarrow, PyAV, rerun
# and Gymnasium for LeRobot datasets, the viewer and the Gymnasium environment).
EXTRAS := dev,onboard,sim,train,ecosystem

.PHONY: all firmware test test-fast lint typecheck test-cpp test-py demo bench bench-start bench-cpp bench-py bench-firmware fuzz \
        system-deps venv clean policy pick-policy

all: test

# The AVR firmware (Debian's avr-gcc and Arduino core: the CI path of platformio.ini) and the
# emulated board (simavr); targets avr-firmware, emulator, clean-avr, clean-emulator. The
# fragments look for the Arduino core's files when make reads them, so on a fresh machine
# they are reached through a second make started after the Debian packages are in.
include firmware/avr.mk
include firmware/emulator/emulator.mk
firmware: system-deps
	$(MAKE) --no-print-directory avr-firmware

system-deps: $(BUILD)/.system-deps
$(BUILD)/.system-deps: tools/install-system-deps
	bash tools/install-system-deps base
	@mkdir -p $(BUILD) && touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BUILD)/.system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

test: lint typecheck test-cpp test-py

# The tiers are markers that tests/conftest.py sets from what each test uses.
FAST_TIER := not (hardware or broker or browser or sim or train)
test-fast: venv
	$(VENV)/bin/pytest -q -m "$(FAST_TIER)"

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(PY) tools/typecheck_tree.py $(BUILD)/typecheck
	$(VENV)/bin/mypy -p zima
	$(VENV)/bin/mypy tests bench tools

$(HOST_BUILD)/CMakeCache.txt: firmware/CMakeLists.txt | $(BUILD)/.system-deps
	cmake -S firmware -B $(HOST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

test-cpp: $(HOST_BUILD)/CMakeCache.txt
	cmake --build $(HOST_BUILD) -j$(JOBS)
	ctest --test-dir $(HOST_BUILD) --output-on-failure -j$(JOBS)

# The web console's tests drive a real headless Chromium. They once failed about one run
# in six: tests whose timeouts (a 0.5 s lease, the MCU's 250 ms watchdog, a 0.3 s teleop
# timeout) were shorter than the stalls of a loaded 2-core machine; those tests now set
# timeouts with room for them, and every test runs once.
test-py: venv
	bash tools/install-system-deps test
	$(MAKE) --no-print-directory avr-firmware emulator
	$(VENV)/bin/pytest -q

# libFuzzer, one job per core; FUZZ_RUNS executions in all. New inputs land in
# build/fuzz/new (the committed corpus is only read), crashes in build/fuzz/artifacts.
FUZZ_JOBS ?= $(JOBS)
fuzz: | $(BUILD)/.system-deps
	bash tools/install-system-deps fuzz
	cmake -S firmware -B $(FUZZ_BUILD) -DZIMA_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-14
	cmake --build $(FUZZ_BUILD) --target fuzz_decoder -j$(JOBS)
	rm -rf $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/fuzz-*.log
	mkdir -p $(FUZZ_BUILD)/new $(FUZZ_BUILD)/artifacts
	cd $(FUZZ_BUILD) && ./fuzz_decoder new $(CURDIR)/firmware/fuzz/corpus \
	    -runs=$$(( $(FUZZ_RUNS) / $(FUZZ_JOBS) )) -jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS) \
	    -max_len=256 -artifact_prefix=artifacts/ -print_final_stats=1 >/dev/null 2>&1 || true
	@cd $(FUZZ_BUILD) && grep -h "^Done" fuzz-*.log | awk '{ runs += $$2; secs = ($$5 > secs ? $$5 : secs) } \
	    END { printf "fuzz: %d executions in %d s on $(FUZZ_JOBS) jobs (%.0f exec/s)\n", runs, secs, runs / (secs ? secs : 1) }'
	@if [ -n "$$(ls -A $(FUZZ_BUILD)/artifacts)" ]; then \
	    echo "fuzz: FINDINGS in $(FUZZ_BUILD)/artifacts:"; ls $(FUZZ_BUILD)/artifacts; \
	    tail -n 30 $(FUZZ_BUILD)/fuzz-*.log; exit 1; fi
	@echo "fuzz: no finding. New inputs: $(FUZZ_BUILD)/new; keep the useful ones with"
	@echo "  $(FUZZ_BUILD)/fuzz_decoder -merge=1 -max_len=256 firmware/fuzz/corpus $(FUZZ_BUILD)/new"

# Each bench prints its own tables and records its headline figures in
# $(BUILD)/bench/results.jsonl (bench/results.py), emptied first; the last step prints them
# as one table. Serial make runs the prerequisites in order, bench-start first.
bench: bench-start bench-cpp bench-py bench-firmware
	$(PY) bench/results.py

bench-start: venv
	$(PY) bench/results.py --reset

bench-cpp: $(HOST_BUILD)/CMakeCache.txt
	cmake --build $(HOST_BUILD) --target bench_decoder -j$(JOBS)
	mkdir -p $(BUILD)/bench
	$(HOST_BUILD)/bench_decoder --results $(BUILD)/bench/results.jsonl

bench-py: venv
	$(PY) bench/protocol_bench.py
	$(PY) bench/sim_bench.py
	$(PY) bench/runtime_bench.py
	$(PY) bench/runtime_bench.py --remedies
	$(PY) bench/training_bench.py
	$(PY) bench/inference_bench.py
	$(PY) bench/remote_bench.py --episodes 10

bench-firmware: venv
	$(MAKE) --no-print-directory avr-firmware emulator
	$(PY) bench/firmware_bench.py

# The golden path: the onboard runtime drives the MuJoCo robot through the real firmware on
# the emulated board, in real time, with the bundled demo policy (`zima sim run`, sim/hil.py);
# telemetry through a local Mosquitto when one starts. Prints each episode and the success
# rate; writes a video of the first episode and a plot of the MCU's telemetry to build/demo/.
DEMO_MODEL    ?= models/zima-demo.onnx
DEMO_EPISODES ?= 5
demo: venv
	$(MAKE) --no-print-directory avr-firmware emulator
	@test -f $(DEMO_MODEL) || { echo "demo: $(DEMO_MODEL) is missing; \`make policy\` trains it"; exit 1; }
	MUJOCO_GL=egl $(VENV)/bin/zima sim run --episodes $(DEMO_EPISODES) --model $(DEMO_MODEL) \
	    --out $(BUILD)/demo

clean: clean-avr clean-emulator
	rm -rf $(BUILD) $(VENV)

# The bundled policy: expert episodes of procedural worlds, room and arena (4:1:1), behaviour
# cloning (configs/demo_policy.toml), POLICY_DAGGER DAgger rounds in all three scenes (one: a
# second lost), export, evaluation on held-out seeds 100000.. in each; writes
# models/zima-demo.onnx and models/zima-demo.json.
# POLICY_ARGS=--resume continues an interrupted run; POLICY_DEVICE=cuda trains on a GPU.
POLICY_EPISODES ?= 1200
POLICY_DAGGER   ?= 1
POLICY_EVAL     ?= 100
POLICY_DEVICE   ?= cpu
policy: venv
	$(PY) tools/make_policy.py --episodes $(POLICY_EPISODES) --dagger-rounds $(POLICY_DAGGER) \
	    --eval-episodes $(POLICY_EVAL) --workers $(JOBS) --device $(POLICY_DEVICE) $(POLICY_ARGS)

# The pick-up policy (issue 17): the README's four stages (configs/pick_policy*.toml), each
# collected, trained and exported, then evaluated in the arena on validation and held-out
# seeds; about three hours on two cores. POLICY_ARGS=--resume continues an interrupted run.
pick-policy: venv
	$(PY) tools/make_pick_policy.py --workers $(JOBS) $(POLICY_ARGS)
