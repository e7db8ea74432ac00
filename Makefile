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
           outbox-clean
COMMON   = $(patsubst common/%.c,$(BUILD)/common/%.o,$(wildcard common/*.c))
LIB      = $(BUILD)/libcqrs.a
PROGS    = $(CMDS:%=$(BIN)/%)
BATS    ?= bats
TESTS   ?= test

.PHONY: all install uninstall clean check check-build lint demo deps bench

all: $(PROGS)

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

deps:
	@scripts/install-deps

# -Werror here only: a user's newer compiler must not break a plain build.
check-build: deps
	$(MAKE) WERROR=-Werror all

check: check-build lint
	$(BATS) $(TESTS)

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
	rm -rf $(BUILD) $(BIN)

-include $(wildcard $(BUILD)/*/*.d)
