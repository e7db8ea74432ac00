#!/usr/bin/env bats
# client-get.bats: the read model of clients, from Redis hashes to JSON lines.

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
	SOCK=$CQRS_STACK_DIR/redis/redis.sock
	BOB='{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820,"id_client":1}'
	ALICE='{"name":"Alice","email":"alice@anemailprovider.com","total":12.5,"last_purchase":1707484900,"id_client":2}'
	JOHN='{"name":"John","email":"john@anemailprovider.com","total":0.25,"last_purchase":1707485000,"id_client":3}'
	put 1 Bob bob@anemailprovider.com 300000 1707484820
	put 2 Alice alice@anemailprovider.com 1250 1707484900
	put 3 John john@anemailprovider.com 25 1707485000
}

teardown() {
	if [ -n "${PASSWORD_SET:-}" ]; then
		rcli --no-auth-warning -a s3cret CONFIG SET requirepass '' >/dev/null
	fi
}

# put ID NAME EMAIL TOTAL_CENTS LAST_PURCHASE [REDIS-CLI OPTIONS]: write one client's read model.
put() {
	rcli "${@:6}" HSET "client:$1" name "$2" email "$3" total "$4" last_purchase "$5" pos 000000000000242174000000000000 >/dev/null
}

@test "client-get 1 prints Bob's read model" {
	run -0 --separate-stderr client-get 1
	[ "$output" = "$BOB" ]
	[ -z "$stderr" ]
}

@test "totals are cents as a number with at most two decimals" {
	for t in 1250:12.5 25:0.25 0:0.0 5:0.05 100:1.0 123456789012:1234567890.12 300000:3000.0 99:0.99; do
		put 7 N e "${t%%:*}" 1
		run -0 --separate-stderr client-get 7
		[ "$output" = "{\"name\":\"N\",\"email\":\"e\",\"total\":${t#*:},\"last_purchase\":1,\"id_client\":7}" ] ||
			{ echo "total ${t%%:*}: $output" >&2; return 1; }
	done
}

@test "quotes, backslashes, control characters and unicode make valid JSON" {
	name='Zoë "the \ one" 😀 ☃'
	email=$'tab\there\nnewline'
	put 5 "$name" "$email" 1 2
	run -0 --separate-stderr client-get 5
	[ "${#lines[@]}" -eq 1 ]
	run -0 jq -e --arg n "$name" --arg e "$email" '.name == $n and .email == $e and .total == 0.01' <<<"$output"
}

@test "bytes that are not UTF-8 become U+FFFD" {
	put 5 $'Zo\xff\xfe' e 1 2
	run -0 --separate-stderr client-get 5
	run -0 jq -e '.name == "Zo\ufffd\ufffd"' <<<"$output"
}

@test "a key that is not a hash: exit 70" {
	rcli SET client:6 Bob >/dev/null
	run -70 --separate-stderr client-get 6
	[ -z "$output" ]
	[[ $stderr == "client-get: "*WRONGTYPE* ]]
}

@test "several ids print in operand order" {
	run -0 --separate-stderr client-get 3 1 2 1
	[ "$output" = "$JOHN
$BOB
$ALICE
$BOB" ]
}

@test "300 ids (more than one pipelined batch) print in operand order" {
	for i in $(seq 10 309); do
		echo "HSET client:$i name n$i email e$i total $i last_purchase $i"
	done | rcli >/dev/null
	ids=$(seq 309 -1 10)
	run -0 --separate-stderr client-get $ids
	[ "${#lines[@]}" -eq 300 ]
	[ "$(jq -r .name <<<"$output" | paste -sd' ')" = "$(printf 'n%s\n' $ids | paste -sd' ')" ]
}

@test "ids from stdin, one per line, when there is no operand" {
	run -0 --separate-stderr client-get < <(printf '2\n3\n1')	# the last line without a newline
	[ "$output" = "$ALICE
$JOHN
$BOB" ]
	[ -z "$stderr" ]
}

@test "unknown client: not found on stderr, the others printed, exit 1" {
	run -1 --separate-stderr client-get 1 42 2
	[ "$output" = "$BOB
$ALICE" ]
	[ "$stderr" = "client-get: client 42: not found" ]
	run -1 --separate-stderr client-get < <(printf '42\n3\n')
	[ "$output" = "$JOHN" ]
	[ "$stderr" = "client-get: client 42: not found" ]
}

@test "malformed ids: exit 65 naming the id, the valid ones printed" {
	for bad in x -1 0 01 1.5 '' 99999999999 2147483648 ' 1' 1x; do
		run -65 --separate-stderr client-get -- 1 "$bad" 2
		[ "$output" = "$BOB
$ALICE" ] || { echo "id '$bad': $output" >&2; return 1; }
		[ "${#stderr_lines[@]}" -eq 1 ]
		[ "$stderr" = "client-get: bad client id \"$bad\" (want a positive integer)" ] || { echo "id '$bad': $stderr" >&2; return 1; }
	done
}

@test "malformed ids on stdin: exit 65 naming stdin:LINE and the value, the valid ones printed; blank lines skipped, CRLF accepted" {
	run -65 --separate-stderr client-get < <(printf '1\n\nx\n2\n0\n3\r\n01\n \t\n"1"\n')
	[ "$output" = "$BOB
$ALICE
$JOHN" ]
	[ "${#stderr_lines[@]}" -eq 4 ]
	[ "${stderr_lines[0]}" = 'client-get: stdin:3: bad client id "x" (want a positive integer)' ]
	[ "${stderr_lines[1]}" = 'client-get: stdin:5: bad client id "0" (want a positive integer)' ]
	[ "${stderr_lines[2]}" = 'client-get: stdin:7: bad client id "01" (want a positive integer)' ]
	[ "${stderr_lines[3]}" = 'client-get: stdin:9: bad client id "\"1\"" (want a positive integer)' ]
	# A long value is cut; control characters are escaped.
	run -65 --separate-stderr client-get -- "$(printf 'x%.0s' $(seq 100))" $'a\tb'
	[ "${stderr_lines[0]}" = "client-get: bad client id \"$(printf 'x%.0s' $(seq 64))\"... (want a positive integer)" ]
	[ "${stderr_lines[1]}" = 'client-get: bad client id "a\tb" (want a positive integer)' ]
}

@test "--all: every client of the read model, by id, other keys left out" {
	put 12 Zed zed@example.com 100 1700000000
	put 100 Cent c@example.com 1 1
	rcli set client:1:seen x >/dev/null
	rcli set clients x >/dev/null
	rcli hset client:007 name X email x total 1 last_purchase 1 >/dev/null
	run -0 --separate-stderr client-get --all
	[ "$(jq -c .id_client <<<"$output" | paste -sd' ')" = "1 2 3 12 100" ] || { echo "$output $stderr" >&2; return 1; }
	[ "${lines[0]}" = "$BOB" ]
	[ -z "$stderr" ]
	# Many clients: more than one SCAN step and one pipelined batch.
	for i in $(seq 1000 1599); do echo "HSET client:$i name n$i email e total $i last_purchase $i"; done | rcli >/dev/null
	run -0 --separate-stderr client-get --all
	[ "${#lines[@]}" -eq 605 ]
	[ "$(jq -r .id_client <<<"$output" | sort -n | paste -sd' ')" = "$(jq -r .id_client <<<"$output" | paste -sd' ')" ]
	# An empty read model: nothing, exit 0.
	rcli flushall >/dev/null
	run -0 --separate-stderr client-get --all
	[ -z "$output" ]
	# Not with ids.
	run -64 --separate-stderr client-get --all 1
}

@test "--all: an incomplete read model is 65, the others printed" {
	rcli HSET client:4 name Eve >/dev/null
	run -65 --separate-stderr client-get --all
	[ "$output" = "$BOB
$ALICE
$JOHN" ]
	[ "$stderr" = "client-get: client 4: incomplete read model (field email missing)" ]
}

@test "SIGINT while reading ids: client-get dies by the signal (130)" {
	cd "$BATS_TEST_TMPDIR"
	mkfifo in
	client-get <in >out 2>err 3>&- &
	pid=$!
	exec 4>in
	echo 1 >&4
	for i in $(seq 100); do [ -s out ] && break; sleep 0.1; done
	[ "$(cat out)" = "$BOB" ]
	kill -INT "$pid"
	rc=0
	wait "$pid" || rc=$?
	exec 4>&-
	[ "$rc" -eq 130 ]
}

@test "a bad id and an unknown one: the bad data wins, exit 65" {
	run -65 --separate-stderr client-get -- 42 x 1
	[ "$output" = "$BOB" ]
	[[ $stderr == *"client 42: not found"* ]]
}

@test "an incomplete hash: exit 65, the others printed" {
	rcli HSET client:4 name Eve >/dev/null
	run -65 --separate-stderr client-get 1 4 2
	[ "$output" = "$BOB
$ALICE" ]
	[[ $stderr == "client-get: client 4: "* ]]
	rcli HSET client:4 email eve@example.com total 100 >/dev/null
	run -65 --separate-stderr client-get 4
	[ -z "$output" ]
	[[ $stderr == *last_purchase* ]]
}

@test "a non-numeric total or last_purchase is bad data, never an invalid line" {
	for bad in 'abc 1707484820' '100 x"y' '12.5 1707484820' '100 1e3'; do
		put 4 Eve eve@example.com $bad
		run --separate-stderr client-get 4
		echo "total, last_purchase = $bad: exit $status, stdout: $output" >&2
		[ "$status" -eq 65 ]
		[ -z "$output" ]
		[[ $stderr == "client-get: client 4: "* ]]
	done
}

@test "-r overrides REDIS_URL" {
	run -0 --separate-stderr env REDIS_URL=redis://127.0.0.1:1 client-get -r "unix://$SOCK" 1
	[ "$output" = "$BOB" ]
	run -69 --separate-stderr client-get -r redis://127.0.0.1:1 1
	[ -z "$output" ]
}

@test "REDIS_URL with a database number" {
	put 8 Dee dee@example.com 4200 1700000000 -n 2
	run -0 --separate-stderr env REDIS_URL="unix://$SOCK?db=2" client-get 8
	[ "$output" = '{"name":"Dee","email":"dee@example.com","total":42.0,"last_purchase":1700000000,"id_client":8}' ]
	run -1 --separate-stderr env REDIS_URL="unix://$SOCK?db=2" client-get 1
	run -1 --separate-stderr client-get 8
}

@test "Redis down: exit 69" {
	run -69 --separate-stderr env REDIS_URL=unix:///nonexistent.sock client-get 1
	[ -z "$output" ]
	[[ $stderr == "client-get: "*"/nonexistent.sock"* ]]
	run -69 --separate-stderr env REDIS_URL=redis://127.0.0.1:1 client-get 1
	[ -z "$output" ]
	[[ $stderr == "client-get: "*"127.0.0.1:1"* ]]
}

@test "a malformed URL: exit 78" {
	for url in http://x redis://host:99999 "unix://$SOCK?db=x" redis://host/x; do
		run -78 --separate-stderr env REDIS_URL="$url" client-get 1
		[ -z "$output" ]
		[[ $stderr == "client-get: "* ]]
	done
}

@test "password: none or wrong gives 77, the right one 0, never echoed" {
	rcli CONFIG SET requirepass s3cret >/dev/null
	PASSWORD_SET=1
	run -77 --separate-stderr client-get 1
	[ -z "$output" ]
	run -77 --separate-stderr client-get -r "unix://:wrong@$SOCK" 1
	[ -z "$output" ]
	[[ $stderr != *wrong* ]]
	run -0 --separate-stderr client-get -r "unix://:s3cret@$SOCK" 1
	[ "$output" = "$BOB" ]
	[ -z "$stderr" ]
}

@test "-h: help on stdout, exit 0; a usage error prints the man page's SYNOPSIS on stderr, exit 64" {
	run -0 --separate-stderr client-get -h
	[ -z "$stderr" ]
	[[ ${lines[0]} == "usage: client-get "* ]]
	[[ $output == *"--all"* ]]
	run -64 --separate-stderr client-get --all 1
	[ -z "$output" ]
	require_tool mandoc
	[ "$(tr -s ' \n' '  ' <<<"$stderr" | sed 's/ $//')" = "usage: $(synopsis client-get)" ]
}

@test "an unknown option: exit 64" {
	run -64 --separate-stderr client-get -z 1
	[ -z "$output" ]
	[[ $stderr == *"usage: client-get"* ]]
}

@test "-V: a version line, exit 0" {
	run -0 --separate-stderr client-get -V
	[[ $output =~ ^client-get\ .*[0-9]+\.[0-9]+ ]]
	[ "${#lines[@]}" -eq 1 ]
}

@test "stdout to /dev/full: exit 74" {
	run -74 --separate-stderr bash -c 'client-get 1 >/dev/full'
	[[ $stderr == "client-get: stdout: "* ]]
}
