# kdlab front door. `make run` and `make test` install what is missing, build, then run.
BUILD ?= build
JOBS ?= $(shell nproc)
KDLAB := $(BUILD)/kdlab

.PHONY: all build deps test run bench clean configure gpu-check

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Tests run one at a time: each already uses every core through OpenMP.
test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure

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

clean:
	rm -rf $(BUILD)
