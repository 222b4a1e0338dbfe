# ticketd: `make run` starts one node, `make test` runs the whole suite.
# Both install the Debian packages they need first (tools/install-deps.sh).

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all build deps run test test-unit asan test-asan bench fuzz compare clean help
FUZZ_SECONDS ?= 60

all: build

help:
	@echo "make            build build/ticketd, tools and tests (optimised)"
	@echo "make run        start one node with the defaults (ARGS='--id 2 ...' to change)"
	@echo "make test       build and run the whole suite through ctest"
	@echo "make asan       build and test with AddressSanitizer + UBSan"
	@echo "make bench      run the Google Benchmark micro-benchmarks"
	@echo "make fuzz       run every libFuzzer target for FUZZ_SECONDS (default 60)"
	@echo "make compare    side-by-side benchmark against redis-server (docs/BENCHMARKS.md)"
	@echo "make clean      remove build directories"

deps:
	@tools/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/ticketd $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L 'unit|sim'

$(ASAN_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTICKETD_SANITIZE=ON

asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && TICKETD_TEST_QUICK=1 ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	$(BUILD)/ticketd_bench

fuzz: deps
	tools/fuzz.sh --seconds $(FUZZ_SECONDS)

compare: build
	tools/compare --cluster

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
