# test_helper: fresh binaries first in PATH, a private stack per suite, known state per test.

CQRS_REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
PATH="${CQRS_BIN:-$CQRS_REPO/bin}:$PATH"
export CQRS_REPO PATH

# stack_setup_file: start a private PostgreSQL and Redis under a new temp dir; export their variables.
stack_setup_file() {
	CQRS_STACK_DIR=$(mktemp -d /tmp/cqrs-test.XXXXXX)
	export CQRS_STACK_DIR
	if ! "$CQRS_REPO/scripts/stack" up >"$CQRS_STACK_DIR/stack.log" 2>&1; then
		cat "$CQRS_STACK_DIR/stack.log" >&2
		echo "stack_setup_file: scripts/stack up failed in $CQRS_STACK_DIR" >&2
		return 1
	fi
	eval "$("$CQRS_REPO/scripts/stack" env)"
	# The stack's password file, for sql and reset_state even where a test sets PGPASSFILE.
	CQRS_PGPASSFILE=$PGPASSFILE
	export CQRS_PGPASSFILE
}

# stack_password ROLE...: give each role a generated password, in the stack's
# password file (the stack asks every role for its password).
stack_password() {
	"$CQRS_REPO/scripts/stack" password "$@"
}

# stack_teardown_file: stop the suite's stack and remove its directory.
stack_teardown_file() {
	[ -n "${CQRS_STACK_DIR:-}" ] || return 0
	"$CQRS_REPO/scripts/stack" destroy
}

# reset_state: seed data only, no publications or idle slots, empty Redis.
reset_state() {
	PGPASSFILE=$CQRS_PGPASSFILE psql -qX -v ON_ERROR_STOP=1 \
		-c 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active' \
		-c 'DO $$ DECLARE p name; BEGIN
			FOR p IN SELECT pubname FROM pg_publication LOOP
				EXECUTE format($f$DROP PUBLICATION %I$f$, p);
			END LOOP; END $$' \
		-c 'TRUNCATE order_item, "order", order_event, client, product RESTART IDENTITY CASCADE' \
		-f "$CQRS_REPO/scripts/seed.sql" >/dev/null
	rcli flushall >/dev/null
}

# sql QUERY: print the result unaligned, tuples only.
sql() {
	PGPASSFILE=$CQRS_PGPASSFILE psql -qXAt -v ON_ERROR_STOP=1 -c "$1"
}

# rcli ARGS...: redis-cli on the stack's socket.
rcli() {
	redis-cli -s "$CQRS_STACK_DIR/redis/redis.sock" "$@"
}

# require_tool NAME: skip a test whose tool is missing; under CI=true, fail instead.
require_tool() {
	command -v "$1" >/dev/null && return 0
	if [ "${CI:-}" = true ]; then
		echo "require_tool: $1 is missing (CI=true: failing, not skipping)" >&2
		return 1
	fi
	skip "$1 is not installed"
}

# synopsis NAME: the SYNOPSIS of man/NAME.1, on one line.
synopsis() {
	mandoc -Tascii "$CQRS_REPO/man/$1.1" | sed 's/.\x08//g' |
		awk '/^SYNOPSIS/ { f = 1; next } /^[A-Z]/ { f = 0 } f' | tr -s ' \n' '  ' | sed 's/^ //; s/ $//'
}

# idle_input: a fifo "in", held open for writing on fd 4, so that a reader's
# stdin stays open and idle.  Give commands "4>&-" unless they are to hold it.
idle_input() {
	mkfifo in
	exec 4<>in
}

# wait_for_file FILE: wait up to 10 s until FILE is non-empty.
wait_for_file() {
	local i
	for i in $(seq 200); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	echo "wait_for_file: $1 still empty after 10 s" >&2
	return 1
}

# wait_job PID: wait up to 10 s for background job PID; its status in $rc.
wait_job() {
	local i
	for i in $(seq 200); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$1" 2>/dev/null; then
		kill -9 "$1"
		echo "wait_job: $1 still running after 10 s" >&2
		return 1
	fi
	rc=0
	wait "$1" || rc=$?
}

# rss_below KB FILE: the peak RSS that /usr/bin/time -f %M wrote to FILE is
# under KB.  Under AddressSanitizer (make check-asan sets CQRS_SANITIZED)
# the shadow memory makes RSS meaningless: the figure is only printed.
rss_below() {
	local rss
	rss=$(tail -n 1 "$2")
	echo "peak RSS: $rss KiB" >&3
	[ -n "${CQRS_SANITIZED:-}" ] && return 0
	[ "$rss" -lt "$1" ] || { echo "peak RSS $rss KiB, limit $1 KiB"; return 1; }
}

# sig_caught PID SIGNUM: process PID has a handler for signal SIGNUM
# (SigCgt in /proc), so that a test can wait until a command is ready for
# e.g. SIGUSR1 (10) instead of killing it before util_signals() ran.
sig_caught() {
	local mask
	mask=$(awk '/^SigCgt:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$mask" ] && (( (16#$mask >> ($2 - 1)) & 1 ))
}
