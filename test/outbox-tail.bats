#!/usr/bin/env bats
# outbox-tail.bats: the outbox table's inserts as event lines through logical replication, confirmed as acknowledged.

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
	T=$BATS_TEST_TMPDIR
	LIB=$BATS_TEST_DIRNAME/lib
	ACK=$T/ack
	PIDS=()
}

teardown() {
	local pid
	# Every process a test started in the background, by pid: TERM, then KILL.
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || continue
		wait_until 5 "pid $pid to exit" dead "$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	# reset_state drops inactive slots only: let the walsenders go first.
	wait_until 15 "every slot to be released" no_active_slot || true
	sql 'SET client_min_messages = warning;
		DROP TABLE IF EXISTS junk, t_types;
		ALTER TABLE order_event DROP COLUMN IF EXISTS note;
		DROP ROLE IF EXISTS norepl' >/dev/null
}

# wait_until SECONDS WHAT COMMAND...: run COMMAND every 0.1 s until it succeeds; fail after SECONDS.
wait_until() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	echo "timed out after $secs s waiting for $what" >&2
	return 1
}

# dead PID: the process has exited (a zombie counts as exited).
dead() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
	[[ $st == Z* ]]
}

# bg IN OUT ERR COMMAND...: start COMMAND in the background; its pid in BG and in PIDS.
bg() {
	local in=$1 out=$2 err=$3
	shift 3
	"$@" <"$in" >"$out" 2>"$err" 3>&- &
	BG=$!
	PIDS+=("$BG")
}

# reap PID [SECONDS]: wait (at most SECONDS, 15 by default) for PID to exit; its status in RC; forget it.
reap() {
	local pid=$1 p keep=()
	wait_until "${2:-15}" "pid $pid to exit" dead "$pid"
	RC=0
	wait "$pid" || RC=$?
	for p in "${PIDS[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# slot_active [SLOT]: the slot exists and a walsender is streaming it.
slot_active() {
	[ "$(sql "SELECT active FROM pg_replication_slots WHERE slot_name = '${1:-cqrs_outbox}'")" = t ]
}

no_active_slot() {
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ]
}

# confirmed_past SLOT LSN: the slot's confirmed_flush_lsn is past LSN (an integer or a pg_lsn).
confirmed_past() {
	local lsn=$2
	[[ $lsn == */* ]] || lsn="'0/0'::pg_lsn + $lsn"
	[[ $lsn == *::* ]] || lsn="'$lsn'::pg_lsn"
	[ "$(sql "SELECT confirmed_flush_lsn > $lsn FROM pg_replication_slots WHERE slot_name = '$1'")" = t ]
}

# retained_below SLOT BYTES: the WAL the slot holds back is under BYTES.
retained_below() {
	[ "$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) < $2
		FROM pg_replication_slots WHERE slot_name = '$1'")" = t ]
}

# has_lines FILE N: FILE has at least N lines.
has_lines() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]
}

# orders N SEED: N order requests, random clients 1..3, products 1..3, quantities 1..5.
orders() {
	awk -v n="$1" -v s="$2" 'BEGIN {
		srand(s)
		for (i = 0; i < n; i++)
			printf "{\"id_client\":%d,\"products\":[{\"id_product\":%d,\"quantity\":%d}]}\n",
			    1 + int(rand() * 3), 1 + int(rand() * 3), 1 + int(rand() * 5)
	}'
}

# place N SEED: place N random orders.
place() {
	orders "$1" "$2" | order-place >/dev/null
}

# write_ack FILE LSN SEQ: what a consumer does, atomically.
write_ack() {
	printf '%s %s\n' "$2" "$3" >"$1.tmp"
	mv "$1.tmp" "$1"
}

# positions FILE: (__lsn, __seq) strictly increasing from line to line; prints the number of lines.
positions() {
	(
		set -o pipefail
		jq -r '"\(.__lsn) \(.__seq)"' "$1" | awk '
			NR > 1 && ($1 < l || ($1 == l && $2 <= s)) {
				printf "line %d: position %s %s after %s %s\n", NR, $1, $2, l, s
				bad = 1
				exit
			}
			{ l = $1; s = $2 }
			END { if (bad) exit 1; print NR }'
	)
}

# rows FILE: id|id_client|name|email|order_total|event_date of each line, as written (3000.00 stays
# 3000.00), sorted by id; a line not in that shape is printed whole, to fail the diff.
rows() {
	sed -E 's/^\{"id":([0-9]+),"id_client":([0-9]+),"name":"([^"\\]*)","email":"([^"\\]*)","order_total":(-?[0-9]+\.[0-9]+),"event_date":([0-9]+),"__table":.*/\1|\2|\3|\4|\5|\6/' "$1" |
		sort -t '|' -k 1,1n
}

# replay OUT1 "LSN SEQ" OUT2 IDS: after a crash, every id in IDS (the table) was either consumed
# in OUT1 at or before the acknowledged position, or is in OUT2 (the run after the crash).
replay() {
	jq -r '"\(.id) \(.__lsn) \(.__seq)"' "$1" >"$T/replay.1"
	jq -r .id "$3" >"$T/replay.2"
	awk -v al="${2% *}" -v as="${2#* }" '
		FILENAME == ARGV[1] { if ($2 < al + 0 || ($2 == al + 0 && $3 <= as + 0)) acked[$1] = 1; next }
		FILENAME == ARGV[2] { again[$1] = 1; next }
		!($1 in acked) && !($1 in again) {
			if (++bad <= 10) print "id " $1 ": not acknowledged, and not sent again"
		}
		END { if (bad) { print bad " ids lost"; exit 1 } }' "$T/replay.1" "$T/replay.2" "$4"
}

# once_consumed OUT ERR: outbox-tail --once -a $ACK piped into the consumer, which keeps the lines
# in OUT and acknowledges at end of input; both must exit 0 within 90 s.  (Not `timeout outbox-tail
# | consumer`: timeout would hold the pipe open, and the consumer would never see end of input.)
once_consumed() {
	run -0 --separate-stderr timeout 90 bash -c \
		'outbox-tail --once -a "$1" 2>"$2" | "$3" "$4" "$1"; echo "${PIPESTATUS[*]}"' \
		_ "$ACK" "$2" "$LIB/outbox-tail-consumer" "$1"
	[ "$output" = "0 0" ] || { cat "$2"; echo "exit status of outbox-tail, consumer: $output"; false; }
}

# tail_start [ARGS...]: outbox-tail ARGS in the background, to $T/out and $T/err; wait until it streams.
tail_start() {
	bg /dev/null "$T/out" "$T/err" outbox-tail "$@"
	TAIL=$BG
	wait_until 15 "outbox-tail to start streaming" slot_active || { cat "$T/err" >&2; return 1; }
}

@test "10,000 orders from two order-place processes: every row once, in position order, equal to the table" {
	tail_start
	orders 5000 1 >"$T/a"
	orders 5000 2 >"$T/b"
	bg "$T/a" /dev/null "$T/pa.err" order-place
	pa=$BG
	bg "$T/b" /dev/null "$T/pb.err" order-place
	pb=$BG
	reap "$pa" 600		# a busy machine places slowly
	[ "$RC" = 0 ] || { cat "$T/pa.err"; false; }
	reap "$pb" 600
	[ "$RC" = 0 ] || { cat "$T/pb.err"; false; }
	[ "$(sql 'SELECT count(*) FROM order_event')" = 10000 ]

	wait_until 60 "10000 event lines" has_lines "$T/out" 10000
	# Without an ack file, nothing is confirmed: the slot keeps every event.
	first=$(head -n 1 "$T/out" | jq .__lsn)
	kill -TERM "$TAIL"
	reap "$TAIL"
	[ "$RC" = 0 ] || { cat "$T/err"; echo "outbox-tail exited $RC on SIGTERM"; false; }
	run ! confirmed_past cqrs_outbox "$first"
	grep -qx 'outbox-tail: created publication cqrs_outbox' "$T/err"
	grep -q '^outbox-tail: created slot cqrs_outbox at [0-9A-F]*/[0-9A-F]*$' "$T/err"

	[ "$(wc -l <"$T/out")" = 10000 ]
	[ "$(positions "$T/out")" = 10000 ]
	rows "$T/out" >"$T/lines.rows"
	psql -qX -v ON_ERROR_STOP=1 -c "COPY (SELECT id, id_client, name, email, order_total, event_date
		FROM order_event ORDER BY id) TO STDOUT WITH (DELIMITER '|')" >"$T/table.rows"
	run -0 diff "$T/table.rows" "$T/lines.rows"
	run -0 jq -s 'map(select(.__table != "public.order_event" or .__op != "c"
		or (.__xid | type) != "number" or (.__ts_ms | type) != "number")) | length' "$T/out"
	[ "$output" = 0 ]
}

@test "kill -9 mid-stream, restart with the same ack file: nothing unacknowledged is lost" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"	# publication and slot
	place 3000 3
	mkfifo "$T/fifo"
	# A consumer (a slow one: a shell loop) that acknowledges every 100 lines.
	bg "$T/fifo" /dev/null "$T/c1.err" "$LIB/outbox-tail-consumer" "$T/out1" "$ACK" 100
	consumer=$BG
	bg /dev/null "$T/fifo" "$T/err1" outbox-tail -a "$ACK"
	tail1=$BG
	wait_until 30 "1000 lines consumed" has_lines "$T/out1" 1000
	kill -9 "$tail1" "$consumer"
	reap "$tail1"
	reap "$consumer"
	n1=$(wc -l <"$T/out1")
	[ "$n1" -lt 3000 ] || { echo "not mid-stream: the consumer had all $n1 lines"; false; }
	[ -s "$ACK" ]
	ack=$(cat "$ACK")
	[[ $ack =~ ^[0-9]+\ [0-9]+$ ]]

	wait_until 15 "the slot to be released" no_active_slot
	once_consumed "$T/out2" "$T/err2"
	sql 'SELECT id FROM order_event ORDER BY id' >"$T/ids"
	[ "$(wc -l <"$T/ids")" = 3000 ]
	replay "$T/out1" "$ack" "$T/out2" "$T/ids"
	positions "$T/out2" >/dev/null
	# Everything is acknowledged now: a third run has nothing to send.
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[ -z "$output" ]
}

@test "idle outbox: the slot's confirmed position follows other tables' WAL" {
	tail_start -a "$ACK"
	sql 'CREATE TABLE junk (x text)'
	before=$(sql 'SELECT pg_current_wal_lsn()')
	sql "INSERT INTO junk SELECT repeat('x', 1000) FROM generate_series(1, 50000)"
	[ "$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$before') > 50000000")" = t ]
	wait_until 30 "confirmed_flush_lsn past $before" confirmed_past cqrs_outbox "$before"
	wait_until 30 "retained WAL under 1 MB" retained_below cqrs_outbox 1048576
	[ ! -s "$T/out" ]
}

@test "with an ack file: nothing confirmed before the ack, then idle WAL is not pinned either" {
	tail_start -a "$ACK"
	place 1 5
	wait_until 15 "one event line" has_lines "$T/out" 1
	lsn=$(jq .__lsn "$T/out")
	seq=$(jq .__seq "$T/out")
	sleep 1	# ten status intervals of 100 ms: it must not confirm unacknowledged
	if confirmed_past cqrs_outbox "$lsn"; then
		echo "confirmed before the ack file said so"
		false
	fi
	write_ack "$ACK" "$lsn" "$seq"
	wait_until 15 "the acknowledged transaction to be confirmed" confirmed_past cqrs_outbox "$lsn"
	sql 'CREATE TABLE junk (x text)'
	before=$(sql 'SELECT pg_current_wal_lsn()')
	sql "INSERT INTO junk SELECT repeat('x', 1000) FROM generate_series(1, 10000)"
	wait_until 30 "confirmed_flush_lsn past $before" confirmed_past cqrs_outbox "$before"
	wait_until 30 "retained WAL under 1 MB" retained_below cqrs_outbox 1048576
	[ "$(wc -l <"$T/out")" = 1 ]
}

@test "two ack files: a transaction is confirmed once both are at its last row" {
	tail_start -a "$ACK" -a "$T/ack2"
	sql "INSERT INTO order_event (id_client, name, email, order_total, event_date)
		SELECT 2, 'Alice', 'a@x', i, 1700000000 FROM generate_series(1, 3) i"
	wait_until 15 "three event lines" has_lines "$T/out" 3
	[ "$(jq -c '[.__seq, .order_total]' "$T/out" | paste -sd ' ')" = '[0,1] [1,2] [2,3]' ]
	[ "$(jq .__lsn "$T/out" | sort -u | wc -l)" = 1 ]
	lsn=$(head -n 1 "$T/out" | jq .__lsn)
	write_ack "$ACK" "$lsn" 2
	write_ack "$T/ack2" "$lsn" 1	# one row short
	sleep 1
	if confirmed_past cqrs_outbox "$lsn"; then
		echo "confirmed with ack2 one row short"
		false
	fi
	write_ack "$T/ack2" "$lsn" 2
	wait_until 15 "the transaction to be confirmed" confirmed_past cqrs_outbox "$lsn"
}

@test "--once prints what is waiting and exits 0; without an ack file it confirms nothing" {
	run -0 --separate-stderr timeout 30 outbox-tail --once
	[ -z "$output" ]
	[[ $stderr == *"created slot cqrs_outbox"* ]]
	place 5 6
	run -0 --separate-stderr timeout 30 outbox-tail --once
	[ "${#lines[@]}" = 5 ]
	[ "$(jq -r .id <<<"$output" | paste -sd ' ')" = "1 2 3 4 5" ]
	first=$output
	# Nothing was confirmed: the same events again, as kcat without a group.
	run -0 --separate-stderr timeout 30 outbox-tail --once
	[ "$output" = "$first" ]
	[ -z "$stderr" ]
}

@test "--once -a with nobody acknowledging: 75 after -w seconds naming the ack file, and the events come again" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	write_ack "$ACK" 0 0
	place 2 7
	run -75 --separate-stderr timeout 30 outbox-tail --once -a "$ACK" -a "$T/missing" -w 1
	[ "${#lines[@]}" = 2 ]
	first=$output
	[[ $stderr == *"$ACK: at 0/0, behind "* ]]
	[[ $stderr == *"$T/missing: missing after 1.0 s"* ]]
	[[ $stderr == *"not acknowledged"* ]]
	run -75 --separate-stderr timeout 30 outbox-tail --once -a "$ACK" -w 1
	[ "$output" = "$first" ]
}

@test "--once with a consumer that acknowledges: 0, confirmed, the next run prints nothing" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	place 5 8
	once_consumed "$T/out" "$T/err"
	[ "$(wc -l <"$T/out")" = 5 ]
	[ "$(tail -n 1 "$T/out" | jq -r '"\(.__lsn) \(.__seq)"')" = "$(cat "$ACK")" ]
	wait_until 10 "the slot to confirm" confirmed_past cqrs_outbox "$(tail -n 1 "$T/out" | jq .__lsn)"
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[ -z "$output" ]
}

@test "one transaction of 100,000 rows: one __lsn, __seq 0..99999, peak RSS under 10 MB" {
	require_tool /usr/bin/time
	run -0 --separate-stderr timeout 30 outbox-tail --once
	sql "INSERT INTO order_event (id_client, name, email, order_total, event_date)
		SELECT 1, 'Bob', 'b@x', 10.50, 1700000000 FROM generate_series(1, 100000)"
	rc=0
	timeout 120 /usr/bin/time -f %M -o "$T/rss" outbox-tail --once >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = 0 ] || { cat "$T/err"; echo "exit $rc"; false; }
	[ "$(wc -l <"$T/out")" = 100000 ]
	[ "$(jq .__lsn "$T/out" | sort -u | wc -l)" = 1 ]
	jq .__seq "$T/out" | awk 'NR - 1 != $0 { print "line " NR ": __seq " $0; bad = 1; exit } END { exit bad }'
	[ "$(head -n 1 "$T/out" | jq -c '[.order_total, .event_date, .name]')" = '[10.5,1700000000,"Bob"]' ]
	grep -q '"order_total":10.50,' "$T/out"
	rss_below 10240 "$T/rss"
}

@test "a column added and dropped mid-stream shows in the next lines" {
	tail_start
	place 1 9
	wait_until 15 "line 1" has_lines "$T/out" 1
	sql "ALTER TABLE order_event ADD COLUMN note text DEFAULT 'n1'"
	place 1 10
	wait_until 15 "line 2" has_lines "$T/out" 2
	sql 'ALTER TABLE order_event DROP COLUMN note'
	place 1 11
	wait_until 15 "line 3" has_lines "$T/out" 3
	[ "$(jq -c '[.id, has("note"), .note]' "$T/out" | paste -sd ' ')" = '[1,false,null] [2,true,"n1"] [3,false,null]' ]
	[ "$(jq -c '[.id_client, .order_total, .__op] | map(type)' "$T/out" | sort -u)" = '["number","number","string"]' ]
}

# types_table: t_types with one row of many types, tailed by types_slot (created before the insert).
types_table() {
	sql 'CREATE TABLE t_types (i2 int2, i4 int4, i8 int8, n numeric, f float8, fnan float8,
		finf float8, b bool, bf bool, t text, v varchar(20), j json, jb jsonb, u uuid, d date,
		ts timestamptz, nul int4, nnan numeric)'
	run -0 --separate-stderr timeout 30 outbox-tail -t public.t_types -p types_pub -s types_slot --once
	[ -z "$output" ]
	[[ $stderr == *"created publication types_pub"* ]]
	[[ $stderr == *"created slot types_slot"* ]]
}

@test "types: numbers exact, NaN as a string, booleans, escaped text, json embedded, null" {
	types_table
	sql "INSERT INTO t_types VALUES (-32768, 2147483647, -9223372036854775808,
		12345678901234567890.123456789, 1.5, 'NaN', '-Infinity', true, false,
		E'q\"uote \\\\back\\nnew\\ttab\\u0001 é ✓ 😀', 'var\"c', '{\"a\":[1,2]}',
		'{\"b\": true, \"a\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-09',
		'2024-02-09 13:20:20.5+00', NULL, 'NaN')"
	run -0 --separate-stderr timeout 30 outbox-tail -t public.t_types -p types_pub -s types_slot --once
	[ "${#lines[@]}" = 1 ]
	line=$output
	# Numbers in the server's exact text (jq would round them through a double).
	[[ $line == *'"i2":-32768,'* ]]
	[[ $line == *'"i4":2147483647,'* ]]
	[[ $line == *'"i8":-9223372036854775808,'* ]]
	[[ $line == *'"n":12345678901234567890.123456789,'* ]]
	[[ $line == *'"f":1.5,'* ]]
	jq -e . <<<"$line" >/dev/null
	q() { jq -c "$1" <<<"$line"; }
	[ "$(q '[.i2, .i4, .i8, .n, .f] | map(type)')" = '["number","number","number","number","number"]' ]
	[ "$(q '[.fnan, .finf, .nnan]')" = '["NaN","-Infinity","NaN"]' ]
	[ "$(q '[.b, .bf]')" = '[true,false]' ]
	[ "$(jq -j .t <<<"$line")" = "$(printf 'q"uote \\back\nnew\ttab\001 é ✓ 😀')" ]
	[[ $line == *'"t":"q\"uote \\back\nnew\ttab\u0001 é ✓ 😀"'* ]]
	[ "$(q .v)" = '"var\"c"' ]
	[ "$(q .j)" = '{"a":[1,2]}' ]
	[ "$(q .jb)" = '{"a":null,"b":true}' ]
	[ "$(q .u)" = '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"' ]
	[ "$(q .d)" = '"2024-02-09"' ]
	[ "$(q '.ts | type')" = '"string"' ]
	[[ $(q .ts) == '"2024-02-09 '* ]]
	[ "$(q '[has("nul"), .nul]')" = '[true,null]' ]
	[ "$(q '[.__table, .__op, .__seq]')" = '["public.t_types","c",0]' ]
}

@test "types: a json value written over several lines stays on one event line" {
	types_table
	sql "INSERT INTO t_types (i4, j, jb) VALUES (1, E'{\"k\":\n  [1,\r\n 2]}', E'{\"x\":\n 1}')"
	run -0 --separate-stderr timeout 30 outbox-tail -t public.t_types -p types_pub -s types_slot --once
	[ "${#lines[@]}" = 1 ] || { echo "one row became ${#lines[@]} lines: $output"; false; }
	[ "$(jq -c '[.i4, .j, .jb]' <<<"$output")" = '[1,{"k":[1,2]},{"x":1}]' ]
}

@test "--drop removes the slot and the publication" {
	run -0 --separate-stderr timeout 30 outbox-tail --once
	run -0 --separate-stderr timeout 30 outbox-tail -s other_s -p other_p --once
	run -0 --separate-stderr timeout 30 outbox-tail --drop
	[ -z "$output" ]
	[[ $stderr == *"dropped slot cqrs_outbox"* ]]
	[[ $stderr == *"dropped publication cqrs_outbox"* ]]
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'")" = 0 ]
	[ "$(sql "SELECT count(*) FROM pg_publication WHERE pubname = 'cqrs_outbox'")" = 0 ]
	# Only the named ones.
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'other_s'")" = 1 ]
	[ "$(sql "SELECT count(*) FROM pg_publication WHERE pubname = 'other_p'")" = 1 ]
	# Nothing left to drop is fine.
	run -0 --separate-stderr timeout 30 outbox-tail --drop
	[[ $stderr != *dropped* ]]
}

@test "a second outbox-tail on the same slot exits 75; the first streams on, and dies by SIGINT" {
	tail_start
	run -75 --separate-stderr timeout 30 outbox-tail
	[ -z "$output" ]
	[[ $stderr == *"active"* ]]
	place 1 12
	wait_until 15 "the first one's line" has_lines "$T/out" 1
	slot_active
	if dead "$TAIL"; then
		cat "$T/err"
		false
	fi
	kill -INT "$TAIL"
	reap "$TAIL"
	[ "$RC" = 130 ]
}

@test "usage: an unknown option, an operand, a bad slot name exit 64; -h 0, -V 0" {
	run -0 --separate-stderr outbox-tail -h
	[ -z "$stderr" ]
	[[ $output == "usage: outbox-tail "* ]]
	[[ $output == *"--recreate"* ]]
	run -64 --separate-stderr outbox-tail --bogus
	[[ $stderr == *"usage: outbox-tail "* ]]
	run -64 --separate-stderr outbox-tail extra
	[[ $stderr == *"usage: outbox-tail "* ]]
	run -64 --separate-stderr outbox-tail -s Bad-Name
	[[ $stderr == *"Bad-Name"* ]]
	run -64 --separate-stderr outbox-tail -p 'x;drop'
	run -64 --separate-stderr outbox-tail -i 0
	run -0 --separate-stderr outbox-tail -V
	[[ $output == "outbox-tail "* ]]
	# None of them touched the database.
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots')" = 0 ]
	[ "$(sql 'SELECT count(*) FROM pg_publication')" = 0 ]
}

@test "an unreachable server exits 69" {
	run -69 --separate-stderr timeout 30 outbox-tail -d 'host=/nonexistent'
	[ -z "$output" ]
	[[ $stderr == "outbox-tail: "* ]]
}

@test "a connection lost mid-stream exits 69" {
	tail_start
	place 1 13
	wait_until 15 "one line" has_lines "$T/out" 1
	[ "$(sql "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'")" = t ]
	reap "$TAIL"
	[ "$RC" = 69 ] || { cat "$T/err"; echo "exit $RC"; false; }
	[ -s "$T/err" ]
}

@test "stdout that cannot be written (/dev/full) exits 74" {
	run -0 --separate-stderr timeout 30 outbox-tail --once
	place 1 14
	run -74 --separate-stderr timeout 30 sh -c 'exec outbox-tail >/dev/full'
	[[ $stderr == *"stdout"* ]]
}

@test "a malformed ack file exits 74" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	place 1 15
	echo garbage >"$ACK"
	run -74 --separate-stderr timeout 30 outbox-tail -a "$ACK"
	[[ $stderr == *"$ACK"* ]]
}

@test "a malformed ack file exits 74 with --once too" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	place 1 16
	echo garbage >"$ACK"
	run -74 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[[ $stderr == *"$ACK"* ]]
}

@test "a reader that goes away (| head -n 1) ends outbox-tail with 0" {
	run -0 --separate-stderr timeout 30 outbox-tail --once
	place 500 17	# more than a pipe holds: outbox-tail must write after head has gone
	timeout 30 outbox-tail 2>"$T/err" | head -n 1 >"$T/out"
	st=("${PIPESTATUS[@]}")
	[ "${st[0]}" = 0 ] || { cat "$T/err"; echo "outbox-tail exited ${st[0]}"; false; }
	[ "$(jq .id "$T/out")" = 1 ]
	[ ! -s "$T/err" ]
}

@test "a reader that goes away while outbox-tail is idle ends it with 0 too" {
	run -0 --separate-stderr timeout 30 outbox-tail --once
	place 1 18	# one line, one write: nothing more to write after head has gone
	start=$SECONDS
	timeout 30 outbox-tail 2>"$T/err" | head -n 1 >"$T/out"
	st=("${PIPESTATUS[@]}")
	[ "${st[0]}" = 0 ] || { cat "$T/err"; echo "outbox-tail exited ${st[0]} after $((SECONDS - start)) s"; false; }
	[ "$(jq .id "$T/out")" = 1 ]
	[ $((SECONDS - start)) -lt 15 ]
}

@test "a role without REPLICATION exits 77" {
	sql 'CREATE ROLE norepl LOGIN'
	stack_password norepl
	run -0 --separate-stderr timeout 30 outbox-tail --once	# publication and slot exist
	run -77 --separate-stderr timeout 30 outbox-tail -d 'user=norepl' --once
	[ -z "$output" ]
	[[ $stderr == *"norepl"* || $stderr == *"replication"* ]]
}

@test "a role without REPLICATION that cannot create the publication exits 77" {
	sql 'CREATE ROLE norepl LOGIN'
	stack_password norepl
	run -77 --separate-stderr timeout 30 outbox-tail -d 'user=norepl' --once
	[ "$(sql 'SELECT count(*) FROM pg_publication')" = 0 ]
}

@test "configuration: a malformed conninfo, a missing database or table, another plugin's slot exit 78" {
	run -78 --separate-stderr timeout 30 outbox-tail -d foo
	[[ $stderr == *"foo"* ]]
	run -78 --separate-stderr timeout 30 outbox-tail -d dbname=nosuchdb
	[[ $stderr == *"nosuchdb"* ]]
	run -78 --separate-stderr timeout 30 outbox-tail -t public.nosuch -p p_nosuch -s s_nosuch
	[[ $stderr == *"nosuch"* ]]
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_nosuch'")" = 0 ]
	sql "SELECT pg_create_logical_replication_slot('other_slot', 'test_decoding')" >/dev/null
	run -78 --separate-stderr timeout 30 outbox-tail -s other_slot --once
	[[ $stderr == *"other_slot"* ]]
	[ -z "$output" ]
	[ "$(sql "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'other_slot'")" = test_decoding ]
}

# --- Nothing lost in everyday operations (issue 10): snapshot, lost slots, checked ack files ---

@test "orders placed before the first outbox-tail come first, as a snapshot (op r) in the slot's own snapshot" {
	place 3 20
	tail_start -a "$ACK"
	wait_until 15 "three snapshot lines" has_lines "$T/out" 3
	place 2 21
	wait_until 15 "two streamed lines" has_lines "$T/out" 5
	[ "$(jq -r .__op "$T/out" | paste -sd ' ')" = "r r r c c" ]
	[ "$(jq -r .id "$T/out" | paste -sd ' ')" = "1 2 3 4 5" ]
	# Positions increase along the whole output; the snapshot's end is marked.
	[ "$(positions "$T/out")" = 5 ]
	[ "$(sed -n 3p "$T/out" | jq .__seq)" = 4294967295 ]
	[ "$(jq -r .__src "$T/out" | sort -u | wc -l)" = 1 ]
	[[ $(head -n 1 "$T/out" | jq -r .__src) == pg:[0-9]*:1:cqrs_outbox ]]
	grep -q 'snapshot of slot cqrs_outbox: 3 rows' "$T/err"
	# Nothing is confirmed past the slot's start until the snapshot is acknowledged.
	start=$(sql "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'")
	write_ack "$ACK" "$(sed -n 2p "$T/out" | jq .__lsn)" "$(sed -n 2p "$T/out" | jq .__seq)"
	sleep 0.5
	[ "$(sql "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'")" = "$start" ]
	last=$(tail -n 1 "$T/out")
	write_ack "$ACK" "$(jq .__lsn <<<"$last")" "$(jq .__seq <<<"$last")"
	wait_until 15 "the stream to be confirmed" confirmed_past cqrs_outbox "$(jq .__lsn <<<"$last")"
}

@test "--snapshot never: rows already in the outbox are not sent" {
	place 3 22
	run -0 --separate-stderr timeout 30 outbox-tail --once --snapshot never -a "$ACK"
	[ -z "$output" ]
	run -64 --separate-stderr outbox-tail --snapshot sometimes
}

@test "a snapshot that did not reach every consumer is taken again, and nothing is lost" {
	place 4 23
	run -75 --separate-stderr timeout 30 outbox-tail --once -a "$ACK" -w 0.5
	[ "${#lines[@]}" = 4 ]
	# The marker slot says the snapshot is still out.
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox_snapshot'")" = 1 ]
	# The consumer applied the first two rows only, then stopped.
	write_ack "$ACK" "$(sed -n 2p <<<"$output" | jq .__lsn)" "$(sed -n 2p <<<"$output" | jq .__seq)"
	run -0 --separate-stderr timeout 30 bash -c 'outbox-tail --once -a "$1" | "$2" "$3" "$1"' _ \
		"$ACK" "$LIB/outbox-tail-consumer" "$T/out"
	[[ $stderr == *"did not reach every consumer"*"re-creating the slot"* ]]
	[ "$(jq -r .id "$T/out" | paste -sd ' ')" = "1 2 3 4" ]
	[ "$(jq -r .__op "$T/out" | sort -u)" = r ]
	# Acknowledged: the marker is gone, and the next run streams on.
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox_snapshot'")" = 0 ]
	place 1 29
	run -0 --separate-stderr timeout 30 bash -c 'outbox-tail --once -a "$1" | "$2" "$3" "$1"' _ \
		"$ACK" "$LIB/outbox-tail-consumer" "$T/out2"
	[ "$(jq -r '"\(.id) \(.__op)"' "$T/out2")" = "5 c" ]
}

@test "a slot dropped while ack files show it was consumed: 78 naming it; --recreate sends the outbox again" {
	place 2 24
	once_consumed "$T/out1" "$T/err1"
	[ "$(wc -l <"$T/out1")" = 2 ]
	sql "SELECT pg_drop_replication_slot('cqrs_outbox')" >/dev/null
	place 3 25
	run -78 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[ -z "$output" ]
	[[ $stderr == *"slot cqrs_outbox is gone"*"$ACK"*"--recreate"* ]]
	[ "$(sql "SELECT count(*) FROM pg_replication_slots")" = 0 ]
	# The outbox still holds every row (nobody cleaned): all five come again.
	run -0 --separate-stderr timeout 30 bash -c 'outbox-tail --once --recreate -a "$1" | "$2" "$3" "$1"' _ \
		"$ACK" "$LIB/outbox-tail-consumer" "$T/out2"
	[ "$(jq -r .id "$T/out2" | paste -sd ' ')" = "1 2 3 4 5" ]
	[ "$(jq -r .__op "$T/out2" | sort -u)" = r ]
}

@test "ack files are checked: plain digits only, the same stream, not beyond the server's WAL" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	for bad in '-1 0' '+5 0' '5 0 ' ' 5 0' '05 0' '5 -1' '5 4294967296' '5' '5 0 a b' \
	    '18446744073709551615 0' '1152921504606846977 0'; do
		printf '%s\n' "$bad" >"$ACK"
		run -74 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
		[[ $stderr == *"$ACK: not an ack file"* ]] || { echo "accepted: '$bad'"; false; }
	done
	printf '5 0\n5 0\n' >"$ACK"
	run -74 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	src=$(sql 'SELECT system_identifier FROM pg_control_system()')
	printf '5 0 pg:12345:1:cqrs_outbox\n' >"$ACK"
	run -78 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[[ $stderr == *'"pg:12345:1:cqrs_outbox"'*'"pg:'"$src"':1:cqrs_outbox"'* ]]
	printf '5 0 pg:%s:1:other_slot\n' "$src" >"$ACK"
	run -78 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[[ $stderr == *other_slot* ]]
	# A restored database has a shorter WAL than its consumers remember.
	printf '%s 0 pg:%s:1:cqrs_outbox\n' $((1 << 40)) "$src" >"$ACK"
	run -78 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	[[ $stderr == *"beyond the server's WAL"* ]]
}

@test "--peek confirms nothing: outbox-tail --peek | head -1, and the real consumer still gets everything" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	place 3 26
	timeout 30 outbox-tail --peek -a "$ACK" 2>"$T/peek.err" | head -n 1 >"$T/peek"
	[ "$(jq .id "$T/peek")" = 1 ]
	once_consumed "$T/out" "$T/err"
	[ "$(jq -r .id "$T/out" | paste -sd ' ')" = "1 2 3" ]
}

@test "SIGINT stops a set -e script with 130; SIGTERM while stdout is blocked is a clean 0" {
	run -0 --separate-stderr timeout 30 outbox-tail --once -a "$ACK"
	run -130 bash -c 'set -e; outbox-tail -a "$1" >/dev/null 2>&1 & pid=$!
		for i in $(seq 100); do [ "$(psql -qXAtc "SELECT active FROM pg_replication_slots")" = t ] && break; sleep 0.1; done
		kill -INT $pid; wait $pid; echo not reached' _ "$ACK"
	[[ $output != *"not reached"* ]]
	wait_until 15 "the slot to be released" no_active_slot
	# A reader that never reads: a pipe full of events.
	place 3000 27
	mkfifo "$T/full"
	exec 5<>"$T/full"
	bg /dev/null "$T/full" "$T/err" outbox-tail -a "$ACK"
	wait_until 15 "outbox-tail to stream" slot_active
	sleep 1
	kill -TERM "$BG"
	reap "$BG"
	exec 5>&-
	[ "$RC" = 0 ] || { cat "$T/err"; false; }
	[[ $(cat "$T/err") != *stdout* ]]
}

@test "a consumer stuck longer than wal_sender_timeout: the stream stays up; -i must fit the timeout" {
	sql "ALTER SYSTEM SET wal_sender_timeout = '3s'" >/dev/null
	sql 'SELECT pg_reload_conf()' >/dev/null
	run -64 --separate-stderr timeout 30 outbox-tail -i 2 --once
	[[ $stderr == *"wal_sender_timeout"* ]]
	mkfifo "$T/stuck"
	exec 5<>"$T/stuck"
	bg /dev/null "$T/stuck" "$T/err" outbox-tail -i 1 -a "$ACK"
	wait_until 15 "outbox-tail to stream" slot_active
	place 3000 28
	sleep 8		# nobody reads: more than twice the server's timeout
	sql "ALTER SYSTEM RESET wal_sender_timeout" >/dev/null
	sql 'SELECT pg_reload_conf()' >/dev/null
	if dead "$BG"; then cat "$T/err"; false; fi
	slot_active
	head -c 100000 <&5 >/dev/null	# the reader wakes up
	kill -TERM "$BG"
	reap "$BG"
	exec 5>&-
	[ "$RC" = 0 ] || { cat "$T/err"; false; }
	[[ $(cat "$T/err") != *"replication ended"* ]]
}
