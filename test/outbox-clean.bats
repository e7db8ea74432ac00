#!/usr/bin/env bats
# outbox-clean: deletes the outbox rows that event lines name, once their transactions are visible; faults.

bats_require_minimum_version 1.5.0
load test_helper

USAGE='usage: outbox-clean [-hkvV] [-a ack-file] [-A ack-file] [-b batch] [-d conninfo]
                    [-t table] [--reject-file file] [--stats seconds]'

setup_file() {
	stack_setup_file
}

teardown_file() {
	stack_teardown_file
}

setup() {
	reset_state
	cd "$BATS_TEST_TMPDIR"
	pid=
	holder=
	drop=	# SQL that undoes what a test created beyond the seeded tables
}

teardown() {
	exec 4>&- 2>/dev/null || true
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"
	fi
	if [ -n "$holder" ]; then
		sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'" >/dev/null
		wait_job "$holder" || true
	fi
	[ -z "$drop" ] || sql "$drop"
	if [ -n "${EPOCH_DIR:-}" ]; then
		if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- $EPOCH_STOP); else $EPOCH_STOP; fi >/dev/null 2>&1 || true
		rm -rf "$EPOCH_DIR"
	fi
}

# rows N: insert N outbox rows (client 1) in one transaction.
rows() {
	sql "$(rows_sql "$1")"
}

rows_sql() {
	echo "INSERT INTO order_event (id_client, name, email, order_total, event_date)
	    SELECT 1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820
	    FROM generate_series(1, $1)"
}

# events [CONDITION]: an event line for each outbox row (matching CONDITION),
# by id: position (100 * id, 0), __xid the row's xmin, a committed transaction.
events() {
	sql "SELECT json_build_object('id', id, 'id_client', id_client,
	        'name', name, 'email', email, 'order_total', order_total,
	        'event_date', event_date, '__table', 'public.order_event',
	        '__op', 'c', '__lsn', 100 * id, '__seq', 0,
	        '__xid', xmin::text::bigint, '__ts_ms', 1707484820123)
	    FROM order_event ${1:+WHERE $1} ORDER BY id" | jq -c .
}

# event_of ID XID: the event line of an outbox row not visible yet (client 1, position 100 0).
event_of() {
	jq -nc --argjson id "$1" --argjson xid "$2" \
	    '{id: $id, id_client: 1, name: "Bob", email: "bob@anemailprovider.com",
	      order_total: 3000.00, event_date: 1707484820, __table: "public.order_event",
	      __op: "c", __lsn: 100, __seq: 0, __xid: $xid}'
}

# ids: the ids of the outbox rows left, on one line.
ids() {
	sql "SELECT coalesce(string_agg(id::text, ' ' ORDER BY id), '') FROM order_event"
}

# wait_sql QUERY: wait up to 10 s until QUERY prints t.
wait_sql() {
	local i
	for i in $(seq 200); do
		[ "$(sql "$1")" = t ] && return 0
		sleep 0.05
	done
	echo "wait_sql: still not true after 10 s: $1" >&2
	return 1
}

# hold SQL...: a session named "holder" that runs BEGIN and the statements
# given, then holds its transaction open (up to 30 s); its output in "held".
# Returns once the output of the statements has arrived.
hold() {
	{
		echo 'BEGIN;'
		printf '%s;\n' "$@"
		echo "SELECT pg_sleep(${HOLD_FOR:-30});"
		echo COMMIT
	} >hold.sql
	PGAPPNAME=holder psql -qXAt -F ' ' -v ON_ERROR_STOP=1 -f hold.sql >held 2>&1 3>&- &
	holder=$!
	wait_for_file held
}

# rejects LINE MESSAGE: with LINE between the events of rows 1 and 3 (rows
# 1 to 3 made afresh), outbox-clean exits 65 naming stdin:2 and MESSAGE (a
# pattern); row 1 is deleted and acknowledged, rows 2 and 3 stay.
rejects() {
	rows_afresh
	{ cat ev1; printf '%s\n' "$1"; cat ev3; } >input
	rm -f ack
	run -65 --separate-stderr outbox-clean --ack-file ack <input
	[[ $stderr == "outbox-clean: stdin:2: "$2 ]]
	[ "${#stderr_lines[@]}" = 1 ]
	[ -z "$output" ]
	[ "$(ids)" = "2 3" ]
	[ "$(cat ack)" = "100 0" ]
}

# rejects_edit FILTER MESSAGE: rejects with row 2's event edited by jq FILTER.
rejects_edit() {
	rows_afresh
	rejects "$(jq -c "$1" ev2)" "$2"
}

# rows_afresh: rows 1 to 3 only; their events in ev1, ev2 and ev3, made once
# (the __xid of a transaction that committed before stays visible).
rows_afresh() {
	sql "TRUNCATE order_event RESTART IDENTITY; $(rows_sql 3)"
	[ -e ev3 ] && return 0
	events 'id = 1' >ev1
	events 'id = 2' >ev2
	events 'id = 3' >ev3
}

@test "the rows named are deleted in one run, the others stay" {
	rows 5
	events 'id % 2 = 1' >input
	run -0 --separate-stderr outbox-clean -v --ack-file ack <input
	[ -z "$output" ]
	[ "$stderr" = "outbox-clean: 3 deleted, 0 already gone, 0 skipped" ]
	[ "$(ids)" = "2 4" ]
	[ "$(cat ack)" = "500 0" ]
}

@test "rows already gone are not an error" {
	rows 3
	events >input
	run -0 --separate-stderr outbox-clean <input
	[ -z "$stderr" ]
	[ "$(ids)" = "" ]
	run -0 --separate-stderr outbox-clean -v --ack-file ack <input
	[ "$stderr" = "outbox-clean: 0 deleted, 3 already gone, 0 skipped" ]
	[ "$(cat ack)" = "300 0" ]
	rows 2
	{ events; events; } >input
	run -0 --separate-stderr outbox-clean --verbose <input
	[ "$stderr" = "outbox-clean: 2 deleted, 2 already gone, 0 skipped" ]
}

@test "events of other tables are skipped and acknowledged" {
	rows 2
	events | sed 's/"public.order_event"/"public.order_item"/' >input
	echo '{"id":1,"__table":"public.client","__lsn":900,"__seq":4}' >>input
	run -0 --separate-stderr outbox-clean -v --ack-file ack <input
	[ "$stderr" = "outbox-clean: 0 deleted, 0 already gone, 3 skipped" ]
	[ "$(ids)" = "1 2" ]
	[ "$(sql 'SELECT count(*) FROM client')" = 3 ]
	[ "$(cat ack)" = "900 4" ]
	# no __table: refused, as client-project refuses it
	echo '{"id":2,"__lsn":900,"__seq":5}' >input
	run -65 --separate-stderr outbox-clean -v --ack-file ack <input
	[[ $stderr == "outbox-clean: stdin:1: __table: missing"* ]]
	[ "$(cat ack)" = "900 4" ]
}

@test "the ack file is one line \"LSN SEQ\" of the last event, written atomically" {
	rows 3
	events >input
	run -0 --separate-stderr outbox-clean --ack-file ack <input
	printf '300 0\n' | cmp - ack
	[ "$(ls -A | grep '^ack\.')" = ack.lock ]	# no temporary file left
	rows 1
	events 'id = 4' | sed 's/"__seq":0/"__seq":7/' >input
	run -0 --separate-stderr outbox-clean -a ack <input
	printf '400 7\n' | cmp - ack
}

@test "no event, no ack file" {
	run -0 --separate-stderr outbox-clean --ack-file ack </dev/null
	[ ! -e ack ]
	[ -z "$stderr" ]
}

@test "the ack file is written while the input stays open" {
	rows 2
	idle_input
	outbox-clean --ack-file ack <in 3>&- 4>&- &
	pid=$!
	events 'id = 1' >&4
	wait_for_file ack
	[ "$(cat ack)" = "100 0" ]
	[ "$(ids)" = 2 ]
	exec 4>&-
	wait_job "$pid"
	[ "$rc" = 0 ]
}

@test "batches of 1000 and of 1: 3000 rows each" {
	rows 3000
	events >input
	run -0 --separate-stderr outbox-clean -v -b 1000 --ack-file ack <input
	[ "$stderr" = "outbox-clean: 3000 deleted, 0 already gone, 0 skipped" ]
	[ "$(ids)" = "" ]
	[ "$(cat ack)" = "300000 0" ]
	rows 3000
	events >input
	# one commit per row: spare the disk the flush of each
	run -0 --separate-stderr outbox-clean -v --batch 1 --ack-file ack \
	    -d "options='-c synchronous_commit=off'" <input
	[ "$stderr" = "outbox-clean: 3000 deleted, 0 already gone, 0 skipped" ]
	[ "$(ids)" = "" ]
	[ "$(cat ack)" = "600000 0" ]
}

@test "a bad line: 65 naming stdin:2 and the field; the rows of it and after it stay" {
	# jq filter applied to the event of row 2, message
	local cases=(
		'del(.id)'			'id: missing'
		'.id = "2"'			'id: must be an integer from 1 to 9007199254740991'
		'.id = -2'			'id: must be an integer from 1 to 9007199254740991'
		'.id = 2.5'			'id: must be an integer from 1 to 9007199254740991'
		'del(.__xid)'			'__xid: missing'
		'.__xid = "7"'			'__xid: must be an integer from 0 to 4294967295'
		'.__xid = 4294967296'		'__xid: must be an integer from 0 to 4294967295'
		'del(.__lsn)'			'__lsn: missing'
		'.__lsn = -1'			'__lsn: must be an integer from 0 to 1152921504606846976'
		'.__seq = "0"'			'__seq: must be an integer from 0 to 4294967295'
		'del(.__seq)'			'__seq: missing'
		'.order_total = -1'		'order_total: must be from 0 to 999999999999.99'
		'.order_total = "NaN"'		'order_total: must be a number'
		'.event_date = -1'		'event_date: -1 is not from 2000-01-01 to a day from now'
		'.__op = "d"'			'__op: "d" is not an insert (want "c" or "r")'
		'del(.__table)'			'__table: missing'
	)
	# not i: bats's own functions, which run calls, set i
	for ((case_no = 0; case_no < ${#cases[@]}; case_no += 2)); do
		echo "case: ${cases[case_no]}"
		rejects_edit "${cases[case_no]}" "${cases[case_no + 1]}"
	done
}

@test "a line that is not an event: 65 naming stdin:2; the rows after it stay" {
	local cases=(
		'{"__table":"public.client","__seq":0}'		'__lsn: missing'
		'{"id":2,'					'*expected near end of file (column 8)'
		'[2]'						'not a JSON object'
		'{"id":2,"id":3,"__lsn":1,"__seq":0}'		'duplicate object key near *'
	)
	for ((case_no = 0; case_no < ${#cases[@]}; case_no += 2)); do
		echo "case: ${cases[case_no]}"
		rejects "${cases[case_no]}" "${cases[case_no + 1]}"
	done
}

@test "-k reports a bad line, deletes the rest, acknowledges nothing past it, and exits 65" {
	rows 4
	{ events 'id = 1'; events 'id = 2' | jq -c 'del(.__xid)'; events 'id = 3'
	  events 'id = 4' | jq -c '.id = "4"'; } >input
	run -65 --separate-stderr outbox-clean -k -v --ack-file ack <input
	[ "${#stderr_lines[@]}" = 3 ]
	[ "${stderr_lines[0]}" = "outbox-clean: stdin:2: __xid: missing" ]
	[[ ${stderr_lines[1]} == "outbox-clean: stdin:4: id: must be "* ]]
	[ "${stderr_lines[2]}" = "outbox-clean: 2 deleted, 0 already gone, 0 skipped" ]
	[ "$(ids)" = "2 4" ]
	[ "$(cat ack)" = "100 0" ]
	run -65 --separate-stderr outbox-clean --keep-going <input
}

@test "a transaction still in progress is waited for, then its row deleted" {
	HOLD_FOR=1 hold "INSERT INTO order_event (id_client, name, email, order_total, event_date)
	    VALUES (1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820)
	    RETURNING id, txid_current()"
	read -r id xid <held
	[ "$(ids)" = "" ]	# not visible yet
	event_of "$id" "$xid" >input
	run -0 --separate-stderr outbox-clean -v --ack-file ack <input
	[ "$stderr" = "outbox-clean: 1 deleted, 0 already gone, 0 skipped" ]
	wait_job "$holder"
	[ "$rc" = 0 ]
	holder=
	[ "$(ids)" = "" ]
	[ "$(cat ack)" = "100 0" ]
}

@test "SIGTERM while waiting for a transaction: a clean 0, nothing acknowledged" {
	hold "INSERT INTO order_event (id_client, name, email, order_total, event_date)
	    VALUES (1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820)
	    RETURNING id, txid_current()"
	read -r id xid <held
	event_of "$id" "$xid" >input
	outbox-clean --ack-file ack <input 2>err 3>&- &
	pid=$!
	# its DELETE has run at least once: it is in the wait loop
	wait_sql "SELECT count(*) > 0 FROM pg_stat_activity
	    WHERE application_name = 'outbox-clean' AND query LIKE 'WITH d AS (DELETE %'"
	kill -TERM "$pid"
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ ! -s err ]
	[ ! -e ack ]
}

@test "database unreachable: 69" {
	rows 1
	events >input
	run -69 --separate-stderr outbox-clean -d host=/nonexistent <input
	[[ $stderr == "outbox-clean: database: "*/nonexistent/.s.PGSQL.5432* ]]
	PGHOST=/nonexistent run -69 --separate-stderr outbox-clean <input
	[ "$(ids)" = 1 ]
}

@test "-d overrides the environment" {
	rows 1
	events >input
	PGHOST=/nonexistent run -0 --separate-stderr outbox-clean -d "host=$PGHOST" <input
	[ "$(ids)" = "" ]
	rows 1
	events >input
	PGHOST=/nonexistent run -0 --separate-stderr outbox-clean \
	    --dbname "postgresql:///$PGDATABASE?host=$PGHOST" <input
	[ "$(ids)" = "" ]
}

@test "a role without DELETE privilege: 77, nothing acknowledged; DELETE and SELECT on id suffice" {
	sql 'CREATE ROLE cleaner_ro LOGIN'
	stack_password cleaner_ro
	drop='DROP OWNED BY cleaner_ro; DROP ROLE cleaner_ro'
	sql 'GRANT SELECT ON order_event TO cleaner_ro'
	rows 1
	events >input
	run -77 --separate-stderr outbox-clean -d user=cleaner_ro --ack-file ack <input
	[ "$stderr" = "outbox-clean: database: permission denied for table order_event" ]
	[ "$(ids)" = 1 ]
	[ ! -e ack ]
	sql 'REVOKE SELECT ON order_event FROM cleaner_ro; GRANT DELETE ON order_event TO cleaner_ro'
	run -77 --separate-stderr outbox-clean -d user=cleaner_ro <input
	[ "$(ids)" = 1 ]
	sql 'GRANT SELECT (id) ON order_event TO cleaner_ro'
	run -0 --separate-stderr outbox-clean -d user=cleaner_ro --ack-file ack <input
	[ "$(ids)" = "" ]
	[ "$(cat ack)" = "100 0" ]
}

@test "SIGTERM while reading: what was read is deleted and acknowledged, exit 0" {
	rows 2
	idle_input
	outbox-clean --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	events 'id = 1' >&4
	wait_for_file ack
	kill -TERM "$pid"
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ ! -s err ]
	[ "$(ids)" = 2 ]
	[ "$(cat ack)" = "100 0" ]
}

@test "a missing table, a table without id, a database that does not exist: 78" {
	run -78 --separate-stderr outbox-clean -t public.nosuch </dev/null
	[ "$stderr" = 'outbox-clean: database: relation "public.nosuch" does not exist' ]
	run -78 --separate-stderr outbox-clean --table nosuch.order_event </dev/null
	drop='DROP TABLE IF EXISTS noid'
	sql 'CREATE TABLE noid (x int)'
	run -78 --separate-stderr outbox-clean -t public.noid </dev/null
	[[ $stderr == *'column "id" does not exist'* ]]
	run -78 --separate-stderr outbox-clean -d dbname=nosuchdb </dev/null
	[[ $stderr == *'database "nosuchdb" does not exist'* ]]
}

@test "a malformed conninfo: 78" {
	run -78 --separate-stderr outbox-clean -d 'host=x junk' </dev/null
	[[ $stderr == "outbox-clean: connection string: "* ]]
	run -78 --separate-stderr outbox-clean -d 'nosuchkey=1' </dev/null
	run -78 --separate-stderr outbox-clean -d 'postgresql://[' </dev/null
	run -78 --separate-stderr outbox-clean -d 'password=s3cret host' </dev/null
	[[ $stderr != *s3cret* ]]
	run -78 --separate-stderr outbox-clean -d 'port=abc' </dev/null
	[[ $stderr == *'"port"'* ]]
}

@test "an id column of another type: 70" {
	drop='DROP TABLE IF EXISTS textid'
	sql 'CREATE TABLE textid (id text)'
	run -70 --separate-stderr outbox-clean -t public.textid </dev/null
	[[ $stderr == "outbox-clean: database: operator does not exist: text = bigint" ]]
}

@test "a row locked past lock_timeout: 75, nothing acknowledged" {
	rows 2
	events >input
	hold 'SELECT id FROM order_event WHERE id = 2 FOR UPDATE'
	run -75 --separate-stderr outbox-clean -d "options='-c lock_timeout=100'" \
	    --ack-file ack <input
	[[ $stderr == "outbox-clean: database: canceling statement due to lock timeout" ]]
	[ ! -e ack ]
	[ "$(ids)" = "1 2" ]	# the batch's DELETE was rolled back as a whole
}

@test "-t names another outbox table, quoted as needed" {
	drop='DROP TABLE IF EXISTS outbox2, "Odd Name"'
	sql 'CREATE TABLE outbox2 (id bigserial PRIMARY KEY, body text)'
	sql 'CREATE TABLE "Odd Name" (id bigint)'
	sql "INSERT INTO outbox2 (body) VALUES ('a'), ('b'), ('c')"
	sql 'INSERT INTO "Odd Name" VALUES (1), (2)'
	rows 1
	{ events
	  sql "SELECT json_build_object('id', id, '__table', 'public.outbox2',
	          '__lsn', 1000 + id, '__seq', 0, '__xid', xmin::text::bigint)
	      FROM outbox2 WHERE id < 3 ORDER BY id"; } >input
	run -0 --separate-stderr outbox-clean -v -t public.outbox2 --ack-file ack <input
	[ "$stderr" = "outbox-clean: 2 deleted, 0 already gone, 1 skipped" ]
	[ "$(sql 'SELECT id FROM outbox2 ORDER BY id')" = 3 ]
	[ "$(ids)" = 1 ]
	[ "$(cat ack)" = "1002 0" ]
	sql "SELECT json_build_object('id', 1, '__table', 'public.Odd Name',
	    '__lsn', 2000, '__seq', 0, '__xid', xmin::text::bigint)
	    FROM \"Odd Name\" WHERE id = 1" >input
	run -0 --separate-stderr outbox-clean -v -t 'public.Odd Name' <input
	[ "$stderr" = "outbox-clean: 1 deleted, 0 already gone, 0 skipped" ]
	[ "$(sql 'SELECT id FROM "Odd Name" ORDER BY id')" = 2 ]
}

@test "usage: unknown options, operands, bad -b and -t are 64; -h is 0" {
	run -0 --separate-stderr outbox-clean -h
	[ "${output%%$'\n\n'*}" = "$USAGE" ]
	[ -z "$stderr" ]
	run -0 --separate-stderr outbox-clean --help
	[ "${output%%$'\n\n'*}" = "$USAGE" ]
	run -64 --separate-stderr outbox-clean -x
	[ "$(printf '%s\n' "${stderr_lines[@]:1}")" = "$USAGE" ]
	run -64 --separate-stderr outbox-clean operand
	[ "$stderr" = "$USAGE" ]
	for b in 0 65537 x ''; do
		run -64 --separate-stderr outbox-clean -b "$b"
		[ "$stderr" = "outbox-clean: -b: want 1 to 65536" ]
	done
	for t in .order_event public. ''; do
		run -64 --separate-stderr outbox-clean -t "$t"
		[ "$stderr" = "outbox-clean: -t $t: want table or schema.table, as in __table" ]
	done
}

@test "-V prints the version" {
	run -0 --separate-stderr outbox-clean -V
	[[ $output == "outbox-clean (cqrs-pipes) "* ]]
	run -0 --separate-stderr outbox-clean --version
}

@test "connection lost mid-run: 69" {
	rows 2
	idle_input
	outbox-clean --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	events 'id = 1' >&4
	wait_for_file ack
	[ "$(sql "SELECT count(*) FROM pg_terminate_backend((SELECT pid FROM pg_stat_activity WHERE application_name = 'outbox-clean'))")" = 1 ]
	events 'id = 2' >&4
	wait_job "$pid"
	[ "$rc" = 69 ]
	[[ $(cat err) == "outbox-clean: database: "* ]]
	[ "$(ids)" = 2 ]
	[ "$(cat ack)" = "100 0" ]
}

@test "an ack file that cannot be written: 74, the rows stay deleted" {
	rows 2
	events 'id = 1' >input
	run -74 --separate-stderr outbox-clean --ack-file /nonexistent/dir/f <input
	[[ $stderr == "outbox-clean: /nonexistent/dir/f.lock: "* ]]
	[ "$(ids)" = "1 2" ]
	# The directory goes away while it runs.
	mkdir d
	idle_input
	outbox-clean --ack-file d/f <in 2>err 3>&- 4>&- &
	pid=$!
	events 'id = 1' >&4
	wait_for_file d/f
	mv d d2
	events 'id = 2' >&4
	wait_job "$pid"
	[ "$rc" = 74 ]
	grep -q '^outbox-clean: d/f.tmp' err
	[ "$(ids)" = "" ]
}

@test "reading stdin fails: 74" {
	run -74 --separate-stderr outbox-clean </
	[[ $stderr == "outbox-clean: stdin: "* ]]
}

# --- Nothing lost (issue 10): the cleaner after the projector, poison rows, the xid epoch ---

@test "--after: a row is deleted only once every named ack file covers it" {
	rows 3
	printf '100 0\n' >proj
	idle_input
	outbox-clean -v --after proj --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	events 'id = 1' >&4
	wait_sql "SELECT NOT EXISTS (SELECT 1 FROM order_event WHERE id = 1)"
	events 'id > 1' >&4
	# The projector has only row 1: rows 2 and 3 wait for it.
	sleep 1
	[ "$(ids)" = "2 3" ]
	[ "$(cat ack)" = "100 0" ]
	printf '300 0\n' >proj.tmp && mv proj.tmp proj
	wait_sql "SELECT count(*) = 0 FROM order_event"
	for _ in $(seq 100); do [ "$(cat ack)" = "300 0" ] && break; sleep 0.1; done
	[ "$(cat ack)" = "300 0" ]
	exec 4>&-
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ "$(cat err)" = "outbox-clean: 3 deleted, 0 already gone, 0 skipped" ]
}

@test "--after: SIGTERM while waiting for the projector is a clean 0, nothing deleted or acknowledged" {
	rows 1
	events >input
	outbox-clean --after proj --ack-file ack <input 2>err 3>&- &
	pid=$!
	sleep 0.5
	kill -TERM "$pid"
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ ! -s err ]
	[ "$(ids)" = 1 ]
	[ ! -e ack ]
	# An ack file of another stream is refused.
	printf '500 0 pg:1:1:other\n' >proj
	events | jq -c '.__src = "pg:2:1:s"' >input
	run -78 --separate-stderr outbox-clean --after proj <input
	[[ $stderr == *'proj: positions of "pg:1:1:other"'* ]]
	[ "$(ids)" = 1 ]
}

@test "--reject-file: a row that client-project would refuse stays, is recorded and acknowledged" {
	rows 3
	{ events 'id = 1'; events 'id = 2' | jq -c '.order_total = "NaN"'; events 'id = 3'; } >input
	run -0 --separate-stderr outbox-clean -v --reject-file rej --ack-file ack <input
	[ "${stderr_lines[0]}" = "outbox-clean: stdin:2: order_total: must be a number (rejected)" ]
	[ "$(ids)" = 2 ]
	[ "$(cat ack)" = "300 0" ]
	[ "$(jq -r '"\(.input) \(.reason)"' rej)" = "stdin:2 order_total: must be a number" ]
	[ "$(jq -r .line rej | jq .id)" = 2 ]
}

@test "the xid epoch: a writer's xid above the snapshot's xmax, in epoch 1, is waited for, not taken for an old one" {
	# A cluster of its own, moved to xid epoch 1 with pg_resetwal.
	local bin sock data
	sock=$(mktemp -d /tmp/cqrs-epoch.XXXXXX)
	data=$sock/pg
	bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
	mkdir -p "$data"
	[ "$(id -u)" != 0 ] || chown postgres "$data" "$sock"
	as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
	as_pg "$bin/pg_resetwal" -e 1 -D "$data" >/dev/null
	as_pg "$bin/pg_ctl" -D "$data" -o "-k $sock -c listen_addresses=''" -l "$data/log" -w start >/dev/null
	: >"$BATS_TEST_TMPDIR/nopass"
	chmod 600 "$BATS_TEST_TMPDIR/nopass"
	export PGHOST=$sock PGUSER=postgres PGDATABASE=postgres PGPASSFILE=$BATS_TEST_TMPDIR/nopass
	EPOCH_STOP="$bin/pg_ctl -D $data -m immediate stop"
	EPOCH_DIR=$sock
	psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/schema.sql" -f "$CQRS_REPO/scripts/seed.sql" >/dev/null
	[ "$(psql -qXAtc 'SELECT pg_current_xact_id()::text::bigint >> 32')" = 1 ]
	# An older transaction stays open, so the snapshot's xmax stays below
	# the writer's xid; the writer holds its row uncommitted for 2 s.
	printf '%s\n' 'BEGIN;' 'SELECT txid_current();' 'SELECT pg_sleep(3);' 'COMMIT;' >older.sql
	psql -qXAt -f older.sql >older 2>&1 &
	older=$!
	wait_for_file older
	HOLD_FOR=2 hold "INSERT INTO order_event (id_client, name, email, order_total, event_date)
	    VALUES (1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820) RETURNING id, txid_current() % 4294967296"
	read -r id xid <held
	[ "$(psql -qXAtc "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint % 4294967296 < $xid")" = t ]
	event_of "$id" "$xid" >input
	run -0 --separate-stderr outbox-clean -v <input
	[ "$stderr" = "outbox-clean: 1 deleted, 0 already gone, 0 skipped" ]
	[ "$(psql -qXAtc 'SELECT count(*) FROM order_event')" = 0 ]
	wait_job "$older"
	wait_job "$holder"
	holder=
}
