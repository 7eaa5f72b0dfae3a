# kdlab front door. `make run` and `make test` install what is missing, build, then run.
BUILD ?= build
JOBS ?= $(shell nproc)
KDLAB := $(BUILD)/kdlab

SAN_BUILD ?= build-san
FUZZ_SECONDS ?= 60

.PHONY: all build deps test run bench clean configure gpu-check san-build sanitize fuzz

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# ctest -j: a test that uses every core through OpenMP claims them all and runs alone; the
# single-threaded ThreadSanitizer kernel tests run side by side (PROCESSORS in CMakeLists.txt).
test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: deps
	@$(MAKE) --no-print-directory build
	$(KDLAB) repro fmnist-study

bench: deps
	@tools/install-deps.sh --with-torch
	@$(MAKE) --no-print-directory build
	$(KDLAB) bench
	@if [ -x $(BUILD)/kdlab_grid_bench ]; then $(BUILD)/kdlab_grid_bench; fi

# On a GPU machine: build in build-gpu/, *Cuda* tests, memcheck, GPU bench (tools/gpu-check.sh).
gpu-check:
	bash tools/gpu-check.sh $(or $(LOG),gpu-check-logs)

# The clang ASan + UBSan (+ LSan) build with the libFuzzer targets, CPU only (see ARCHITECTURE.md).
$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DKDLAB_SANITIZE=ON -DKDLAB_FUZZ=ON

san-build: $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS)

# Unit tests and a tiny train/distill/eval round under the sanitizers (tools/sanitize.sh).
sanitize:
	@tools/install-deps.sh --with-sanitize
	@$(MAKE) --no-print-directory san-build
	tools/sanitize.sh $(SAN_BUILD)

# Each fuzz target for FUZZ_SECONDS (tools/fuzz.sh); findings land in fuzz-findings/.
fuzz:
	@tools/install-deps.sh --with-sanitize
	@$(MAKE) --no-print-directory san-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz.sh $(SAN_BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
