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
		'eval "$("$0" env)"; printf "%s|" "$PGHOST" "$PGPORT" "$PGDATABASE" "$PGUSER" "$PGPASSFILE" "$REDIS_URL" "$CQRS_STACK_DIR"' \
		"$STACK"
	[ "$output" = "/tmp/a b'c/pg|5432|orders|postgres|/tmp/a b'c/pgpass|unix:///tmp/a b'c/redis/redis.sock|/tmp/a b'c|" ]
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

@test "scram-sha-256, not trust: the superuser's generated password in 0600 files, PGPASSFILE" {
	[ "$(stat -c %a "$CQRS_STACK_DIR/postgres.password")" = 600 ]
	[ "$(stat -c %a "$PGPASSFILE")" = 600 ]
	[ "$(wc -c <"$CQRS_STACK_DIR/postgres.password")" -ge 32 ]
	run -2 --separate-stderr env PGPASSFILE=/nonexistent psql -wX -c 'SELECT 1'
	[[ $stderr == *"no password supplied"* ]]
	[ "$(sql 'SHOW password_encryption')" = scram-sha-256 ]
	[ "$(sql "SELECT string_agg(type || ' ' || array_to_string(database, ',') || ' ' || auth_method, ';' ORDER BY line_number) FROM pg_hba_file_rules")" = "local all scram-sha-256;local replication scram-sha-256" ]
	[ "$(sql "SELECT rolpassword LIKE 'SCRAM-SHA-256\$%' FROM pg_authid WHERE rolname = 'postgres'")" = t ]
}

@test "password ROLE: a generated password in the password file; the role logs in with it" {
	sql 'DROP ROLE IF EXISTS someone; CREATE ROLE someone LOGIN'
	run -2 --separate-stderr psql -wX -U someone -c 'SELECT 1'
	[[ $stderr == *"no password supplied"* ]]
	run -0 --separate-stderr "$STACK" password someone
	[ -z "$output$stderr" ]
	[ "$(psql -wXAt -U someone -c 'SELECT current_user')" = someone ]
	# Again: a new one replaces the old line.
	run -0 "$STACK" password someone
	[ "$(grep -c ':someone:' "$PGPASSFILE")" = 1 ]
	[ "$(psql -wXAt -U someone -c 'SELECT current_user')" = someone ]
	[ "$(stat -c %a "$PGPASSFILE")" = 600 ]
	# The superuser's too: both files follow.
	run -0 "$STACK" password postgres
	[ "$(grep -c ':postgres:' "$PGPASSFILE")" = 1 ]
	[[ $(cat "$PGPASSFILE") == *":postgres:$(cat "$CQRS_STACK_DIR/postgres.password")"* ]]
	[ "$(sql 'SELECT 1')" = 1 ]
	run -1 --separate-stderr "$STACK" password nosuchrole
	[[ $stderr == *"no role nosuchrole"* ]]
	run -1 --separate-stderr "$STACK" password 'x;y'
	run -64 --separate-stderr "$STACK" password
	sql 'DROP ROLE someone'
}

@test "the sockets and their directories are the owner's only" {
	real=$(readlink -f "$PGHOST")
	[ "$(stat -c %a "$real")" = 700 ]
	[ "$(stat -c %a "$real/.s.PGSQL.5432")" = 700 ]
	[ "$(stat -c %a "$CQRS_STACK_DIR/redis")" = 700 ]
	[ "$(stat -c %a "$CQRS_STACK_DIR/redis/redis.sock")" = 700 ]
	if [ "$(id -u)" -eq 0 ]; then
		[ "$(stat -c %U "$real")" = postgres ]
		[[ $real == /var/lib/cqrs-pipes/* ]]
	else
		[ "$real" = "$CQRS_STACK_DIR/pg" ]
		[ "$(stat -c %U "$real")" = "$(id -un)" ]
	fi
}

@test "as root, a stack under a directory postgres cannot traverse works; destroy removes its /var/lib part" {
	[ "$(id -u)" -eq 0 ] || skip "only root runs PostgreSQL through runuser"
	dir=$(mktemp -d /tmp/cqrs-priv.XXXXXX)	# mode 700, as /root
	export CQRS_STACK_DIR=$dir/s
	run -0 "$STACK" up
	real=$(readlink "$dir/s/pg")
	[[ $real == /var/lib/cqrs-pipes/* ]]
	[ "$(stat -c '%U %a' "$real")" = "postgres 700" ]
	[ "$(stat -c %a "$dir/s")" = 700 ]
	eval "$("$STACK" env)"
	[ "$(psql -wXAt -c 'SELECT count(*) FROM product')" = 3 ]
	run -0 "$STACK" crash pg
	run -1 "$STACK" status
	run -0 "$STACK" up
	[ "$(psql -wXAt -c 'SELECT count(*) FROM client')" = 3 ]
	run -0 "$STACK" destroy
	[ ! -e "$dir/s" ]
	[ ! -e "$real" ]
	# Removed without destroy, while running: up makes a new one, destroy removes it.
	run -0 "$STACK" up
	real=$(readlink "$dir/s/pg")
	"$STACK" down
	rm -rf "$dir/s"
	run -0 --separate-stderr "$STACK" up
	[[ $stderr == *"removing $real, left by an earlier stack"* ]]
	[ "$(psql -wXAt -c 'SELECT count(*) FROM product')" = 3 ]
	run -0 "$STACK" destroy
	[ ! -e "$real" ]
	rm -r "$dir"
}
