# cqrs-pipes: small Unix commands for CQRS with a transactional outbox.
PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
DESTDIR   ?=

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wmissing-prototypes \
           -Wstrict-prototypes -Wwrite-strings
WERROR  ?=
SAN     ?=
PKGS     = jansson libpq hiredis libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(WERROR) $(SAN) $(CFLAGS) \
             $(PKG_CFLAGS) -Icommon -MMD -MP
ALL_LDFLAGS = $(SAN) $(LDFLAGS)

BUILD   ?= build
BIN     ?= bin
CMDS     = order-place client-get outbox-tail event-fanout client-project \
           client-rebuild client-verify \
           outbox-clean outbox-status event-publish event-consume cqrs-httpd
COMMON   = $(patsubst common/%.c,$(BUILD)/common/%.o,$(wildcard common/*.c))
LIB      = $(BUILD)/libcqrs.a
PROGS    = $(CMDS:%=$(BIN)/%)
BATS    ?= bats
TESTS   ?= test

.PHONY: all install uninstall clean check check-build check-asan lint demo deps \
        bench fuzz fuzz-build valgrind

all: $(PROGS)

# Keep the objects: they are intermediate files of the pattern rules.
.SECONDARY:

$(BUILD)/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(COMMON)
	rm -f $@
	$(AR) rcs $@ $(COMMON)

$(BIN)/%: $(BUILD)/cmd/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) -lm $(LDLIBS)

# cqrs-httpd alone links libmicrohttpd, libcrypt (crypt(3)) and libcrypto (HMAC).
$(BIN)/cqrs-httpd: LDLIBS += $(shell pkg-config --libs libmicrohttpd libcrypto 2>/dev/null) \
	-lcrypt -lpthread

# Test programs for common/ modules (test/lib), built with the commands
# (sanitized too under check-asan), never installed.
TESTPROGS = prg-test kafka-mock
all: $(TESTPROGS:%=$(BIN)/test/%)

$(BUILD)/test/%.o: test/lib/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BIN)/test/%: $(BUILD)/test/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) -lm $(LDLIBS)

# librdkafka for the commands that speak Kafka, and the mock cluster.
KAFKA_LIBS := $(shell pkg-config --libs rdkafka 2>/dev/null || echo -lrdkafka)
$(BIN)/event-publish $(BIN)/event-consume $(BIN)/test/kafka-mock: \
	LDLIBS += $(KAFKA_LIBS)

deps:
	@scripts/install-deps

# -Werror here only: a user's newer compiler must not break a plain build.
check-build: deps
	$(MAKE) WERROR=-Werror all

check: check-build lint
	$(BATS) $(TESTS)

# The whole suite again with AddressSanitizer and UBSan (leaks included).
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
check-asan: deps
	$(MAKE) BUILD=build-asan BIN=bin-asan WERROR=-Werror SAN="$(ASAN_FLAGS)" \
		CFLAGS="-O1 -g" all
	CQRS_BIN=$(CURDIR)/bin-asan CQRS_SANITIZED=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(BATS) $(TESTS)

# libFuzzer targets (clang): the NDJSON reader with order validation, the
# pgoutput decoder, client-project's event parser.  FUZZ_TIME seconds each.
FUZZERS   = order pgoutput event ack scan status response message awsconf http
FUZZ_TIME ?= 30
FUZZ_CC   ?= clang
FUZZ_SAN   = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz-build: deps
	$(MAKE) CC=$(FUZZ_CC) BUILD=build-fuzz BIN=build-fuzz/bin \
		SAN="-fsanitize=fuzzer-no-link,address,undefined" CFLAGS="-O1 -g" \
		build-fuzz/libcqrs.a
	for f in $(FUZZERS); do \
		$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g $(FUZZ_SAN) $(PKG_CFLAGS) \
			-Icommon -o build-fuzz/fuzz-$$f fuzz/$$f.c build-fuzz/libcqrs.a \
			$(PKG_LIBS) -lm || exit 1; \
	done

# Each target starts from its seeds and the crashes kept as regressions.
fuzz: fuzz-build
	for f in $(FUZZERS); do \
		mkdir -p build-fuzz/corpus-$$f && \
		build-fuzz/fuzz-$$f -max_total_time=$(FUZZ_TIME) -max_len=65536 \
			-close_fd_mask=3 -artifact_prefix=build-fuzz/crash-$$f- \
			build-fuzz/corpus-$$f fuzz/corpus/$$f || exit 1; \
	done

# One full pipeline run under valgrind's memcheck.
valgrind: all
	scripts/memcheck

lint:
	mandoc -Tlint -Wwarning man/*.1

demo: deps all
	scripts/demo

bench: deps all
	scripts/bench

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1
	for c in $(CMDS); do \
		install -m 755 $(BIN)/$$c $(DESTDIR)$(PREFIX)/bin/$$c; \
		install -m 644 man/$$c.1 $(DESTDIR)$(MANPREFIX)/man1/$$c.1; \
	done

uninstall:
	for c in $(CMDS); do \
		rm -f $(DESTDIR)$(PREFIX)/bin/$$c $(DESTDIR)$(MANPREFIX)/man1/$$c.1; \
	done

clean:
	rm -rf $(BUILD) $(BIN) build-asan bin-asan build-fuzz

-include $(wildcard $(BUILD)/*/*.d)
