#!/usr/bin/env bats
# faults: kill -9 every pipeline stage, crash both servers, lose the slot, flush Redis and write a poison row while orders flow; nothing lost, nothing doubled.

load test_helper
bats_require_minimum_version 1.5.0

setup_file() {
	stack_setup_file
}

teardown_file() {
	stack_teardown_file
}

@test "3,000 orders through kills, crashes, a lost slot, a FLUSHALL and a poison row: the read model equals SQL" {
	reset_state
	run -0 --separate-stderr timeout 900 "$CQRS_REPO/scripts/faults" -n 3000 -s 42 -k 8
	echo "$output"
	echo "$stderr" | tail -n 30
	[[ $output == *"faults: differences                  0"* ]]
	# Every fault asked for happened, at its point of the order stream.
	[[ $output == *"faults: kills (kill -9)              8 of 8: outbox-tail 2, event-fanout 2, client-project 2, outbox-clean 2"* ]]
	[[ $output == *"server crashes               PostgreSQL 1 (immediate), Redis 1 (kill -9)"* ]]
	[[ $output == *"slot dropped                 refused with 78: yes, --recreate: yes"* ]]
	[[ $output == *"FLUSHALL                     refused with 78: yes, client-rebuild: yes"* ]]
	# The poison row is kept, in the outbox and in both reject files.
	[[ $output =~ poison\ row\ +id\ ([0-9]+):\ left\ in\ the\ outbox\ 1,\ rejected\ by\ client-project:\ ([0-9]+),\ by\ outbox-clean:\ ([0-9]+) ]]
	[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[3]}" ]
	[[ $output == *"client-verify                exit 0, 0 clients differ"* ]]
	[[ $output == *"outbox rows left             1 (the poison row: 1)"* ]]
	[[ $output == *"reported, not in database    0"* ]]
	# Orders were placed and their events applied.
	committed=$(awk '/orders reported committed/ { print $NF }' <<<"$output")
	[ "$committed" -ge 1000 ]
	[ "$(sql 'SELECT count(*) FROM "order"')" -ge "$committed" ]
}

@test "supervise restarts a command that exits, and stops it on SIGTERM" {
	log=$BATS_TEST_TMPDIR/sup.log
	count=$BATS_TEST_TMPDIR/count
	"$CQRS_REPO/scripts/supervise" -d 0.05 -D 0.1 sh -c "echo x >> '$count'; exit 3" 2>"$log" &
	sup=$!
	for _ in $(seq 100); do
		[ "$(wc -l <"$count" 2>/dev/null || echo 0)" -ge 3 ] && break
		sleep 0.05
	done
	kill -TERM "$sup"
	rc=0
	wait "$sup" || rc=$?
	[ "$rc" -eq 0 ]
	[ "$(wc -l <"$count")" -ge 3 ]
	grep -q 'exited with status 3; restart' "$log"
	grep -q 'stopped after' "$log"
}

@test "supervise passes SIGTERM to the whole process group of its command" {
	log=$BATS_TEST_TMPDIR/sup.log
	pidf=$BATS_TEST_TMPDIR/child.pid
	"$CQRS_REPO/scripts/supervise" sh -c "sleep 300 & echo \$! > '$pidf'; wait" 2>"$log" &
	sup=$!
	for _ in $(seq 100); do [ -s "$pidf" ] && break; sleep 0.05; done
	child=$(cat "$pidf")
	kill -0 "$child"
	kill -TERM "$sup"
	rc=0
	wait "$sup" || rc=$?
	[ "$rc" -eq 0 ]
	for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.05; done
	run ! kill -0 "$child"
}

@test "supervise: no command is a usage error" {
	run -64 "$CQRS_REPO/scripts/supervise"
}
