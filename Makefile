# sluice - build, test, demo, benchmark. `make help` lists the targets.
CC      ?= cc
CFLAGS  ?= -O2 -g
# Kept apart from CFLAGS so that `make CFLAGS=...` (as `make asan` does)
# changes optimisation and instrumentation, never the language or warnings.
STRICT  := -std=gnu11 -Wall -Wextra -Werror -pthread -D_GNU_SOURCE -MMD -MP
LDLIBS  += -lssl -lcrypto -lcares -lnghttp2 -lm -pthread
BUILD   ?= build

SRC      := $(wildcard src/*.c)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
# The fuzz harnesses are plain functions: the unit tests replay the corpus
# and the regressions through them, `make fuzz` wraps them in libFuzzer.
FUZZ_TARGETS := request response config h2head
FUZZ_SRC := fuzz/fuzz_common.c fuzz/offline_resolver.c $(FUZZ_TARGETS:%=fuzz/fuzz_%.c)
FUZZ_OBJ := $(FUZZ_SRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/sluice $(BUILD)/backend $(BUILD)/metrics_sample $(BUILD)/unit_tests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) $(CFLAGS) $(CPPFLAGS) -Isrc -Ifuzz -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sluice: $(BUILD)/src/main.o $(BUILD)/libsluice.a
	$(CC) $(STRICT) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/backend: $(BUILD)/tools/backend.o $(BUILD)/libsluice.a
	$(CC) $(STRICT) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Prints a scrape's text for a config and made-up counters (promtool checks it).
$(BUILD)/metrics_sample: $(BUILD)/tools/metrics_sample.o $(BUILD)/libsluice.a
	$(CC) $(STRICT) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit suites are linked whole (not through the archive) so every suite's
# weak entry point is resolved.
$(BUILD)/unit_tests: $(UNIT_OBJ) $(FUZZ_OBJ) $(BUILD)/libsluice.a
	$(CC) $(STRICT) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The replay suite finds fuzz/ from wherever the tests are run.
$(BUILD)/tests/unit/test_fuzz_regressions.o: CPPFLAGS += -DSLUICE_SOURCE_DIR='"$(CURDIR)"'

deps:
	@bash scripts/install-deps

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

integration: $(BUILD)/sluice $(BUILD)/backend $(BUILD)/metrics_sample
	SLUICE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/integration

test: deps all
	$(MAKE) unit
	$(MAKE) integration

# The same suites under AddressSanitizer and UBSan, in their own build tree.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" LDFLAGS="-fsanitize=address,undefined" all
	ASAN_OPTIONS=detect_leaks=1 build/asan/unit_tests
	SLUICE_BUILD=$(abspath build/asan) SLUICE_ASAN=1 /usr/bin/python3 -m pytest -q tests/integration

# libFuzzer targets (Debian's clang) under ASan and UBSan, in build/fuzz/,
# each run for FUZZ_SECONDS on a scratch copy of its corpus (docs/reliability.md).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN) -DSLUICE_FUZZ_MAIN

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(STRICT) $(FUZZ_CFLAGS) -Isrc -Ifuzz -c $< -o $@

$(FUZZ_DIR)/libsluice.a: $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
	@rm -f $@
	ar rcs $@ $^

FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
$(FUZZ_BINS): $(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/fuzz/fuzz_%.o $(FUZZ_DIR)/obj/fuzz/fuzz_common.o \
                                  $(FUZZ_DIR)/obj/fuzz/offline_resolver.o $(FUZZ_DIR)/libsluice.a
	$(FUZZ_CC) $(STRICT) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh $(FUZZ_DIR) $(FUZZ_TARGETS)

# Which lines of the parsers the last `make fuzz` corpus reaches (needs llvm-14).
fuzz-coverage:
	$(MAKE) FUZZ_DIR=$(BUILD)/fuzz-cov FUZZ_SAN="-fprofile-instr-generate -fcoverage-mapping" fuzz-build
	bash fuzz/coverage.sh $(BUILD)/fuzz-cov $(FUZZ_DIR) $(FUZZ_TARGETS)

demo: all
	bash tools/demo.sh

# A fixed-rate load generator for latency questions (bench/README.md).
$(BUILD)/openloop: bench/openloop.c
	$(CC) $(STRICT) $(CFLAGS) -o $@ $<

bench: all $(BUILD)/openloop
	bash bench/run.sh

clean:
	rm -rf build

help:
	@echo "make          build build/sluice, build/backend, build/metrics_sample, build/unit_tests"
	@echo "make test     install dependencies, run unit and integration tests"
	@echo "make asan     the same tests under AddressSanitizer + UBSan"
	@echo "make demo     sluice on :8080 in front of two demo applications"
	@echo "make bench    sluice vs HAProxy vs nginx"
	@echo "make fuzz     libFuzzer on the parsers, FUZZ_SECONDS (60) per target"

.PHONY: all deps unit integration test asan fuzz fuzz-build fuzz-coverage demo bench clean help
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
