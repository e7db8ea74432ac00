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
# Read when make reads this file: on a fresh machine the -dev packages are
# not there yet, so every target that installs them (deps) builds in a new
# make, which reads them again.
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
        bench fuzz fuzz-build fuzz-link valgrind

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

check: check-build
	$(MAKE) lint
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
	$(MAKE) fuzz-link

fuzz-link:
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
valgrind: deps
	$(MAKE) all
	scripts/memcheck

lint:
	mandoc -Tlint -Wwarning man/*.1

demo: deps
	$(MAKE) all
	scripts/demo

bench: deps
	$(MAKE) all
	scripts/bench

# What the manual pages point to goes to $(DATADIR), and the installed pages
# name it there.  The installed stack keeps its default directory in the
# current directory (.stack/) rather than next to itself, and the installed
# pipeline runs the installed commands.  $(DATADIR)/.installed lists what
# install made, directories included, for uninstall.
DATADIR  ?= $(PREFIX)/share/cqrs-pipes
DATA     = schema.sql seed.sql roles.sql
SCRIPTS  = stack pipeline supervise
MANSED   = s,scripts/\(stack\|pipeline\|supervise\|schema\.sql\|seed\.sql\|roles\.sql\),$(DATADIR)/\1,g
MANIFEST = $(DATADIR)/.installed

install: deps
	$(MAKE) all
	@set -e; made=; \
	if [ -f '$(DESTDIR)$(MANIFEST)' ]; then made=$$(sed -n 's,^dir ,,p' '$(DESTDIR)$(MANIFEST)'); fi; \
	for d in '$(PREFIX)/bin' '$(MANPREFIX)/man1' '$(DATADIR)'; do \
		n=$$d; while [ ! -d "$(DESTDIR)$$n" ]; do made="$$made $$n"; n=$$(dirname "$$n"); done; \
		echo "mkdir -p $(DESTDIR)$$d"; mkdir -p "$(DESTDIR)$$d"; \
	done; \
	for d in $$made; do echo "dir $$d"; done | sort -u >'$(DESTDIR)$(MANIFEST)'; \
	chmod 644 '$(DESTDIR)$(MANIFEST)'
	for c in $(CMDS); do \
		install -m 755 $(BIN)/$$c $(DESTDIR)$(PREFIX)/bin/$$c && \
		sed '$(MANSED)' man/$$c.1 >$(DESTDIR)$(MANPREFIX)/man1/$$c.1 && \
		chmod 644 $(DESTDIR)$(MANPREFIX)/man1/$$c.1 || exit 1; \
	done
	for f in $(DATA); do install -m 644 scripts/$$f $(DESTDIR)$(DATADIR)/$$f || exit 1; done
	sed -e 's,\$$here/\.\./\.stack,.stack,' -e 's,\.stack/ in the checkout,.stack/ in the current directory,' \
		scripts/stack >$(DESTDIR)$(DATADIR)/stack
	sed 's,\$$here/\.\./bin,$(PREFIX)/bin,' scripts/pipeline >$(DESTDIR)$(DATADIR)/pipeline
	cp scripts/supervise $(DESTDIR)$(DATADIR)/supervise
	cd $(DESTDIR)$(DATADIR) && chmod 755 $(SCRIPTS) && \
		! grep -n '\$$here/\.\.' $(SCRIPTS)	# a path into the checkout left: fail

uninstall:
	for c in $(CMDS); do \
		rm -f $(DESTDIR)$(PREFIX)/bin/$$c $(DESTDIR)$(MANPREFIX)/man1/$$c.1; \
	done
	for f in $(DATA) $(SCRIPTS); do rm -f $(DESTDIR)$(DATADIR)/$$f; done
	@set -e; m='$(DESTDIR)$(MANIFEST)'; dirs=; \
	if [ -f "$$m" ]; then dirs=$$(sed -n 's,^dir ,,p' "$$m" | sort -r); rm -f "$$m"; fi; \
	for d in $$dirs; do \
		rmdir "$(DESTDIR)$$d" 2>/dev/null && echo "rmdir $(DESTDIR)$$d" || \
		echo "uninstall: kept $(DESTDIR)$$d: not empty"; \
	done

clean:
	rm -rf $(BUILD) $(BIN) build-asan bin-asan build-fuzz

-include $(wildcard $(BUILD)/*/*.d)
