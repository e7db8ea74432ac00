#!/usr/bin/env bats
# progress: SIGUSR1 makes every long-running command print one JSON line of counts and rates and go on; --stats does it periodically.

load test_helper
bats_require_minimum_version 1.5.0

setup_file() {
	stack_setup_file
}

teardown_file() {
	stack_teardown_file
}

setup() {
	reset_state
	cd "$BATS_TEST_TMPDIR"
	PID=
}

teardown() {
	exec 4>&- 2>/dev/null || true
	[ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true
}

ev() {
	printf '{"id":%s,"id_client":1,"name":"Bob","email":"b@x","order_total":1.00,"event_date":1707484820,"__table":"public.order_event","__op":"c","__lsn":%s,"__seq":0,"__xid":7}\n' "$1" "$1"
}

# ready PID: the command has its SIGUSR1 handler (it would die of the signal before).
ready() {
	local i
	for i in $(seq 200); do sig_caught "$1" 10 && return 0; sleep 0.05; done
	return 1
}

# lines_in FILE N: FILE has N progress lines of PROG, each a JSON object, within 10 s.
lines_in() {
	local i
	for i in $(seq 200); do
		[ "$(grep -c '^{"time":' "$1")" -ge "$2" ] && return 0
		sleep 0.05
	done
	cat "$1" >&2
	return 1
}

@test "client-project: SIGUSR1 prints a line while idle and goes on; the result is right" {
	idle_input
	client-project -a ack <in 3>&- 4>&- 2>err &
	PID=$!
	ready "$PID"
	ev 100 >&4
	for _ in $(seq 100); do [ -s ack ] && break; sleep 0.05; done
	kill -USR1 "$PID"
	lines_in err 1
	line=$(grep '^{"time":' err | tail -n 1)
	[ "$(jq -r .prog <<<"$line")" = client-project ]
	[ "$(jq .applied <<<"$line")" = 1 ]
	[ "$(jq -r '.applied_per_s | type' <<<"$line")" = number ]
	ev 200 >&4
	exec 4>&-
	wait "$PID"
	PID=
	[ "$(rcli hget client:1 total)" = 200 ]
	[ "$(grep -c '^{"time":' err)" = 1 ]
}

@test "outbox-clean, event-fanout and outbox-tail: SIGUSR1 prints a line, each keeps running and finishes right" {
	echo '{"id_client":1,"products":[{"id_product":1,"quantity":1}]}' | order-place >/dev/null
	outbox-tail -a p.pos -a c.pos 2>tail.err 3>&- |
		event-fanout 'client-project -a p.pos' "outbox-clean -a c.pos --after p.pos 2>clean.err" 2>fan.err 3>&- &
	for _ in $(seq 200); do
		t=$(pgrep -f '^outbox-tail -a p.pos'); f=$(pgrep -f '^event-fanout client-project'); c=$(pgrep -f '^outbox-clean -a c.pos')
		[ -n "$t" ] && [ -n "$f" ] && [ -n "$c" ] && ready "$t" && ready "$f" && ready "$c" && break
		sleep 0.05
	done
	for _ in $(seq 200); do [ "$(sql 'SELECT count(*) FROM order_event')" = 0 ] && break; sleep 0.05; done
	kill -USR1 "$t" "$f" "$c"
	lines_in tail.err 1
	lines_in fan.err 1
	lines_in clean.err 1
	[ "$(grep '^{"time":' tail.err | jq .events)" = 1 ]
	[ "$(grep '^{"time":' tail.err | jq -r '.lag_bytes | type')" = number ]
	[ "$(grep '^{"time":' fan.err | jq .lines)" = 1 ]
	[ "$(grep '^{"time":' clean.err | jq .deleted)" = 1 ]
	# Still running: another order goes through.
	echo '{"id_client":1,"products":[{"id_product":2,"quantity":1}]}' | order-place >/dev/null
	for _ in $(seq 200); do [ "$(rcli hget client:1 total)" = 200000 ] && break; sleep 0.05; done
	[ "$(rcli hget client:1 total)" = 200000 ]
	kill -TERM "$t"
	wait
}

@test "order-place: SIGUSR1 prints a line while it waits for orders, with what it placed and refused" {
	idle_input
	order-place -k <in 3>&- 4>&- >out 2>err &
	PID=$!
	ready "$PID"
	echo '{"id_client":1,"products":[{"id_product":1,"quantity":1}]}' >&4
	echo '{"id_client":1,"products":[]}' >&4
	for _ in $(seq 200); do [ -s out ] && grep -q 'stdin:2' err && break; sleep 0.05; done
	kill -USR1 "$PID"
	lines_in err 1
	line=$(grep '^{"time":' err | tail -n 1)
	[ "$(jq -r .prog <<<"$line")" = order-place ]
	[ "$(jq .placed <<<"$line")" = 1 ]
	[ "$(jq .rejected <<<"$line")" = 1 ]
	# It goes on: the next order is placed, and the end is as without the signal.
	echo '{"id_client":2,"products":[{"id_product":1,"quantity":1}]}' >&4
	exec 4>&-
	rc=0
	wait "$PID" || rc=$?
	PID=
	[ "$rc" = 65 ]
	[ "$(wc -l <out)" = 2 ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2 ]
}

@test "--stats prints lines at the interval, and the values are checked" {
	idle_input
	client-project --stats 0.2 <in 3>&- 4>&- 2>err &
	PID=$!
	lines_in err 3
	exec 4>&-
	wait "$PID"
	PID=
	# Each line carries its time; they are at least 0.2 s apart.
	grep '^{"time":' err | jq -r .elapsed_s | awk 'NR > 1 && $1 - p < 0.19 { exit 1 } { p = $1 }'
	for c in client-project outbox-clean outbox-tail event-fanout order-place; do
		run -64 --separate-stderr "$c" --stats 0 cat
		[[ $stderr == *"--stats 0: want seconds from 0.1 to 86400"* ]]
	done
}
