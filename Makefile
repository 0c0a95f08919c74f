# sluice - build, test, demo, benchmark. `make help` lists the targets.
CC      ?= cc
CFLAGS  ?= -O2 -g
# Kept apart from CFLAGS so that `make CFLAGS=...` (as `make asan` does)
# changes optimisation and instrumentation, never the language or warnings.
STRICT  := -std=gnu11 -Wall -Wextra -Werror -pthread -D_GNU_SOURCE -MMD -MP
LDLIBS  += -lssl -lcrypto -lm -pthread
BUILD   ?= build

SRC      := $(wildcard src/*.c)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/sluice $(BUILD)/backend $(BUILD)/metrics_sample $(BUILD)/unit_tests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) $(CFLAGS) -Isrc -c $< -o $@

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
$(BUILD)/unit_tests: $(UNIT_OBJ) $(BUILD)/libsluice.a
	$(CC) $(STRICT) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

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

.PHONY: all deps unit integration test asan demo bench clean help
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
