#!/usr/bin/env bats
# stack.bats: scripts/stack starts, reports and stops a private PostgreSQL and Redis.

bats_require_minimum_version 1.5.0
load test_helper

setup_file() {
	stack_setup_file
}

teardown_file() {
	stack_teardown_file
}

setup() {
	STACK=$CQRS_REPO/scripts/stack
	"$STACK" up	# a test may have brought it down
}

@test "up twice is fine" {
	run -0 "$STACK" up
	run -0 "$STACK" up
}

@test "status exits 0 while both servers run" {
	run -0 --separate-stderr "$STACK" status
	[[ $output == *"postgresql: running"* ]]
	[[ $output == *"redis: running"* ]]
}

@test "schema and seed are loaded, wal_level is logical" {
	[ "$(sql 'SELECT count(*) FROM product')" = 3 ]
	[ "$(sql 'SELECT count(*) FROM client')" = 3 ]
	[ "$(sql "SELECT name || ' ' || price FROM product WHERE id = 1")" = "Computer 1500.00" ]
	[ "$(sql "SELECT email FROM client WHERE id = 2")" = alice@anemailprovider.com ]
	[ "$(sql 'SELECT count(*) FROM "order", order_item, order_event')" = 0 ]
	[ "$(sql "SELECT nextval('client_id_seq')")" = 4 ]
	[ "$(sql 'SHOW wal_level')" = logical ]
}

@test "redis appends every write to its log" {
	[ "$(rcli config get appendonly | tail -n 1)" = yes ]
	[ "$(rcli config get appendfsync | tail -n 1)" = always ]
}

@test "down twice is fine, then status exits 1, and up keeps the data" {
	sql "INSERT INTO client (name, email) VALUES ('Eve', 'eve@example.com')"
	run -0 "$STACK" down
	run -0 "$STACK" down
	run -1 --separate-stderr "$STACK" status
	[[ $output == *"postgresql: stopped"* ]]
	[[ $output == *"redis: stopped"* ]]
	run -0 "$STACK" up
	[ "$(sql "SELECT count(*) FROM client WHERE name = 'Eve'")" = 1 ]
}

@test "env output evals, also with spaces and quotes in the path" {
	run -0 env -i PATH="$PATH" CQRS_STACK_DIR="/tmp/a b'c" bash -c \
		'eval "$("$0" env)"; printf "%s|" "$PGHOST" "$PGPORT" "$PGDATABASE" "$PGUSER" "$REDIS_URL" "$CQRS_STACK_DIR"' \
		"$STACK"
	[ "$output" = "/tmp/a b'c/pg|5432|orders|postgres|unix:///tmp/a b'c/redis/redis.sock|/tmp/a b'c|" ]
	run -0 env CQRS_STACK_DIR="/tmp/a b'c" sh -c \
		'eval "$("$0" env)"; [ "$CQRS_STACK_DIR" = "/tmp/a b'\''c" ]' "$STACK"
}

@test "reset_state restores seed data and drops publications, slots and redis keys" {
	sql "INSERT INTO product (name, price) VALUES ('Radio', 20)"
	sql 'CREATE PUBLICATION p FOR TABLE order_event'
	sql "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"
	rcli set k v
	reset_state
	[ "$(sql 'SELECT count(*) FROM product')" = 3 ]
	[ "$(sql 'SELECT count(*) FROM pg_publication')" = 0 ]
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots')" = 0 ]
	[ "$(rcli dbsize)" = 0 ]
}

@test "a socket path over 107 bytes fails clearly" {
	long=/tmp/$(printf '%0100d' 0)
	run -1 --separate-stderr env CQRS_STACK_DIR="$long" "$STACK" up
	[[ $stderr == *"socket path too long"* ]]
	[ ! -e "$long" ]
}

@test "destroy refuses a directory that stack up did not make" {
	dir=$(mktemp -d)
	touch "$dir/keep"
	run -1 --separate-stderr env CQRS_STACK_DIR="$dir" "$STACK" destroy
	[[ $stderr == *"not made by stack up"* ]]
	[ -e "$dir/keep" ]
	rm -r "$dir"
}

@test "as root, a directory the postgres user cannot traverse is named" {
	[ "$(id -u)" -eq 0 ] || skip "only root runs PostgreSQL through runuser"
	dir=$(mktemp -d /tmp/cqrs-priv.XXXXXX)	# mode 700
	run -1 --separate-stderr env CQRS_STACK_DIR="$dir/s" "$STACK" up
	[[ $stderr == *"user postgres cannot traverse $dir "* ]]
	rm -r "$dir"
}
