#!/usr/bin/env bats
# client-rebuild: the read model rebuilt from the order tables, consistent with the slot: nothing missed, nothing counted twice.

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
	BG=
}

teardown() {
	[ -z "$BG" ] || { kill "$BG" 2>/dev/null; wait "$BG" 2>/dev/null || true; }
	for _ in $(seq 100); do
		[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ] && break
		sleep 0.1
	done
}

# place N SEED: N random orders of clients 1..3.
place() {
	awk -v n="$1" -v s="$2" 'BEGIN { srand(s); for (i = 0; i < n; i++)
		printf "{\"id_client\":%d,\"products\":[{\"id_product\":%d,\"quantity\":%d}]}\n",
		    1 + int(rand() * 3), 1 + int(rand() * 3), 1 + int(rand() * 5) }' | order-place >/dev/null
}

# flow [ARGS]: outbox-tail --once into client-project and the cleaner, acknowledging; 0 if all did.
flow() {
	outbox-tail --once -a proj.pos -a clean.pos 2>>flow.err |
		event-fanout 'client-project -a proj.pos' 'outbox-clean -a clean.pos --after proj.pos' 2>>flow.err
}

@test "FLUSHALL: client-project refuses; client-rebuild restores the read model; the pipeline goes on, counting nothing twice" {
	place 30 1
	run -0 flow
	run -0 client-verify -w 0
	rcli flushall >/dev/null
	place 10 2
	run -78 --separate-stderr bash -c 'outbox-tail --once -a proj.pos -a clean.pos | client-project -a proj.pos'
	[[ $stderr == *"the read model is gone"* ]]
	run -1 client-verify -w 0
	run -0 --separate-stderr client-rebuild -v
	[[ $stderr == "client-rebuild: 3 clients from the order tables at "* ]]
	run -0 client-verify -w 0
	# The events between the ack files and the rebuild come again: replays.
	place 10 3
	run -0 flow
	run -0 --separate-stderr client-verify -w 0
	[ -z "$output" ]
	[ "$(sql 'SELECT count(*) FROM order_event')" = 0 ]
}

@test "a rebuild, then the first start of a pipeline: the new slot's snapshot counts nothing twice" {
	place 40 4	# no pipeline yet: the outbox holds every order
	run -0 client-rebuild
	run -0 client-verify -w 0
	place 5 5	# after the rebuild: not counted by it
	run -0 --separate-stderr flow
	grep -q 'snapshot of slot cqrs_outbox: 45 rows' flow.err
	run -0 --separate-stderr client-verify -w 0
	[ -z "$output" ]
	# Forty were recognized as counted by the rebuild, five applied.
	[ "$(sql 'SELECT count(*) FROM order_event')" = 0 ]
}

@test "a rebuild while orders are being placed is exact" {
	run -0 flow	# the slot exists
	( for i in $(seq 20); do place 10 "$((100 + i))"; done ) &
	BG=$!
	sleep 0.3
	run -0 client-rebuild
	wait "$BG"
	BG=
	run -0 flow
	run -0 --separate-stderr client-verify -w 0
	[ -z "$output" ]
}

@test "clients without orders are removed; other keys stay" {
	place 5 6
	rcli hset client:42 name x email y total 1 last_purchase 1 >/dev/null
	rcli set other 1 >/dev/null
	run -0 --separate-stderr client-rebuild -v
	[[ $stderr == *", 1 removed" ]]
	[ "$(rcli exists client:42)" = 0 ]
	[ "$(rcli get other)" = 1 ]
}

@test "it refuses while a client-project applies to the read model, and client-project refuses while it runs" {
	idle_input
	client-project <in 3>&- 4>&- 2>cp.err &
	BG=$!
	for _ in $(seq 100); do [ -n "$(rcli --scan --pattern 'cqrs:projector:*')" ] && break; sleep 0.05; done
	run -75 --separate-stderr client-rebuild -w 0.5
	[[ $stderr == *"a client-project is applying to this read model (its lease cqrs:projector:"*"is held): stop it before rebuilding"* ]]
	[ "$(rcli exists cqrs:rebuild)" = 0 ]
	exec 4>&-
	wait "$BG"
	BG=
	# The lease is given back at exit: no wait now.
	[ -z "$(rcli --scan --pattern 'cqrs:projector:*')" ]
	rcli set cqrs:rebuild someone px 60000 >/dev/null
	run -75 --separate-stderr client-rebuild
	[[ $stderr == *"another client-rebuild is running"* ]]
	place 1 7
	run -75 --separate-stderr bash -c 'outbox-tail --once | client-project'
	[[ $stderr == *"a client-rebuild is running on this read model"* ]]
	rcli del cqrs:rebuild >/dev/null
}

@test "memory does not grow with the number of orders" {
	require_tool /usr/bin/time
	sql "INSERT INTO client (name, email) SELECT 'c' || i, 'c' || i || '@x' FROM generate_series(1, 2000) i"
	sql "INSERT INTO \"order\" (id_client, placement_date) SELECT 1 + i % 2003, 1707484820 FROM generate_series(1, 60000) i"
	sql "INSERT INTO order_item (id_order, id_product, price_when_item_was_ordered, quantity)
		SELECT id, 1, 1500.00, 1 FROM \"order\""
	run -0 --separate-stderr /usr/bin/time -f %M -o rss client-rebuild
	rss_below 12000 rss
	run -0 client-verify -w 0
	[ "$(rcli --scan --pattern 'client:*' | wc -l)" = 2003 ]
}

@test "exit codes: 64 usage, 69 unreachable, 77 without REPLICATION, 78 malformed" {
	run -64 --separate-stderr client-rebuild extra
	run -64 --separate-stderr client-rebuild -s Bad-Name
	run -64 --separate-stderr client-rebuild -w x
	run -0 client-rebuild -h
	[[ ${lines[0]} == "usage: client-rebuild "* ]]
	run -69 --separate-stderr client-rebuild -r redis://127.0.0.1:1
	run -69 --separate-stderr client-rebuild -d 'host=/nonexistent'
	[ "$(rcli exists cqrs:rebuild)" = 0 ]
	sql 'DROP ROLE IF EXISTS norepl; CREATE ROLE norepl LOGIN'
	stack_password norepl
	run -77 --separate-stderr client-rebuild -d 'user=norepl'
	[[ $stderr == *"replication"* ]]
	sql 'DROP ROLE norepl'
	run -78 --separate-stderr client-rebuild -r 'http://x'
	run -78 --separate-stderr client-rebuild -d 'nosuchdb'
}
