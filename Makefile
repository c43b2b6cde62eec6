# Tyto: plain make. `make` builds ./tyto, `make test` runs every test against a real Redis,
# `make run` starts Redis and tyto, `make asan` runs the tests under ASan+UBSan.
# `make run` and `make test` first install missing Debian packages (scripts/install-deps.sh).

PKGS     := libevent hiredis yaml-0.1 libsodium
BUILD    ?= build
CC       ?= cc
CPPFLAGS += -I. -D_GNU_SOURCE -MMD -MP
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS))
CMOCKA   := $(shell pkg-config --libs cmocka 2>/dev/null)

LIB_SRC  := $(wildcard lib/*.c storage/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
TEST_SRC := $(wildcard tests/unit/test_*.c tests/storage/test_*.c)
TESTS    := $(patsubst %.c,$(BUILD)/%,$(TEST_SRC))

all: tyto

tyto: $(BUILD)/tyto
	cp $< $@

$(BUILD)/tyto: $(BUILD)/cmd/tyto.o $(BUILD)/libtyto.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libtyto.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

# The Redis function library, embedded as a C string (committed; regenerated when the .lua changes).
storage/redis_functions.c: redis/tyto.lua scripts/lua2c.sh
	scripts/lua2c.sh redis/tyto.lua > $@.tmp && mv $@.tmp $@

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(TESTS): $(BUILD)/%: $(BUILD)/%.o $(BUILD)/libtyto.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CMOCKA)

build-tests: $(BUILD)/tyto $(TESTS)

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

# The two first-use commands. Each installs what is missing, then builds in a sub-make so that
# pkg-config runs after the install.
run: deps
	@$(MAKE) --no-print-directory tyto
	scripts/run.sh

test: deps-test
	@$(MAKE) --no-print-directory build-tests
	TYTO_BIN=$(BUILD)/tyto tests/run.sh $(TESTS)

asan: deps-test
	@$(MAKE) --no-print-directory BUILD=build/asan LDFLAGS="-fsanitize=address,undefined" \
	    CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    build-tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    TYTO_BIN=build/asan/tyto tests/run.sh $(patsubst $(BUILD)/%,build/asan/%,$(TESTS))

# The whole suite once more with tyto (every e2e test) and the cmocka programs under valgrind's
# memcheck: leaks and invalid accesses fail the run.
valgrind: deps-test
	@$(MAKE) --no-print-directory BUILD=build/valgrind CFLAGS="-O1 -g" build-tests
	TYTO_TEST_VALGRIND=1 TYTO_BIN=build/valgrind/tyto tests/run.sh $(patsubst $(BUILD)/%,build/valgrind/%,$(TESTS))

clean:
	rm -rf build tyto

-include $(LIB_OBJ:.o=.d) $(BUILD)/cmd/tyto.d $(TESTS:=.d)
.PHONY: all test asan valgrind run clean deps deps-test build-tests

# libFuzzer targets for every parser (clang, ASan + UBSan, build/fuzz): each runs FUZZ_SECONDS
# (default 60; CI uses 30), FUZZ_TARGETS picks some. See fuzz/README.md.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

.PHONY: fuzz
bench: tyto ; bench/run
.PHONY: bench
