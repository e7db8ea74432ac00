#!/usr/bin/env bats
# security: SQL only through parameters, least privilege with scripts/roles.sql, secrets kept out of every message.

load test_helper
bats_require_minimum_version 1.5.0

SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
# An event of client 1 (Bob, 3000.00) at position (100, 0), as outbox-tail writes it.
EVENT='{"id":1,"id_client":1,"name":"Bob","email":"bob@anemailprovider.com","order_total":3000.00,"event_date":1707484820,"__table":"public.order_event","__op":"c","__lsn":100,"__seq":0,"__xid":7,"__ts_ms":1707484820123}'
BOB='{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820}'
RPW=r3d1s-pw	# the private Redis's password

setup_file() {
	stack_setup_file
	psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql" >/dev/null
	# A second Redis, with a password; a short directory for its socket.
	SEC_DIR=$(mktemp -d /tmp/cqrs-sec.XXXXXX)
	export SEC_DIR
	redis-server --port 0 --unixsocket "$SEC_DIR/r.sock" --unixsocketperm 700 \
		--requirepass "$RPW" --daemonize yes --pidfile "$SEC_DIR/r.pid" --save '' \
		--dir "$SEC_DIR" --logfile "$SEC_DIR/r.log"
	local i
	for i in $(seq 100); do
		[ "$(redis-cli -s "$SEC_DIR/r.sock" -a "$RPW" --no-auth-warning ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	echo "setup_file: the private redis-server did not answer within 10 s" >&2
	return 1
}

teardown_file() {
	local pid i
	if [ -n "${SEC_DIR:-}" ]; then
		# By its pidfile, and only if that pid is still a redis-server.
		if pid=$(cat "$SEC_DIR/r.pid" 2>/dev/null) && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ]; then
			kill "$pid"
			for i in $(seq 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
		rm -rf "$SEC_DIR"
	fi
	stack_teardown_file
}

setup() {
	# The Redis tests touch no table: they skip the database's reset, which is slow.
	if [[ $BATS_TEST_DESCRIPTION != Redis:* ]]; then
		reset_state
		# reset_state dropped the publication: roles.sql makes it again (it is idempotent).
		psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql" >/dev/null
	fi
	rsec flushall >/dev/null
	HBA=
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	if [ -n "$HBA" ]; then
		hba_restore
	fi
	sql 'ALTER ROLE cqrs_writer PASSWORD NULL' >/dev/null
}

# rsec ARGS...: redis-cli on the private Redis, with its password.
rsec() {
	redis-cli -s "$SEC_DIR/r.sock" -a "$RPW" --no-auth-warning "$@"
}

# counts: the row counts of every table, one line.
counts() {
	sql 'SELECT (SELECT count(*) FROM "order"), (SELECT count(*) FROM order_item),
		(SELECT count(*) FROM order_event), (SELECT count(*) FROM client), (SELECT count(*) FROM product)'
}

# rows N: insert N outbox rows (client 1) in one transaction, as the owner.
rows() {
	sql "INSERT INTO order_event (id_client, name, email, order_total, event_date)
	    SELECT 1, 'Bob', 'bob@anemailprovider.com', 3000.00, 1707484820
	    FROM generate_series(1, $1)" >/dev/null
}

# events: an event line for each outbox row, position (100 * id, 0), __xid its xmin.
events() {
	sql "SELECT json_build_object('id', id, 'id_client', id_client,
	        'name', name, 'email', email, 'order_total', order_total,
	        'event_date', event_date, '__table', 'public.order_event',
	        '__op', 'c', '__lsn', 100 * id, '__seq', 0,
	        '__xid', xmin::text::bigint, '__ts_ms', 1707484820123)
	    FROM order_event ORDER BY id" | jq -c .
}

# hba_require_password: make the stack's PostgreSQL ask cqrs_writer, and only
# it, for a password (scram-sha-256) on the unix socket; teardown undoes it.
hba_require_password() {
	local i
	HBA=$CQRS_STACK_DIR/pg/data/pg_hba.conf
	cp "$HBA" "$BATS_TEST_TMPDIR/pg_hba.conf.orig"
	# Rewritten in place (not replaced), so that owner and mode stay.
	{ echo 'local all cqrs_writer scram-sha-256'; cat "$BATS_TEST_TMPDIR/pg_hba.conf.orig"; } >"$HBA"
	sql 'SELECT pg_reload_conf()' >/dev/null
	for i in $(seq 100); do
		PGPASSFILE=/nonexistent psql -wqXAt -U cqrs_writer -c 'SELECT 1' >/dev/null 2>&1 || return 0
		sleep 0.1
	done
	echo "hba_require_password: cqrs_writer still gets in without a password after 10 s" >&2
	return 1
}

hba_restore() {
	local i
	cat "$BATS_TEST_TMPDIR/pg_hba.conf.orig" >"$HBA"
	HBA=
	sql 'SELECT pg_reload_conf()' >/dev/null
	for i in $(seq 100); do
		PGPASSFILE=/nonexistent psql -wqXAt -U cqrs_writer -c 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "hba_restore: trust for cqrs_writer not back after 10 s" >&2
	return 1
}

# report_failures: print the list $failures, one a line, and fail if there is any.
report_failures() {
	[ "${#failures[@]}" -gt 0 ] || return 0
	printf '%s\n' "${failures[@]}" >&2
	return 1
}

# lacks TEXT...: $stderr contains none of the TEXTs.
lacks() {
	local t
	for t in "$@"; do
		[[ $stderr != *"$t"* ]] || { echo "stderr shows '$t': $stderr" >&2; return 1; }
	done
}

# SQL only through parameters

@test "SQL: commands assemble SQL only from constants, escaped identifiers and checked names (grep)" {
	cd "$CQRS_REPO"
	# Every SQL text that a command assembles at run time; a new one must be
	# reviewed and added here.  Values travel as $n parameters instead.
	run -0 grep -oE '(snprintf|sb_puts?|sb_put)\([^"]*"[^"]*\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT|COPY|START_REPLICATION)\b[^"]*"' cmd/*.c
	[ "$output" = 'cmd/outbox-clean.c:sb_puts(&sql, "WITH d AS (DELETE FROM "
cmd/outbox-tail.c:sb_puts(&sql, "DROP PUBLICATION IF EXISTS "
cmd/outbox-tail.c:sb_puts(&sql, "CREATE PUBLICATION "
cmd/outbox-tail.c:snprintf(cmd, sizeof(cmd), "START_REPLICATION SLOT %s LOGICAL 0/0 "' ]

	# What is spliced into them: escaped identifiers, checked names, constants.
	run -0 bash -c "grep -ohE 'sb_puts?\\(&sql, [^\"][^;]*;' cmd/*.c | sort -u"
	[ "$output" = 'sb_puts(&sql, clean_tail);
sb_puts(&sql, pub);
sb_puts(&sql, q);
sb_puts(&sql, rel ? rel : "");
sb_puts(&sql, schema ? schema : "");' ]
	grep -q '^static const char clean_tail\[\] =' cmd/outbox-clean.c
	grep -q 'schema = PQescapeIdentifier(' cmd/outbox-clean.c
	grep -q 'rel = PQescapeIdentifier(' cmd/outbox-clean.c
	grep -q 'q = quote_table(db, tables\[i\]);' cmd/outbox-tail.c
	[ "$(sed -n '/^quote_table(/,/^}/p' cmd/outbox-tail.c | grep -c 'PQescapeIdentifier(')" -eq 2 ]
	run -0 grep -A1 'START_REPLICATION SLOT' cmd/outbox-tail.c
	[[ $output == *'"(proto_version '"'1'"', publication_names '"'%s'"')", slot, pub);'* ]]
	# The slot and publication names are checked before any use.
	check=$(grep -n 'if (!valid_name(slot))' cmd/outbox-tail.c | cut -d: -f1)
	check2=$(grep -n 'if (!valid_name(pub))' cmd/outbox-tail.c | cut -d: -f1)
	use=$(grep -n 'rc = setup(conninfo, slot, pub' cmd/outbox-tail.c | cut -d: -f1)
	[ -n "$check" ] && [ -n "$check2" ] && [ -n "$use" ]
	[ "$check" -lt "$use" ] && [ "$check2" -lt "$use" ]

	# The SQL handed to libpq: literals, constants, and the texts above.
	run -0 bash -c "grep -ohE '\\bPQ(exec|execParams|sendQueryParams)\\([^,]+, [^,)]+' cmd/*.c common/*.c | sed 's/(.*, /(/' | sort"
	[ "$output" = 'PQexec("IDENTIFY_SYSTEM"
PQexec("ROLLBACK"
PQexec(cmd
PQexecParams(diag_sql
PQexecParams(sql' ]
	grep -q 'sqls\[\] = { "BEGIN", place_sql,' cmd/order-place.c
	run -0 bash -c "grep -ohE '\\bPQprepare\\([^,]+, [^,]+, [^,]+' cmd/*.c common/*.c | sed 's/.*, //' | sort"
	[ "$output" = 'sql.buf
sqls[i]' ]
	# outbox-tail's run() and count_rows(): literals (with a $1 parameter), the
	# assembled text, or count_rows passing its own literal on.
	run -0 bash -c "grep -ohE '\\b(run|count_rows)\\(db, [^,]+' cmd/outbox-tail.c | grep -v ', \"' | sort -u"
	[ "$output" = 'run(db, sql
run(db, sql.buf' ]
	[ "$(sed -n '/^count_rows(/,/^}/p' cmd/outbox-tail.c | grep -c 'run(db, sql, param, &res)')" = 1 ]
	# Nobody quotes values into SQL.
	run -1 grep -nE 'PQescape(Literal|String|StringConn|Bytea)' cmd/*.c common/*.c
}

@test "SQL: names on the command line cannot inject (slot, publication, table)" {
	run -64 --separate-stderr outbox-tail --once -p 'x; DROP TABLE client'
	run -64 --separate-stderr outbox-tail --once -s "x'; DROP TABLE client; --"
	run -78 --separate-stderr outbox-tail --once -w 1 -p evil -s evil -t 'public.order_event; DROP TABLE client'
	[[ $stderr == *'relation "public.order_event; DROP TABLE client" does not exist'* ]]
	run -78 --separate-stderr outbox-tail --once -w 1 -p evil -s evil -t 'public.order_event" WHERE true; --'
	rows 2
	before=$(counts)
	events >ev
	run -78 --separate-stderr outbox-clean -t 'public.order_event; DROP TABLE client' <ev
	[[ $stderr == *'relation "public.order_event; DROP TABLE client" does not exist'* ]]
	run -78 --separate-stderr outbox-clean -t 'public.order_event" WHERE true; --' <ev
	[ "$(counts)" = "$before" ]
	[ "$(sql "SELECT count(*) FROM pg_publication WHERE pubname = 'evil'")" = 0 ]
	[ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'evil'")" = 0 ]
}

@test "SQL: a client name that looks like SQL travels intact through order-place, outbox-tail, client-project, client-get" {
	name="Robert'); DROP TABLE client;--"
	# And an e-mail address that looks like a Redis command, in RESP.
	email=$'bob@anemailprovider.com\r\n*1\r\n$8\r\nFLUSHALL\r\n'
	run -0 --separate-stderr outbox-tail --once -w 5	# the slot: rows from now on are streamed
	[ -z "$output" ]
	sql "UPDATE client SET name = 'Robert''); DROP TABLE client;--',
		email = E'bob@anemailprovider.com\\r\\n*1\\r\\n\$8\\r\\nFLUSHALL\\r\\n' WHERE id = 1"
	[ "$(sql 'SELECT name FROM client WHERE id = 1')" = "$name" ]
	rcli set sentinel still-here >/dev/null

	run -0 --separate-stderr order-place <<<"$SAMPLE"
	run -0 --separate-stderr outbox-tail --once -w 5
	[ "${#lines[@]}" -eq 1 ]
	printf '%s\n' "$output" >ev
	[ "$(jq -r .name ev)" = "$name" ]
	[ "$(jq -j .email ev; echo .)" = "$email." ]	# "." keeps the final newline
	run -0 --separate-stderr client-project <ev
	run -0 --separate-stderr client-get 1
	[ "$(jq -r .name <<<"$output")" = "$name" ]
	[ "$(jq -j .email <<<"$output"; echo .)" = "$email." ]
	[[ $output == *'"total":3000.0,"last_purchase":'* ]]

	# The tables are all there, with their rows; Redis was not flushed.
	[ "$(sql "SELECT count(to_regclass(t)) FROM unnest(ARRAY['client', 'product', 'order', 'order_item', 'order_event']) t")" = 5 ]
	[ "$(counts)" = "1|2|1|3|3" ]
	[ "$(sql 'SELECT name FROM order_event')" = "$name" ]
	[ "$(rcli get sentinel)" = still-here ]
	[ "$(rcli --scan | sort | paste -sd ' ')" = "client:1 sentinel" ]
}

# Least privilege (scripts/roles.sql)

@test "roles: each command works under its own role" {
	run -0 --separate-stderr env PGUSER=cqrs_tailer outbox-tail --once -w 5
	[[ $stderr == *"created slot cqrs_outbox"* ]]
	[[ $stderr != *"created publication"* ]]	# roles.sql made it: the tailer cannot
	[ -z "$output" ]

	run -0 --separate-stderr env PGUSER=cqrs_writer order-place <<<"$SAMPLE"
	[ -z "$stderr" ]
	id_event=$(jq .id_event <<<"$output")
	[ "$(counts)" = "1|2|1|3|3" ]

	run -0 --separate-stderr env PGUSER=cqrs_tailer outbox-tail --once -w 5
	[ "${#lines[@]}" -eq 1 ]
	printf '%s\n' "$output" >ev
	[ "$(jq -c '[.id, .id_client, .__table]' ev)" = "[$id_event,1,\"public.order_event\"]" ]
	grep -q '"order_total":3000.00,' ev

	run -0 --separate-stderr env PGUSER=cqrs_cleaner outbox-clean <ev
	[ -z "$stderr" ]
	[ "$(counts)" = "1|2|0|3|3" ]
}

@test "roles: each refused action exits 77 with PostgreSQL's reason and changes nothing" {
	local -a failures=()
	rows 3
	events >ev

	# refuse ROLE REASON COMMAND ARGS...: COMMAND as ROLE exits 77, says REASON
	# (an extended regex), prints nothing, and leaves rows and slots alone.
	counts_slots() {
		sql 'SELECT (SELECT count(*) FROM "order"), (SELECT count(*) FROM order_item),
			(SELECT count(*) FROM order_event), (SELECT count(*) FROM client),
			(SELECT count(*) FROM product), (SELECT count(*) FROM pg_replication_slots)'
	}
	refuse() {
		local role=$1 reason=$2 before
		shift 2
		before=$(counts_slots)
		run --separate-stderr env PGUSER="$role" "$@"
		[ "$status" -eq 77 ] || failures+=("$role $1: exit $status, want 77: $stderr")
		[[ $stderr =~ $reason ]] || failures+=("$role $1: stderr lacks /$reason/: $stderr")
		[ -z "$output" ] || failures+=("$role $1: stdout: $output")
		[ "$(counts_slots)" = "$before" ] ||
			failures+=("$role $1: rows or slots changed: $before -> $(counts_slots)")
	}

	refuse cqrs_cleaner '^order-place: stdin:1: permission denied for table (product|client|order|order_item|order_event)$' \
		order-place <<<"$SAMPLE"
	refuse cqrs_writer '^outbox-clean: database: permission denied for table order_event$' outbox-clean <ev
	refuse cqrs_tailer '^outbox-clean: database: permission denied for table order_event$' outbox-clean <ev
	# No slot yet: refused when creating it.
	refuse cqrs_writer '^outbox-tail: database: must be superuser or replication role' outbox-tail --once -w 1
	refuse cqrs_cleaner '^outbox-tail: database: must be superuser or replication role' outbox-tail --once -w 1
	# The tailer's slot exists: refused when streaming from it.
	run -0 --separate-stderr env PGUSER=cqrs_tailer outbox-tail --once -w 5
	refuse cqrs_writer '^outbox-tail: database: .*must be superuser or replication role' outbox-tail --once -w 1
	refuse cqrs_cleaner '^outbox-tail: database: .*must be superuser or replication role' outbox-tail --once -w 1

	[ "$(sql 'SELECT string_agg(id::text, $$ $$ ORDER BY id) FROM order_event')" = "1 2 3" ]
	report_failures
}

# Passwords for PostgreSQL: never in a message

@test "a password in -d never shows in a message (69 unreachable, 78 malformed)" {
	local -a failures=()
	local cmd d want
	rows 1
	events >ev
	before=$(counts)
	for cmd in order-place outbox-tail outbox-clean; do
		for d in '69 host=/nonexistent password=s3cr3t-xyz' \
			'78 password=s3cr3t-xyz bogus' \
			'69 postgresql://u:s3cr3t-xyz@/orders?host=/nonexistent' \
			"78 password='s3cr3t-xyz" \
			'78 postgresql://u:s3cr3t-xyz@/orders?host=/nonexistent&bogus=1'; do
			want=${d%% *} d=${d#* }
			case $cmd in
			order-place) run --separate-stderr order-place -d "$d" <<<"$SAMPLE" ;;
			outbox-tail) run --separate-stderr outbox-tail -d "$d" --once -w 1 ;;
			outbox-clean) run --separate-stderr outbox-clean -d "$d" <ev ;;
			esac
			[ "$status" -eq "$want" ] || failures+=("$cmd -d '$d': exit $status, want $want: $stderr")
			[[ $stderr == "$cmd: "* ]] || failures+=("$cmd -d '$d': no message: $stderr")
			[[ $stderr != *s3cr3t* ]] || failures+=("$cmd -d '$d': the password shows: $stderr")
		done
	done
	[ "$(counts)" = "$before" ]
	report_failures
}

@test "a password under a percent-encoded keyword in a malformed URI never shows" {
	# libpq decodes URI query keywords: pass%77ord is password.  Its parse
	# error quotes the value, and the check for "password" misses it.
	local -a failures=()
	for cmd in order-place outbox-tail outbox-clean; do
		run --separate-stderr "$cmd" -d 'postgresql:///orders?pass%77ord=s3cr3t-xyz%zz' </dev/null
		[ "$status" -eq 78 ] || failures+=("$cmd: exit $status, want 78: $stderr")
		[[ $stderr != *s3cr3t* ]] || failures+=("$cmd: the password shows: $stderr")
	done
	report_failures
}

@test "a conninfo with a password and an invalid option value: 78, the password not shown" {
	# Not a server that could not be reached (69): retrying cannot help.
	local -a failures=()
	for cmd in order-place outbox-tail outbox-clean; do
		for d in 'host=/nonexistent password=s3cr3t-xyz port=bad' \
			'postgresql://u:s3cr3t-xyz@/orders?host=/nonexistent&sslmode=bogus'; do
			run --separate-stderr "$cmd" -d "$d" </dev/null
			[ "$status" -eq 78 ] || failures+=("$cmd -d '$d': exit $status, want 78: $stderr")
			[[ $stderr != *s3cr3t* ]] || failures+=("$cmd -d '$d': the password shows: $stderr")
		done
	done
	report_failures
}

@test "PGPASSWORD from the environment is used, and harmless with trust" {
	run -0 --separate-stderr env PGPASSWORD=anything order-place <<<"$SAMPLE"
	[ -z "$stderr" ]
	[ "$(counts)" = "1|2|1|3|3" ]
	run -0 --separate-stderr env PGPASSWORD=anything outbox-tail --once -w 5
	run -0 --separate-stderr env PGPASSWORD=anything outbox-clean </dev/null
}

@test "password authentication (scram) for cqrs_writer: wrong or none is 77 and not shown; PGPASSWORD and PGPASSFILE work" {
	sql "ALTER ROLE cqrs_writer PASSWORD 'w-secret-1'" >/dev/null
	hba_require_password
	export PGPASSFILE=$BATS_TEST_TMPDIR/no-pgpass	# nothing from ~/.pgpass
	before=$(counts)

	run -77 --separate-stderr env PGUSER=cqrs_writer order-place <<<"$SAMPLE"
	[[ $stderr == "order-place: database: "*"no password supplied"* ]]
	run -77 --separate-stderr env PGUSER=cqrs_writer order-place -d "password=wr0ng-pw-xyz" <<<"$SAMPLE"
	[[ $stderr == "order-place: database: "*'password authentication failed for user "cqrs_writer"'* ]]
	lacks wr0ng-pw-xyz w-secret-1
	run -77 --separate-stderr env PGUSER=cqrs_writer PGPASSWORD=wr0ng-pw-xyz order-place <<<"$SAMPLE"
	lacks wr0ng-pw-xyz w-secret-1
	run -77 --separate-stderr order-place -d "postgresql://cqrs_writer:wr0ng-pw-xyz@/orders?host=$PGHOST" <<<"$SAMPLE"
	lacks wr0ng-pw-xyz w-secret-1
	run -77 --separate-stderr outbox-tail -d "user=cqrs_writer password=wr0ng-pw-xyz" --once -w 1
	lacks wr0ng-pw-xyz w-secret-1
	run -77 --separate-stderr outbox-clean -d "user=cqrs_writer password=wr0ng-pw-xyz" </dev/null
	lacks wr0ng-pw-xyz w-secret-1
	[ "$(counts)" = "$before" ]

	# The right one, kept off the command line.
	run -0 --separate-stderr env PGUSER=cqrs_writer PGPASSWORD=w-secret-1 order-place <<<"$SAMPLE"
	[ -z "$stderr" ]
	echo "*:*:*:cqrs_writer:w-secret-1" >"$PGPASSFILE"
	chmod 600 "$PGPASSFILE"
	run -0 --separate-stderr env PGUSER=cqrs_writer order-place <<<"$SAMPLE"
	[ -z "$stderr" ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2 ]
}

# Passwords for Redis

@test "Redis: the password in REDIS_URL works for client-project and client-get" {
	export REDIS_URL=unix://:$RPW@$SEC_DIR/r.sock
	run -0 --separate-stderr client-project <<<"$EVENT"
	[ -z "$stderr" ]
	[ "$(rsec hget client:1 total)" = 300000 ]
	run -0 --separate-stderr client-get 1
	[ "$output" = "$BOB" ]
	[ -z "$stderr" ]
}

@test "Redis: a wrong password or none is 77, and no password shows" {
	rsec hset client:1 name Bob email bob@anemailprovider.com total 300000 last_purchase 1707484820 >/dev/null
	for url in "unix://:wr0ng-pw-xyz@$SEC_DIR/r.sock" "unix://default:wr0ng-pw-xyz@$SEC_DIR/r.sock" \
		"unix://$SEC_DIR/r.sock"; do
		REDIS_URL=$url run -77 --separate-stderr client-project <<<"$EVENT"
		[[ $stderr == "client-project: redis: "* ]]
		lacks wr0ng-pw-xyz "$RPW"
		REDIS_URL=$url run -77 --separate-stderr client-get 1
		[[ $stderr == "client-get: redis: "* ]]
		[ -z "$output" ]
		lacks wr0ng-pw-xyz "$RPW"
		# The same in -r.
		run -77 --separate-stderr client-get -r "$url" 1
		lacks wr0ng-pw-xyz "$RPW"
	done
	[ "$(rsec hget client:1 total)" = 300000 ]
	[ "$(rsec dbsize)" = 1 ]
}

@test "Redis: -P password-file works for both commands, and wins over the URL's password" {
	printf '%s\n' "$RPW" >pw
	chmod 600 pw
	export REDIS_URL=unix://$SEC_DIR/r.sock
	run -0 --separate-stderr client-project -P pw <<<"$EVENT"
	[ -z "$stderr" ]
	run -0 --separate-stderr client-get -P pw 1
	[ "$output" = "$BOB" ]
	run -0 --separate-stderr client-get --password-file=pw -r "unix://:wr0ng-pw-xyz@$SEC_DIR/r.sock" 1
	[ "$output" = "$BOB" ]
	# A wrong password in the file: 77, and the file's content not shown.
	printf 'wr0ng-pw-xyz\n' >bad
	run -77 --separate-stderr client-get -P bad 1
	lacks wr0ng-pw-xyz "$RPW"
	run -77 --separate-stderr client-project -P bad <<<"$EVENT"
	lacks wr0ng-pw-xyz "$RPW"
	[ "$(rsec hget client:1 total)" = 300000 ]
}

@test "Redis: -P with a missing or empty file is 78" {
	export REDIS_URL=unix://$SEC_DIR/r.sock
	: >empty
	for f in "$BATS_TEST_TMPDIR/missing" empty; do
		run -78 --separate-stderr client-project -P "$f" <<<"$EVENT"
		[[ $stderr == "client-project: "*"$f"* ]]
		run -78 --separate-stderr client-get -P "$f" 1
		[[ $stderr == "client-get: "*"$f"* ]]
		[ -z "$output" ]
	done
	[ "$(rsec dbsize)" = 0 ]
}

@test "Redis: -h and connection errors never show the password of REDIS_URL" {
	export REDIS_URL=redis://:p4ss-xyz@127.0.0.1:1
	run -69 --separate-stderr client-get 1
	[[ $stderr == "client-get: redis: 127.0.0.1:1: "* ]]
	lacks p4ss-xyz
	run -69 --separate-stderr client-project <<<"$EVENT"
	[[ $stderr == "client-project: redis: 127.0.0.1:1: "* ]]
	lacks p4ss-xyz
	run -69 --separate-stderr client-get -r redis://:p4ss-xyz@127.0.0.1:1/2 1
	lacks p4ss-xyz
	REDIS_URL=unix://:p4ss-xyz@$BATS_TEST_TMPDIR/no.sock run -69 --separate-stderr client-get 1
	lacks p4ss-xyz
	run -78 --separate-stderr client-get -r redis://:p4ss-xyz@127.0.0.1:1/x 1
	lacks p4ss-xyz
	for cmd in client-get client-project; do
		run -64 --separate-stderr "$cmd" -h
		[[ $stderr == "usage: $cmd "* ]]
		lacks p4ss-xyz
	done
}

@test "Redis: a password with a literal @ in a unix:// URL never shows in a message" {
	# The man page asks for %40, but redis:// takes the last @ as the end of
	# the password; unix:// takes the first, and names the rest as the path.
	local -a failures=()
	export REDIS_URL="unix://:p4ss@w0rd-xyz@$SEC_DIR/r.sock"
	run --separate-stderr client-get 1
	[[ $stderr != *w0rd-xyz* ]] || failures+=("client-get: part of the password shows: $stderr")
	run --separate-stderr client-project <<<"$EVENT"
	[[ $stderr != *w0rd-xyz* ]] || failures+=("client-project: part of the password shows: $stderr")
	report_failures
}
