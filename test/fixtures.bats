#!/usr/bin/env bats
# fixtures: the bad-input corpus of test/fixtures/<command>/, as data: each case's exit status and message, and nothing changed.
#
# test/fixtures/<command>/EXPECT lists the cases, one line each:
#     <case> <exit status> <extended regex that the whole of stderr must match>
# ('#' lines and blank lines are comments).  A case is the committed file
# test/fixtures/<command>/<case>.in, or one that test/fixtures/generate
# writes in setup_file (binary and huge lines, never committed).  For every
# case, the test checks the exit status, the message, that stdout is empty
# and stderr is one line, and that PostgreSQL and Redis are exactly as
# before; it goes through all cases and then lists every one that failed.

load test_helper
bats_require_minimum_version 1.5.0

FIX=$BATS_TEST_DIRNAME/fixtures

setup_file() {
	stack_setup_file
	"$BATS_TEST_DIRNAME/fixtures/generate" "$BATS_FILE_TMPDIR/fixtures"
}

teardown_file() {
	stack_teardown_file
}

setup() {
	reset_state
	GEN=$BATS_FILE_TMPDIR/fixtures
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	pg_close
}

# pg_open: one psql session for the whole test, as a coprocess, so that
# taking the state after each case costs no new connection; pg_close ends it.
pg_open() {
	coproc PG { exec psql -qXAt -v ON_ERROR_STOP=0 2>&1 3>&-; }
	PG_IN=${PG[1]} PG_OUT=${PG[0]}
}

pg_close() {
	[ -n "${PG_IN:-}" ] || return 0
	eval "exec $PG_IN>&-"
	wait "$PG_PID" 2>/dev/null || true
	PG_IN=
}

# pg QUERY: QUERY's rows (or its error) from the psql coprocess, in PG_ROWS.
pg() {
	local line
	PG_ROWS=
	printf '%s;\n\\echo __end__\n' "$1" >&"$PG_IN"
	while IFS= read -r -t 10 line <&"$PG_OUT"; do
		[ "$line" != __end__ ] || return 0
		PG_ROWS+=$line$'\n'
	done
	echo "pg: psql did not answer within 10 s" >&2
	return 1
}

# Redis's part of the state, in one round trip: DBSIZE, then every key
# (SCAN, sorted) with its type and, for a hash, its fields (HGETALL) sorted.
# Read-only, and without DUMP, whose bytes would change with the encoding.
SNAPSHOT_LUA='
local keys, cursor = {}, "0"
repeat
	local r = redis.call("SCAN", cursor, "COUNT", 1000)
	cursor = r[1]
	for _, k in ipairs(r[2]) do keys[#keys + 1] = k end
until cursor == "0"
table.sort(keys)
local out = { "dbsize " .. redis.call("DBSIZE") }
for _, k in ipairs(keys) do
	local t = redis.call("TYPE", k).ok
	out[#out + 1] = "key " .. k .. " " .. t
	if t == "hash" then
		local h, f = redis.call("HGETALL", k), {}
		for i = 1, #h, 2 do f[#f + 1] = "  " .. h[i] .. "=" .. h[i + 1] end
		table.sort(f)
		for _, x in ipairs(f) do out[#out + 1] = x end
	end
end
return out'

# state: everything a bad line must leave alone, as text in STATE: the row
# counts of every table and the outbox ids, then Redis's DBSIZE and every
# key with its type and fields.  One process: each case takes it once.
state() {
	pg 'SELECT (SELECT count(*) FROM "order"), (SELECT count(*) FROM order_item),
		(SELECT count(*) FROM order_event), (SELECT count(*) FROM client),
		(SELECT count(*) FROM product),
		(SELECT coalesce(string_agg(id::text, $$,$$ ORDER BY id), $$$$) FROM order_event)'
	STATE=$PG_ROWS$(rcli eval "$SNAPSHOT_LUA" 0 </dev/null)
}

# prep COMMAND: the state that COMMAND's cases start from, after reset_state.
prep() {
	case $1 in
	outbox-clean)
		# Rows 1, 2 and 3: every case names row 1, which a bad line must not delete.
		sql "INSERT INTO order_event (id_client, name, email, order_total, event_date)
			SELECT 1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820
			FROM generate_series(1, 3)" >/dev/null
		[ "$(sql 'SELECT string_agg(id::text, $$,$$ ORDER BY id) FROM order_event')" = 1,2,3 ]
		;;
	client-get)
		# Client 1 is there, so that an id misread as 1 would print.
		rcli hset client:1 name Bob email bob@anemailprovider.com total 300000 \
			last_purchase 1707484820 pos 000000000000000001000000000000 >/dev/null
		run -0 client-get 1
		[ "$output" = '{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820,"id_client":1}' ]
		;;
	esac
}

# case_file COMMAND CASE: the case's input, committed or generated, in
# CASE_FILE; exactly one must exist, else CASE_FILE says what is wrong.
case_file() {
	local c=$FIX/$1/$2.in g=$GEN/$1/$2.in
	if [ -e "$c" ] && [ -e "$g" ]; then
		CASE_FILE="both $c and $g exist"
		return 1
	fi
	CASE_FILE=$c
	[ -e "$c" ] && return 0
	CASE_FILE=$g
	[ -e "$g" ] && return 0
	CASE_FILE="no $c, and test/fixtures/generate made no $g"
	return 1
}

# run_cases COMMAND ARGS...: run COMMAND ARGS... on every case of its EXPECT;
# report every failed case, and fail, at the end.
run_cases() {
	local cmd=$1 name code regex before after raw err rc line f had n=0 nbad=0
	local -a expect failures=() names=()
	shift
	prep "$cmd"
	pg_open
	state
	before=$STATE
	mapfile -t expect <"$FIX/$cmd/EXPECT"
	for line in "${expect[@]}"; do
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		read -r name code regex <<<"$line"
		n=$((n + 1))
		if [[ ! $code =~ ^[0-9]+$ ]] || [ -z "$regex" ]; then
			failures+=("$name: bad EXPECT line: $line")
			continue
		fi
		if [[ " ${names[*]} " == *" $name "* ]]; then
			failures+=("$name: listed twice in EXPECT")
			continue
		fi
		names+=("$name")
		if ! case_file "$cmd" "$name"; then
			failures+=("$name: $CASE_FILE")
			continue
		fi

		[ ! -e ack ] || rm ack
		had=${#failures[@]}
		rc=0
		"$cmd" "$@" <"$CASE_FILE" >out 2>err || rc=$?
		state
		after=$STATE
		# All of stderr, its final newline included (no process: this loop is hot).
		raw=
		IFS= read -r -d '' raw <err || true
		err=${raw%$'\n'}

		[ "$rc" -eq "$code" ] ||
			failures+=("$name: exit $rc, want $code; stderr: $err")
		[[ $err =~ $regex ]] ||
			failures+=("$name: stderr does not match /$regex/: $err")
		[[ $raw == *$'\n' && $err != *$'\n'* ]] ||
			failures+=("$name: stderr is not one line: $raw")
		[ ! -s out ] ||
			failures+=("$name: stdout not empty: $(head -c 300 out)")
		[ ! -e ack ] ||
			failures+=("$name: ack file written: $(cat ack)")
		if [ "$after" != "$before" ]; then
			failures+=("$name: state changed:"$'\n'"--- before"$'\n'"$before"$'\n'"--- after"$'\n'"$after")
			# Start the next case from the known state again.
			reset_state
			prep "$cmd"
			state
			after=$STATE
		fi
		before=$after
		[ "${#failures[@]}" -eq "$had" ] || nbad=$((nbad + 1))
	done

	# No case file without its line in EXPECT.
	for f in "$FIX/$cmd"/*.in "$GEN/$cmd"/*.in; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .in)
		[[ " ${names[*]} " == *" $name "* ]] ||
			failures+=("$name: $f is not listed in EXPECT")
	done

	[ "$n" -gt 0 ] || failures+=("EXPECT lists no case")
	if [ "${#failures[@]}" -gt 0 ]; then
		printf '%s: %d of %d cases failed:\n' "$cmd" "$nbad" "$n" >&2
		printf '  %s\n' "${failures[@]}" >&2
		return 1
	fi
}

@test "order-place: every bad order in test/fixtures/order-place is rejected, nothing written" {
	run_cases order-place
}

@test "client-project: every bad event in test/fixtures/client-project is rejected, Redis untouched" {
	run_cases client-project --ack-file ack
}

@test "outbox-clean: every bad event in test/fixtures/outbox-clean is rejected, no row deleted" {
	run_cases outbox-clean --ack-file ack
	[ "$(sql 'SELECT string_agg(id::text, $$,$$ ORDER BY id) FROM order_event')" = 1,2,3 ]
}

@test "client-get: every bad id in test/fixtures/client-get is rejected, nothing printed" {
	run_cases client-get
}

@test "the corpus: committed fixtures are small, the generated ones are there and as large as said" {
	local f big=()
	for f in "$FIX"/*/*.in; do
		[ "$(wc -c <"$f")" -le 4096 ] || big+=("$f")
	done
	[ "${#big[@]}" -eq 0 ] || { printf 'committed fixture over 4 KiB: %s\n' "${big[@]}" >&2; return 1; }
	# The generator writes only cases that EXPECT lists, and none that is committed.
	for f in "$GEN"/*/*.in; do
		[ ! -e "$FIX/${f#"$GEN"/}" ] || { echo "generated and committed: $f" >&2; return 1; }
	done
	# 2 MiB lines: over the 1 MiB limit by far.
	for f in order-place client-project client-get; do
		[ "$(head -n 1 "$GEN/$f/line-2mib.in" | wc -c)" -gt $((2 * 1024 * 1024)) ]
	done
	[ "$(jq '.products | length' "$GEN/order-place/products-1001.in")" = 1001 ]
}
