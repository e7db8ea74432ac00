#!/usr/bin/env bats
# install: make install into a DESTDIR puts the commands, their pages and what the pages name in place; uninstall removes it all.

load test_helper
bats_require_minimum_version 1.5.0

PREFIX=/usr/local
DATADIR=$PREFIX/share/cqrs-pipes

# The binaries this run tests (bin-asan under check-asan): make is given
# them and their objects, so that install links nothing of its own.
bin=${CQRS_BIN:-$CQRS_REPO/bin}
build=$(dirname "$bin")/$(basename "$bin" | sed 's/^bin/build/')

commands() {
	local c
	for c in "$CQRS_REPO"/cmd/*.c; do basename "$c" .c; done
}

# mk TARGET [VAR=VALUE...]: make in the checkout, into $D.
mk() {
	make -C "$CQRS_REPO" --no-print-directory BIN="$bin" BUILD="$build" DESTDIR="$D" "$@"
}

# mode FILE: its permission bits, in octal.
mode() {
	stat -c %a "$1"
}

setup() {
	D=$(mktemp -d /tmp/cqrs-install.XXXXXX)
	chmod 755 "$D"	# as root, the postgres user must traverse it
}

teardown() {
	[ -n "${W:-}" ] && CQRS_STACK_DIR=$W/.stack "$D$DATADIR/stack" destroy >/dev/null 2>&1
	rm -rf "$D" "${W:-}"
}

@test "install: the commands (755), their pages (644), the SQL (644) and the scripts (755)" {
	run -0 mk install
	for c in $(commands); do
		[ "$(mode "$D$PREFIX/bin/$c")" = 755 ] || { echo "bin/$c: $(mode "$D$PREFIX/bin/$c")"; false; }
		[ "$(mode "$D$PREFIX/share/man/man1/$c.1")" = 644 ] || { echo "$c.1: $(mode "$D$PREFIX/share/man/man1/$c.1")"; false; }
	done
	for f in schema.sql seed.sql roles.sql; do
		cmp "$CQRS_REPO/scripts/$f" "$D$DATADIR/$f"
		[ "$(mode "$D$DATADIR/$f")" = 644 ]
	done
	for f in stack pipeline supervise; do
		[ "$(mode "$D$DATADIR/$f")" = 755 ]
		bash -n "$D$DATADIR/$f"
	done
	# Nothing else: bin/test/ and the build are not installed.
	run -0 find "$D" -type f
	[ "${#lines[@]}" -eq $(($(commands | wc -l) * 2 + 7)) ]	# + 6 in DATADIR, + its list
}

@test "install: the installed pages name the installed paths, and mandoc accepts them" {
	require_tool mandoc
	run -0 mk install
	run -1 grep -n 'scripts/' "$D$PREFIX"/share/man/man1/*.1
	# Every path under DATADIR that a page names is there.
	named=$(grep -ho "$DATADIR/[a-z.]*" "$D$PREFIX"/share/man/man1/*.1 | sort -u)
	[ -n "$named" ]
	for p in $named; do
		[ -e "$D$p" ] || { echo "a page names $p, which is not installed"; false; }
	done
	grep -q "^\.Pa $DATADIR/schema.sql" "$D$PREFIX/share/man/man1/order-place.1"
	run -0 mandoc -Tlint -Wwarning "$D$PREFIX"/share/man/man1/*.1
	[ -z "$output" ]
}

@test "install: an installed command runs, and the installed stack and pipeline work from anywhere" {
	run -0 mk install
	run -0 --separate-stderr "$D$PREFIX/bin/order-place" -h
	[[ ${lines[0]} == "usage: order-place "* ]]
	[ -z "$stderr" ]
	# The installed stack finds schema.sql and seed.sql next to itself and
	# keeps its directory in the current one; the pipeline runs the
	# installed commands (CQRS_BIN: they are under DESTDIR here).
	W=$(mktemp -d /tmp/cqrs-installed.XXXXXX)
	chmod 755 "$W"
	cd "$W"
	unset CQRS_STACK_DIR PGHOST PGPORT PGDATABASE PGUSER REDIS_URL
	run -0 "$D$DATADIR/stack" up
	[ -f "$W/.stack/.cqrs-stack" ]
	eval "$("$D$DATADIR/stack" env)"
	[ "$CQRS_STACK_DIR" = "$W/.stack" ]
	[ "$(psql -qXAt -c 'SELECT name FROM client WHERE id = 1')" = Bob ]
	export CQRS_BIN=$D$PREFIX/bin
	run -0 "$D$DATADIR/pipeline" start
	echo '{"id_client":1,"products":[{"id_product":1,"quantity":1}]}' | "$CQRS_BIN/order-place" >/dev/null
	for _ in $(seq 200); do
		got=$("$CQRS_BIN/client-get" 1) && [ -n "$got" ] && break
		sleep 0.05
	done
	[[ $got == *'"id_client":1'* ]]
	run -0 "$D$DATADIR/pipeline" stop
	run -0 "$D$DATADIR/stack" destroy
	[ ! -e "$W/.stack" ]
}

@test "uninstall: removes everything install made, the directories it created included" {
	run -0 mk install
	run -0 mk install	# twice: the second knows what the first created
	run -0 mk uninstall
	run -0 find "$D" -mindepth 1
	[ -z "$output" ] || { echo "left behind:"; echo "$output"; false; }
}

@test "uninstall: keeps directories that were there before, and what others put in them" {
	mkdir -p "$D$PREFIX/bin"
	echo other >"$D$PREFIX/bin/other"
	run -0 mk install
	touch "$D$PREFIX/share/man/man1/other.1"
	run -0 mk uninstall
	[ "$(cat "$D$PREFIX/bin/other")" = other ]
	[ -f "$D$PREFIX/share/man/man1/other.1" ]
	[[ $output == *"kept $D$PREFIX/share/man/man1: not empty"* ]]
	[ ! -e "$D$DATADIR" ]
	[ ! -e "$D$PREFIX/bin/order-place" ]
}
