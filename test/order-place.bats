#!/usr/bin/env bats
# order-place.bats: orders from JSON lines into PostgreSQL, one transaction with its outbox row each.

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
	IN=$BATS_TEST_TMPDIR/in
	P1='{"id_product":1,"quantity":1}'
	GOOD='{"id_client":1,"products":[{"id_product":1,"quantity":1}]}'
	SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
}

teardown() {
	# A test that started a lock holder or a role cleans up even when it failed.
	if [ -n "${LOCKER_PID:-}" ]; then
		sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'op-locker'" >/dev/null || true
		wait "$LOCKER_PID" 2>/dev/null || true
	fi
	if [ -n "${LOWPRIV:-}" ]; then
		sql "DROP OWNED BY lowpriv; DROP ROLE IF EXISTS lowpriv" >/dev/null || true
	fi
	if [ -n "${BG_PID:-}" ] && kill -0 "$BG_PID" 2>/dev/null; then
		kill "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
}

# counts: the row counts of every table, one line.
counts() {
	sql 'SELECT (SELECT count(*) FROM "order"), (SELECT count(*) FROM order_item),
		(SELECT count(*) FROM order_event), (SELECT count(*) FROM client), (SELECT count(*) FROM product)'
}

# lines ARGS...: write each argument as one line of $IN.
lines() {
	printf '%s\n' "$@" >"$IN"
}

# reject LABEL PATTERN...: order-place < $IN exits 65, prints nothing, says on
# one stderr line where and what (each PATTERN is a substring), and leaves the
# row counts at $BEFORE.
reject() {
	local label=$1 p
	shift
	run --separate-stderr order-place <"$IN"
	if [ "$status" -ne 65 ] || [ -n "$output" ] || [ "${#stderr_lines[@]}" -ne 1 ] ||
		[[ $stderr != "order-place: "* ]]; then
		printf '%s: exit %s, stdout: %s, stderr: %s\n' "$label" "$status" "$output" "$stderr" >&2
		return 1
	fi
	for p in "$@"; do
		[[ $stderr == *"$p"* ]] || { echo "$label: stderr lacks '$p': $stderr" >&2; return 1; }
	done
	assert_unchanged "$label"
}

# assert_unchanged [LABEL]: every table has the row counts that $BEFORE (from counts) recorded.
assert_unchanged() {
	local now
	now=$(counts)
	[ "$now" = "$BEFORE" ] || { echo "${1:-}: row counts changed: $BEFORE -> $now" >&2; return 1; }
}

# wait_until CMD: poll CMD (eval'd) for up to 10 s.
wait_until() {
	local i
	for i in $(seq 100); do
		eval "$1" && return 0
		sleep 0.1
	done
	echo "wait_until: timed out: $1" >&2
	return 1
}

# wait_exit PID: wait up to 10 s for PID to end; its status in $BG_RC.
wait_exit() {
	wait_until "! kill -0 $1 2>/dev/null"
	BG_RC=0
	wait "$1" || BG_RC=$?
}

# pad_line LEN: an otherwise valid order padded with spaces to LEN bytes (newline not counted).
pad_line() {
	local head='{"id_client":1,' tail='"products":[{"id_product":1,"quantity":1}]}'
	printf %s "$head"
	head -c $(($1 - ${#head} - ${#tail})) /dev/zero | tr '\0' ' '
	printf '%s\n' "$tail"
}

@test "the AWS sample order for Bob: one order, two items, one outbox row, one line" {
	# Ids far from 1 and from each other: the line cannot be right by accident.
	sql "SELECT setval('order_id_seq', 41), setval('order_event_id_seq', 99)" >/dev/null
	now=$(date +%s)
	lines "$SAMPLE"
	run -0 --separate-stderr order-place <"$IN"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	line=$output

	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	read -r id_order id_client pdate < <(sql 'SELECT id, id_client, placement_date FROM "order"' | tr '|' ' ')
	[ "$id_order" = 42 ]
	[ "$id_client" = 1 ]
	[ $((pdate - now)) -ge -5 ]
	[ $((pdate - now)) -le 5 ]

	run -0 sql "SELECT id_order, id_product, price_when_item_was_ordered, quantity FROM order_item ORDER BY id"
	[ "$output" = "42|1|1500.00|1
42|2|500.00|3" ]

	run -0 sql 'SELECT id, id_client, name, email, order_total, event_date FROM order_event'
	[ "$output" = "100|1|Bob|bob@anemailprovider.com|3000.00|$pdate" ]

	# The line's fields equal the rows, as JSON numbers.
	run -0 jq -r '[.id_order, .id_client, .order_total, .placement_date, .id_event] | map(type) | unique | .[]' <<<"$line"
	[ "$output" = number ]
	run -0 jq -r '[.id_order, .id_client, .order_total, .placement_date, .id_event] | @tsv' <<<"$line"
	[ "$output" = "$(printf '42\t1\t3000\t%s\t100' "$pdate")" ]
}

@test "ids of 10 and more work (the AWS sample broke on them)" {
	sql "INSERT INTO client (id, name, email) VALUES (12, 'Zoë', 'zoe@example.com')"
	sql "INSERT INTO product (id, name, price) VALUES (15, 'Radio', 12.34)"
	lines '{"id_client":12,"products":[{"id_product":15,"quantity":12},{"id_product":1,"quantity":10}]}'
	run -0 --separate-stderr order-place <"$IN"
	[ -z "$stderr" ]
	line=$output
	[ "$(sql 'SELECT id_client FROM "order"')" = 12 ]
	run -0 sql 'SELECT id_product, price_when_item_was_ordered, quantity FROM order_item ORDER BY id'
	[ "$output" = "15|12.34|12
1|1500.00|10" ]
	run -0 sql 'SELECT id_client, name, email, order_total FROM order_event'
	[ "$output" = "12|Zoë|zoe@example.com|15148.08" ]
	run -0 jq -e '.id_client == 12 and .order_total == 15148.08' <<<"$line"
	[ "$(jq .id_order <<<"$line")" = "$(sql 'SELECT id FROM "order"')" ]
}

@test "a repeated product gives two item rows and the right total" {
	lines '{"id_client":2,"products":[{"id_product":3,"quantity":2},{"id_product":3,"quantity":5}]}'
	run -0 --separate-stderr order-place <"$IN"
	[ -z "$stderr" ]
	run -0 sql 'SELECT id_product, price_when_item_was_ordered, quantity FROM order_item ORDER BY id'
	[ "$output" = "3|1000.00|2
3|1000.00|5" ]
	[ "$(sql 'SELECT name || $$ $$ || order_total FROM order_event')" = "Alice 7000.00" ]
}

@test "items are taken at the current price" {
	sql 'UPDATE product SET price = 1234.56 WHERE id = 1'
	lines "$SAMPLE"
	run -0 --separate-stderr order-place <"$IN"
	run -0 jq -e '.order_total == 2734.56' <<<"$output"
	[ "$(sql 'SELECT price_when_item_was_ordered FROM order_item WHERE id_product = 1')" = 1234.56 ]
	[ "$(sql 'SELECT order_total FROM order_event')" = 2734.56 ]
}

# Rejections: exit 65, nothing written, "stdin:1" and the field named.
# Each case is "reject LABEL PATTERN..." on the line in $IN.

@test "reject: bad id_client (missing, string, 0, -1, 1.5, 2^31, unknown 42)" {
	BEFORE=$(counts)
	lines "{\"products\":[$P1]}"
	reject missing "stdin:1: id_client"
	lines "{\"id_client\":\"1\",\"products\":[$P1]}"
	reject string "stdin:1: id_client"
	lines "{\"id_client\":0,\"products\":[$P1]}"
	reject zero "stdin:1: id_client"
	lines "{\"id_client\":-1,\"products\":[$P1]}"
	reject negative "stdin:1: id_client"
	lines "{\"id_client\":1.5,\"products\":[$P1]}"
	reject float "stdin:1: id_client"
	lines "{\"id_client\":2147483648,\"products\":[$P1]}"
	reject '2^31' "stdin:1: id_client" 2147483648
	lines "{\"id_client\":42,\"products\":[$P1]}"
	reject 'unknown 42' "stdin:1: id_client" 42
}

@test "reject: bad products (missing, not an array, empty, 1001 entries, entry not an object)" {
	BEFORE=$(counts)
	lines '{"id_client":1}'
	reject missing "stdin:1: products"
	lines "{\"id_client\":1,\"products\":$P1}"
	reject 'not an array' "stdin:1: products"
	lines '{"id_client":1,"products":[]}'
	reject empty "stdin:1: products"
	jq -cn '{id_client:1, products:[range(1001) | {id_product:2, quantity:1}]}' >"$IN"
	reject '1001 entries' "stdin:1: products"
	lines "{\"id_client\":1,\"products\":[$P1,\"x\"]}"
	reject 'entry not an object' "stdin:1: products[1]"
	# The limit itself passes.
	jq -cn '{id_client:1, products:[range(1000) | {id_product:2, quantity:1}]}' >"$IN"
	run -0 --separate-stderr order-place <"$IN"
	[ "$(sql 'SELECT count(*) || $$ $$ || sum(quantity) FROM order_item')" = "1000 1000" ]
	[ "$(sql 'SELECT order_total FROM order_event')" = 500000.00 ]
}

@test "reject: bad id_product (missing, string, 0, unknown 9)" {
	BEFORE=$(counts)
	lines '{"id_client":1,"products":[{"quantity":1}]}'
	reject missing "stdin:1: products[0].id_product"
	lines '{"id_client":1,"products":[{"id_product":"1","quantity":1}]}'
	reject string "stdin:1: products[0].id_product"
	lines "{\"id_client\":1,\"products\":[$P1,{\"id_product\":0,\"quantity\":1}]}"
	reject zero "stdin:1: products[1].id_product"
	lines "{\"id_client\":1,\"products\":[$P1,{\"id_product\":9,\"quantity\":1}]}"
	reject 'unknown 9' "stdin:1: products[1]" 9
}

@test "reject: bad quantity (0, -1, 1000001, \"3\", 1.5, missing)" {
	BEFORE=$(counts)
	lines "{\"id_client\":1,\"products\":[$P1,{\"id_product\":2,\"quantity\":0}]}"
	reject zero "stdin:1: products[1].quantity"
	lines '{"id_client":1,"products":[{"id_product":2,"quantity":-1}]}'
	reject negative "stdin:1: products[0].quantity"
	lines '{"id_client":1,"products":[{"id_product":2,"quantity":1000001}]}'
	reject 1000001 "stdin:1: products[0].quantity"
	lines '{"id_client":1,"products":[{"id_product":2,"quantity":"3"}]}'
	reject string "stdin:1: products[0].quantity"
	lines '{"id_client":1,"products":[{"id_product":2,"quantity":1.5}]}'
	reject float "stdin:1: products[0].quantity"
	lines '{"id_client":1,"products":[{"id_product":2}]}'
	reject missing "stdin:1: products[0].quantity"
	# The limit itself passes.
	lines '{"id_client":1,"products":[{"id_product":2,"quantity":1000000}]}'
	run -0 --separate-stderr order-place <"$IN"
	[ "$(sql 'SELECT order_total FROM order_event')" = 500000000.00 ]
}

@test "reject: unknown keys, and a total beyond numeric(14,2)" {
	BEFORE=$(counts)
	lines "{\"id_client\":1,\"products\":[$P1],\"coupon\":\"FREE\"}"
	reject 'top-level key' "stdin:1: coupon"
	lines '{"id_client":1,"products":[{"id_product":1,"quantity":1,"price":0}]}'
	reject 'entry key' "stdin:1: products[0].price"
	jq -cn '{id_client:1, products:[range(1000) | {id_product:1, quantity:1000000}]}' >"$IN"
	reject 'total out of range' "stdin:1: order_total"
}

@test "reject: malformed lines (JSON, duplicate key, UTF-8, NUL, 2 MiB, array)" {
	BEFORE=$(counts)
	lines '{"id_client":1,"products":[{"id_product":1,'
	reject 'malformed JSON' "stdin:1: "
	lines "{\"id_client\":1,\"id_client\":2,\"products\":[$P1]}"
	reject 'duplicate key' "stdin:1: " id_client
	printf '{"id_client":1,"products":[%s],"\xff":1}\n' "$P1" >"$IN"
	reject 'invalid UTF-8 in a key' "stdin:1: "
	printf '\xff\n' >"$IN"
	reject 'a lone 0xff' "stdin:1: "
	printf '{"id_client":1,\0"products":[%s]}\n' "$P1" >"$IN"
	reject 'NUL byte' "stdin:1: "
	pad_line $((2 * 1024 * 1024)) >"$IN"
	reject '2 MiB line' "stdin:1: "
	lines "[$GOOD]"
	reject 'array' "stdin:1: "
}

@test "line limit: 1 MiB passes, longer lines are rejected" {
	pad_line $((1024 * 1024 - 1)) >"$IN"	# 1 MiB with its newline
	run -0 --separate-stderr order-place <"$IN"
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	BEFORE=$(counts)
	pad_line $((1024 * 1024 + 1)) >"$IN"
	reject '1 MiB + 1 byte' "stdin:1: "
	pad_line $((1024 * 1024 + 60000)) >"$IN"
	reject '1 MiB + 60000 bytes' "stdin:1: "
}

@test "with -k, the line after an over-long line is read as the next line" {
	{ pad_line $((2 * 1024 * 1024)); echo '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}'; echo "$GOOD"; } >"$IN"
	run -65 --separate-stderr order-place -k <"$IN"
	[ "${#lines[@]}" -eq 1 ]
	[ "${#stderr_lines[@]}" -eq 2 ]
	[[ ${stderr_lines[0]} == "order-place: stdin:1: "* ]]
	[[ ${stderr_lines[1]} == "order-place: stdin:2: "*42* ]]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
}

@test "stops at the first bad order: good, bad, good" {
	lines "$GOOD" '{"id_client":1,"products":[]}' "$SAMPLE"
	run -65 --separate-stderr order-place <"$IN"
	[ "${#lines[@]}" -eq 1 ]
	[[ $stderr == "order-place: stdin:2: products"* ]]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	id=$(jq -r .id_order <<<"${lines[0]}")
	[ "$(sql "SELECT count(*) FROM \"order\" o JOIN order_event e USING (id_client) WHERE o.id = $id AND e.order_total = 1500")" = 1 ]
}

@test "stops at the first order the database rejects: good, unknown client, good" {
	lines "$GOOD" '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}' "$SAMPLE"
	run -65 --separate-stderr order-place <"$IN"
	[ "${#lines[@]}" -eq 1 ]
	[[ $stderr == "order-place: stdin:2: "*42* ]]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	[ "$(sql "SELECT count(*) FROM \"order\" WHERE id = $(jq -r .id_order <<<"${lines[0]}")")" = 1 ]
}

@test "-k skips the bad order: good, bad, good gives two orders in input order" {
	lines "$GOOD" '{"id_client":1,"products":[]}' "$SAMPLE"
	run -65 --separate-stderr order-place -k <"$IN"
	[ "${#lines[@]}" -eq 2 ]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == "order-place: stdin:2: products"* ]]
	[ "$(jq -r .order_total <<<"${lines[0]}")" = 1500 ]
	[ "$(jq -r .order_total <<<"${lines[1]}")" = 3000 ]
	a=$(jq -r .id_order <<<"${lines[0]}")
	b=$(jq -r .id_order <<<"${lines[1]}")
	[ "$a" -lt "$b" ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2 ]
	[ "$(sql "SELECT count(*) FROM \"order\" WHERE id IN ($a, $b)")" = 2 ]
	[ "$(sql 'SELECT count(*) FROM order_event')" = 2 ]
}

@test "never a success line for an order that did not commit (-k, mixed batches)" {
	# 200 lines, more than one pipeline batch, with database rejections
	# (unknown client, unknown product, total out of range) and bad lines.
	: >"$IN"
	: >"$BATS_TEST_TMPDIR/expect"
	big=$(jq -cn '{id_client:1, products:[range(1000) | {id_product:1, quantity:1000000}]}')
	for i in $(seq 200); do
		if [ $((i % 7)) -eq 0 ]; then
			echo "{\"id_client\":42,\"products\":[$P1]}"
		elif [ $((i % 11)) -eq 0 ]; then
			echo "{\"id_client\":2,\"products\":[$P1,{\"id_product\":9,\"quantity\":1}]}"
		elif [ $((i % 13)) -eq 0 ]; then
			echo '{"id_client":3,"products":[{"id_product":1,"quantity":0}]}'
		elif [ $((i % 29)) -eq 0 ]; then
			echo "$big"
		else
			c=$((i % 3 + 1)) q=$((i % 5 + 1))
			echo "{\"id_client\":$c,\"products\":[{\"id_product\":3,\"quantity\":$q}]}"
			echo "$c $((q * 1000))" >>"$BATS_TEST_TMPDIR/expect"
		fi >>"$IN"
	done
	run -65 --separate-stderr order-place -k <"$IN"
	nbad=$(grep -vc '"id_product":3' "$IN")
	[ "${#stderr_lines[@]}" -eq "$nbad" ]
	# Exactly the good orders, in input order.
	[ "$(jq -r '"\(.id_client) \(.order_total)"' <<<"$output")" = "$(cat "$BATS_TEST_TMPDIR/expect")" ]
	[ "${#lines[@]}" -eq "$(sql 'SELECT count(*) FROM "order"')" ]
	[ "${#lines[@]}" -eq "$(sql 'SELECT count(*) FROM order_event')" ]
	ids=$(jq -r .id_order <<<"$output" | paste -sd,)
	[ "$(sql "SELECT count(*) FROM \"order\" WHERE id IN ($ids)")" -eq "${#lines[@]}" ]
}

@test "four processes in parallel, 250 orders each: every total is consistent" {
	d=$BATS_TEST_TMPDIR
	for k in 1 2 3 4; do
		awk -v seed="$k" 'BEGIN {
			srand(seed)
			for (i = 0; i < 250; i++) {
				n = 1 + int(rand() * 3); s = ""
				for (j = 0; j < n; j++)
					s = s (j ? "," : "") sprintf("{\"id_product\":%d,\"quantity\":%d}",
					    1 + int(rand() * 3), 1 + int(rand() * 20))
				printf "{\"id_client\":%d,\"products\":[%s]}\n", 1 + int(rand() * 3), s
			}
		}' >"$d/in.$k"
	done
	# What the input says, in cents per client, independently of the database.
	expect=$(cat "$d"/in.? | jq -r '[.id_client, (.products | map(.quantity * ({"1":150000,"2":50000,"3":100000}[.id_product | tostring])) | add)] | @tsv' |
		awk '{ n[$1]++; s[$1] += $2 } END { for (c = 1; c <= 3; c++) print c, n[c], s[c] }')
	nitems=$(cat "$d"/in.? | jq '.products | length' | awk '{ s += $1 } END { print s }')

	pids=()
	for k in 1 2 3 4; do
		order-place <"$d/in.$k" >"$d/out.$k" 2>"$d/err.$k" 3>&- &
		pids+=($!)
	done
	for k in 0 1 2 3; do
		rc=0
		wait "${pids[k]}" || rc=$?
		[ "$rc" -eq 0 ]
	done
	cat "$d"/err.?
	[ -z "$(cat "$d"/err.?)" ]
	[ "$(cat "$d"/out.? | wc -l)" -eq 1000 ]
	[ "$(counts)" = "1000|$nitems|1000|3|3" ]

	# Per client: the outbox and the items agree with the input.
	[ "$(sql 'SELECT id_client, count(*), (sum(order_total) * 100)::bigint FROM order_event GROUP BY 1 ORDER BY 1' | tr '|' ' ')" = "$expect" ]
	[ "$(sql 'SELECT o.id_client, count(DISTINCT o.id), (sum(i.price_when_item_was_ordered * i.quantity) * 100)::bigint
		FROM "order" o JOIN order_item i ON i.id_order = o.id GROUP BY 1 ORDER BY 1' | tr '|' ' ')" = "$expect" ]

	# Per order, through the pairs each process printed: the order, its
	# outbox row and its items agree with the line.
	values=$(cat "$d"/out.? | jq -r '"(\(.id_order),\(.id_event),\(.id_client),\(.order_total),\(.placement_date))"' | paste -sd,)
	[ "$(sql "WITH l(id_order, id_event, id_client, total, pdate) AS (VALUES $values)
		SELECT count(DISTINCT l.id_order) || ' ' || count(DISTINCT l.id_event) FROM l
		JOIN \"order\" o ON o.id = l.id_order AND o.id_client = l.id_client AND o.placement_date = l.pdate
		JOIN order_event e ON e.id = l.id_event AND e.id_client = l.id_client
			AND e.order_total = l.total AND e.event_date = l.pdate
		WHERE l.total = (SELECT sum(price_when_item_was_ordered * quantity) FROM order_item i WHERE i.id_order = l.id_order)")" = "1000 1000" ]
}

@test "-h: help on stdout, exit 0; a usage error prints the man page's SYNOPSIS on stderr, exit 64" {
	run -0 --separate-stderr order-place -h
	[ -z "$stderr" ]
	[[ ${lines[0]} == "usage: order-place "* ]]
	[[ $output == *"--api URL"* ]]
	[[ $output == *"-v, --verbose"* ]]
	run -64 --separate-stderr order-place operand
	[ -z "$output" ]
	require_tool mandoc
	[ "$stderr" = "usage: $(synopsis order-place)" ]
}

@test "an unknown option: exit 64 with usage" {
	run -64 --separate-stderr order-place -x
	[ -z "$output" ]
	[[ $stderr == *"usage: order-place"* ]]
}

@test "an operand: exit 64 with usage, nothing read" {
	lines "$GOOD"
	run -64 --separate-stderr order-place orders.json <"$IN"
	[[ $stderr == *"usage: order-place"* ]]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 0 ]
}

@test "-V: a version line, exit 0" {
	run -0 --separate-stderr order-place -V
	[[ $output =~ ^order-place\ .*[0-9]+\.[0-9]+ ]]
	[ "${#lines[@]}" -eq 1 ]
	[ -z "$stderr" ]
}

@test "database down: exit 69 with libpq's reason" {
	lines "$GOOD"
	run -69 --separate-stderr order-place -d "host=/nonexistent" <"$IN"
	[ -z "$output" ]
	[[ $stderr == "order-place: "*"/nonexistent/.s.PGSQL."*"No such file or directory"* ]]
	run -69 --separate-stderr env PGHOST="$BATS_TEST_TMPDIR" order-place <"$IN"
	[[ $stderr == "order-place: "*"$BATS_TEST_TMPDIR/.s.PGSQL."* ]]
}

@test "-d overrides PGDATABASE" {
	lines "$GOOD"
	run -0 --separate-stderr env PGDATABASE=nosuchdb order-place -d dbname=orders <"$IN"
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	run -78 --separate-stderr env PGDATABASE=nosuchdb order-place <"$IN"
	[[ $stderr == *nosuchdb* ]]
}

@test "a malformed conninfo: exit 78" {
	lines "$GOOD"
	run -78 --separate-stderr order-place -d foo <"$IN"
	[ -z "$output" ]
	[[ $stderr == "order-place: "*foo* ]]
}

@test "a database without the schema: exit 78" {
	lines "$GOOD"
	run -78 --separate-stderr order-place -d dbname=postgres <"$IN"
	[ -z "$output" ]
	[[ $stderr == "order-place: "*"does not exist"* ]]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 0 ]
}

@test "permission denied (no INSERT on the tables): exit 77, nothing written" {
	LOWPRIV=1
	sql "DO \$\$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lowpriv') THEN CREATE ROLE lowpriv LOGIN; END IF;
		END \$\$; GRANT SELECT ON ALL TABLES IN SCHEMA public TO lowpriv"
	stack_password lowpriv
	lines "$GOOD"
	before=$(counts)
	run -77 --separate-stderr env PGUSER=lowpriv order-place <"$IN"
	[ -z "$output" ]
	[[ $stderr == "order-place: "*"permission denied"* ]]
	[ "$(counts)" = "$before" ]
}

@test "lock timeout: exit 75, nothing written" {
	lines "$GOOD"
	before=$(counts)	# before the lock: counting would wait for it
	PGAPPNAME=op-locker psql -qX -c 'BEGIN' -c 'LOCK TABLE "order" IN ACCESS EXCLUSIVE MODE' \
		-c 'SELECT pg_sleep(5)' -c 'COMMIT' >/dev/null 2>&1 3>&- &
	LOCKER_PID=$!
	wait_until '[ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE c.relname = '"'order'"' AND l.mode = '"'AccessExclusiveLock'"' AND l.granted")" = 1 ]'
	SECONDS=0
	run -75 --separate-stderr env PGOPTIONS='-c lock_timeout=200' order-place <"$IN"
	[ "$SECONDS" -lt 4 ]
	[ -z "$output" ]
	[[ $stderr == "order-place: "*"lock timeout"* ]]
	sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'op-locker'" >/dev/null
	wait "$LOCKER_PID" || true
	LOCKER_PID=
	[ "$(counts)" = "$before" ]
}

@test "stdout write error: exit 74" {
	lines "$GOOD"
	run -74 --separate-stderr bash -c 'order-place <"$1" >/dev/full' _ "$IN"
	[[ $stderr == "order-place: stdout: "* ]]
}

@test "stdout closed by the reader: exit 74, the committed orders without a result line counted, reading stops" {
	for i in $(seq 2000); do echo "$GOOD"; done >"$IN"
	run -0 --separate-stderr bash -c 'order-place <"$1" | head -c 0; echo "${PIPESTATUS[0]}"' _ "$IN"
	[ "$output" = 74 ]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr =~ ^order-place:\ stdout:\ Broken\ pipe:\ ([0-9]+)\ committed\ orders?\ \(input\ lines\ ([0-9]+)\ to\ ([0-9]+)\)\ without\ a\ result\ line$ ]]
	n=${BASH_REMATCH[1]} first=${BASH_REMATCH[2]} last=${BASH_REMATCH[3]}
	# Nothing was written, so every committed order is one of those.
	placed=$(sql 'SELECT count(*) FROM "order"')
	[ "$placed" -lt 2000 ]
	[ "$n" -eq "$placed" ]
	[ "$first" -eq 1 ]
	[ "$last" -eq "$placed" ]
}

@test "connection lost mid-stream: exit 69, the next order reported not committed" {
	d=$BATS_TEST_TMPDIR
	mkfifo "$d/fifo"
	order-place <"$d/fifo" >"$d/out" 2>"$d/err" 3>&- &
	BG_PID=$!
	exec 4>"$d/fifo"
	echo "$GOOD" >&4
	wait_until '[ -s "$d/out" ]'
	[ "$(sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'order-place'")" = 1 ]
	echo "$SAMPLE" >&4
	wait_exit "$BG_PID"
	exec 4>&-
	cat "$d/err"
	[ "$BG_RC" -eq 69 ]
	# Not known to have committed: "not committed" (the man page) or "may or may not exist".
	grep -Eq '^order-place: stdin:2: .*(not committed|may or may not)' "$d/err"
	[ "$(grep -c 'stdin:1' "$d/err")" -eq 0 ]
	[ "$(wc -l <"$d/out")" -eq 1 ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	[ "$(sql "SELECT count(*) FROM \"order\" WHERE id = $(jq -r .id_order "$d/out")")" = 1 ]
}

@test "lock timeout mid-stream: exit 75, stdin:2 named, stdin:3 of its batch not committed, the first kept" {
	d=$BATS_TEST_TMPDIR
	mkfifo "$d/fifo"
	PGOPTIONS='-c lock_timeout=200' order-place <"$d/fifo" >"$d/out" 2>"$d/err" 3>&- &
	BG_PID=$!
	exec 4>"$d/fifo"
	echo "$GOOD" >&4
	wait_until '[ -s "$d/out" ]'
	PGAPPNAME=op-locker psql -qX -c 'BEGIN' -c 'LOCK TABLE "order" IN ACCESS EXCLUSIVE MODE' \
		-c 'SELECT pg_sleep(5)' -c 'COMMIT' >/dev/null 2>&1 3>&- 4>&- &
	LOCKER_PID=$!
	wait_until '[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"'op-locker'"' AND query LIKE '"'%pg_sleep%'"'")" = 1 ]'
	# Lines 2 and 3 in one write, so that they are read as one batch.
	printf '%s\n%s\n' "$SAMPLE" "$GOOD" >"$d/two"
	cat "$d/two" >&4
	wait_exit "$BG_PID"
	exec 4>&-
	cat "$d/err"
	[ "$BG_RC" -eq 75 ]
	grep -q '^order-place: stdin:2: .*lock timeout' "$d/err"
	grep -q '^order-place: stdin:3: .*not committed' "$d/err"
	[ "$(wc -l <"$d/out")" -eq 1 ]
	sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'op-locker'" >/dev/null
	wait "$LOCKER_PID" || true
	LOCKER_PID=
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	[ "$(sql 'SELECT count(*) FROM order_event')" = 1 ]
}

@test "result lines carry the input line number (blank lines counted, -k skips)" {
	printf '%s\n\n%s\n%s\n\n%s\n' "$GOOD" '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}' "$SAMPLE" "$GOOD" >"$IN"
	run -65 --separate-stderr order-place -k <"$IN"
	[ "$(jq -c .line <<<"$output" | paste -sd' ')" = "1 4 6" ]
	[ "$stderr" = "order-place: stdin:3: id_client: unknown client 42" ]
	[ "$(jq -c .order_total <<<"$output" | paste -sd' ')" = "1500 3000 1500" ]
}

@test "request_id: a retried line places nothing new and prints the first result; another order with it is refused" {
	R='{"id_client":2,"products":[{"id_product":3,"quantity":2}],"request_id":"batch-7:line-1"}'
	lines "$R" "$R"
	run -0 --separate-stderr order-place <"$IN"
	[ "${#lines[@]}" -eq 2 ]
	[ "$(jq -c 'del(.line, .replayed)' <<<"${lines[0]}")" = "$(jq -c 'del(.line, .replayed)' <<<"${lines[1]}")" ]
	[ "$(jq -c '[.line, .request_id, .replayed]' <<<"$output" | paste -sd' ')" = '[1,"batch-7:line-1",null] [2,"batch-7:line-1",true]' ]
	# Run the same input again: the recovery after "may or may not exist".
	run -0 --separate-stderr order-place <"$IN"
	[ "$(jq -c .replayed <<<"$output" | paste -sd' ')" = "true true" ]
	[ "$(counts)" = "1|1|1|3|3" ]
	[ "$(sql 'SELECT count(*) FROM order_request')" = 1 ]
	BEFORE=$(counts)
	lines '{"id_client":2,"products":[{"id_product":3,"quantity":3}],"request_id":"batch-7:line-1"}'
	reject 'same key, another order' "stdin:1: request_id: batch-7:line-1 was used for another order"
	lines '{"id_client":2,"products":[{"id_product":3,"quantity":3}],"request_id":"with space"}'
	reject 'a space' "stdin:1: request_id: must be a string of 1 to 255 printable ASCII characters"
	lines '{"id_client":2,"products":[{"id_product":3,"quantity":3}],"request_id":7}'
	reject 'a number' "stdin:1: request_id: "
}

@test "request_id: after the 24-hour window a key places a new order" {
	R='{"id_client":2,"products":[{"id_product":3,"quantity":2}],"request_id":"old"}'
	lines "$R"
	run -0 --separate-stderr order-place <"$IN"
	sql "UPDATE order_request SET created = now() - interval '24 hours 1 minute'" >/dev/null
	run -0 --separate-stderr order-place <"$IN"
	[ "$(jq .replayed <<<"$output")" = null ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2 ]
	# Within the window again.
	run -0 --separate-stderr order-place <"$IN"
	[ "$(jq .replayed <<<"$output")" = true ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2 ]
}

@test "request_id: four processes racing with the same keys place each order once" {
	for i in $(seq 50); do echo "{\"id_client\":1,\"products\":[$P1],\"request_id\":\"k$i\"}"; done >"$IN"
	for k in 1 2 3 4; do order-place <"$IN" >"$BATS_TEST_TMPDIR/out.$k" 2>"$BATS_TEST_TMPDIR/err.$k" 3>&- & done
	wait
	cat "$BATS_TEST_TMPDIR"/err.*
	[ -z "$(cat "$BATS_TEST_TMPDIR"/err.*)" ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 50 ]
	[ "$(cat "$BATS_TEST_TMPDIR"/out.* | jq -r '"\(.request_id) \(.id_order)"' | sort -u | wc -l)" = 50 ]
}

@test "-v says how orders are placed: through cqrs_place_order()" {
	lines "$GOOD"
	run -0 --separate-stderr order-place -v <"$IN"
	[ "$stderr" = "order-place: placing orders through the function cqrs_place_order()" ]
}

@test "cqrs_place_order() checks its arguments itself, as order-place does" {
	local -a failures=()
	for c in "0,'{1}','{1}'|id_client: must be a positive integer" \
		"1,'{}','{}'|products: must be a non-empty array" \
		"1,'{1,2}','{1}'|products: 2 product ids but 1 quantities" \
		"1,'{1,-2}','{1,1}'|products[1].id_product: must be a positive integer" \
		"1,'{1}','{1000001}'|products[0].quantity: must be an integer from 1 to 1000000" \
		"1,'{1}','{NULL}'|products[0].quantity: must be an integer from 1 to 1000000" \
		"1,'{1}','{1}','bad key'|request_id: must be 1 to 255 printable ASCII characters" \
		"42,'{1}','{1}'|id_client: unknown client 42" \
		"1,'{1,9}','{1,1}'|products[1].id_product: unknown product 9" \
		"1,array_fill(1, ARRAY[1000]),array_fill(1000000, ARRAY[1000])|order_total: out of range"; do
		run psql -qXAt -c "SELECT * FROM cqrs_place_order(${c%%|*})"
		[[ $output == "ERROR:  ${c#*|}"* ]] || failures+=("${c%%|*}: $output")
	done
	[ "$(counts)" = "0|0|0|3|3" ] || failures+=("rows written: $(counts)")
	[ "${#failures[@]}" -eq 0 ] || { printf '%s\n' "${failures[@]}" >&2; return 1; }
}

# sample_db: a database made as the AWS sample makes it (its own types, no
# function), with its seed; PGDATABASE still names the stack's.
sample_db() {
	psql -qX -c 'DROP DATABASE IF EXISTS sample' -c 'CREATE DATABASE sample' >/dev/null
	psql -qX -v ON_ERROR_STOP=1 -d sample >/dev/null <<-'SQL'
	CREATE TABLE product (id serial PRIMARY KEY, name varchar, price float);
	CREATE TABLE client (id serial PRIMARY KEY, name varchar, email varchar);
	CREATE TABLE "order" (id serial PRIMARY KEY, id_client int REFERENCES client(id), placement_date int);
	CREATE TABLE order_item (id serial PRIMARY KEY, id_order int REFERENCES "order"(id),
		id_product int REFERENCES product(id), price_when_item_was_ordered float, quantity int);
	CREATE TABLE order_event (id serial PRIMARY KEY, id_client int REFERENCES client(id),
		name varchar, email varchar, order_total float, event_date int);
	INSERT INTO product (name, price) VALUES ('Computer', 1500), ('Phone', 500), ('TV', 1000);
	INSERT INTO client (name, email) VALUES ('Bob', 'bob@anemailprovider.com'),
		('Alice', 'alice@anemailprovider.com'), ('John', 'john@anemailprovider.com');
	SQL
}

@test "a database made by the AWS sample (no function): plain SQL, said with -v; -d with a bare name" {
	sample_db
	lines "$SAMPLE" '{"id_client":1,"products":[{"id_product":9,"quantity":1}]}' '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}'
	run -65 --separate-stderr order-place -k -v -d sample <"$IN"
	[ "${stderr_lines[0]}" = "order-place: placing orders through plain SQL (the database has no cqrs_place_order())" ]
	[ "${stderr_lines[1]}" = "order-place: stdin:2: products[0].id_product: unknown product 9" ]
	[ "${stderr_lines[2]}" = "order-place: stdin:3: id_client: unknown client 42" ]
	[ "$(jq -c '[.id_order, .id_client, .order_total, .line]' <<<"$output")" = "[1,1,3000,1]" ]
	[ "$(psql -qXAt -d sample -c 'SELECT order_total FROM order_event')" = 3000 ]
	[ "$(psql -qXAt -d sample -c 'SELECT count(*) FROM order_item')" = 2 ]
	# A request_id cannot be kept there: refused, nothing written.
	lines '{"id_client":1,"products":[{"id_product":1,"quantity":1}],"request_id":"r"}'
	run -78 --separate-stderr order-place -d sample <"$IN"
	[ "$stderr" = "order-place: stdin:1: request_id: this database has no cqrs_place_order() to keep it (install scripts/schema.sql)" ]
	[ "$(psql -qXAt -d sample -c 'SELECT count(*) FROM "order"')" = 1 ]
	# schema.sql installs the function on it, keeping its tables.
	psql -qX -v ON_ERROR_STOP=1 -d sample -f "$CQRS_REPO/scripts/schema.sql" >/dev/null 2>&1
	run -0 --separate-stderr order-place -v -d sample <"$IN"
	[ "$stderr" = "order-place: placing orders through the function cqrs_place_order()" ]
	[ "$(psql -qXAt -d sample -c 'SELECT count(*) FROM "order"')" = 2 ]
	[ "$(psql -qXAt -d sample -c "SELECT data_type FROM information_schema.columns WHERE table_name = 'order_event' AND column_name = 'order_total'")" = "double precision" ]
	psql -qX -c 'DROP DATABASE sample' >/dev/null
	# The stack's own database by its bare name, too.
	lines "$GOOD"
	run -0 --separate-stderr env PGDATABASE=nosuchdb order-place -d orders <"$IN"
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
}

@test "schema.sql applied again to a database in use changes nothing" {
	lines "$GOOD"
	run -0 order-place <"$IN"
	before=$(counts)
	run -0 psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/schema.sql"
	[ "$(counts)" = "$before" ]
	run -0 --separate-stderr order-place <"$IN"
	[ "$(jq .id_order <<<"$output")" = 2 ]
}

@test "SIGINT: the orders read are placed and printed, then order-place dies by the signal (130)" {
	d=$BATS_TEST_TMPDIR
	mkfifo "$d/fifo"
	order-place <"$d/fifo" >"$d/out" 2>"$d/err" 3>&- &
	BG_PID=$!
	exec 4>"$d/fifo"
	echo "$GOOD" >&4
	wait_until '[ -s "$d/out" ]'
	kill -INT "$BG_PID"
	wait_exit "$BG_PID"
	exec 4>&-
	BG_PID=
	[ "$BG_RC" -eq 130 ]
	[ "$(jq .line "$d/out")" = 1 ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 1 ]
	[ ! -s "$d/err" ]
}
