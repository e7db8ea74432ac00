#!/usr/bin/env bats
# client-verify: the read model against the order tables; one line per client that differs.

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
	SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
}

@test "a read model equal to the order tables: exit 0, nothing printed" {
	run -0 --separate-stderr client-verify -w 0
	[ -z "$output" ]
	echo "$SAMPLE" | order-place >/dev/null
	run -0 client-rebuild
	run -0 --separate-stderr client-verify -v -w 0
	[ -z "$output" ]
	[ "$stderr" = "client-verify: 1 clients with orders compared, 0 differ" ]
}

@test "every client that differs, is missing or has no order: one line each, exit 1" {
	echo "$SAMPLE" | order-place >/dev/null
	echo '{"id_client":2,"products":[{"id_product":3,"quantity":1}]}' | order-place >/dev/null
	run -0 client-rebuild
	date=$(sql 'SELECT placement_date FROM "order" WHERE id = 1')
	rcli hset client:1 total 299999 >/dev/null
	rcli del client:2 >/dev/null
	rcli hset client:7 name Ghost email g total 100 last_purchase 1 >/dev/null
	rcli set client:3 notahash >/dev/null
	run -1 --separate-stderr client-verify -w 0
	[ "${#lines[@]}" = 4 ]
	[ "${lines[0]}" = '{"id":1,"want":{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":'"$date"'},"got":{"name":"Bob","email":"bob@anemailprovider.com","total":2999.99,"last_purchase":'"$date"'}}' ]
	[[ ${lines[1]} == '{"id":2,"want":{"name":"Alice",'*'"got":null}' ]]
	[ "${lines[2]}" = '{"id":3,"want":null,"got":"malformed"}' ]
	[ "${lines[3]}" = '{"id":7,"want":null,"got":{"name":"Ghost","email":"g","total":1.0,"last_purchase":1}}' ]
}

@test "-w: a client that converges while it waits is not reported" {
	echo "$SAMPLE" | order-place >/dev/null
	run -0 client-rebuild
	rcli hset client:1 total 1 >/dev/null
	( sleep 1; rcli hset client:1 total 300000 >/dev/null ) &
	run -0 --separate-stderr client-verify -w 20
	[ -z "$output" ]
	wait
	rcli hset client:1 total 1 >/dev/null
	run -1 --separate-stderr client-verify -w 0.3
	[ "${#lines[@]}" = 1 ]
}

@test "exit codes: 64 usage, 69 unreachable, 78 malformed" {
	run -64 --separate-stderr client-verify extra
	run -64 --separate-stderr client-verify -w -1
	run -0 client-verify --help
	[[ ${lines[0]} == "usage: client-verify "* ]]
	run -69 --separate-stderr client-verify -r redis://127.0.0.1:1
	run -69 --separate-stderr client-verify -d 'host=/nonexistent'
	run -78 --separate-stderr client-verify -r 'http://x'
	run -78 --separate-stderr client-verify -d nosuchdb
}
