#!/usr/bin/env bats
# security: SQL only through parameters, least privilege with scripts/roles.sql, secrets kept out of every message.

load test_helper
bats_require_minimum_version 1.5.0

SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
# An event of client 1 (Bob, 3000.00) at position (100, 0), as outbox-tail writes it.
EVENT='{"id":1,"id_client":1,"name":"Bob","email":"bob@anemailprovider.com","order_total":3000.00,"event_date":1707484820,"__table":"public.order_event","__op":"c","__lsn":100,"__seq":0,"__xid":7,"__ts_ms":1707484820123}'
BOB='{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820,"id_client":1}'
RPW=r3d1s-pw	# the private Redis's password

setup_file() {
	stack_setup_file
	psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql" >/dev/null
	# The stack asks every role for its password: generated ones, in the stack's password file.
	stack_password cqrs_writer cqrs_tailer cqrs_cleaner cqrs_monitor
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
	WRITER_PW=
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	# A test gave the writer a password of its own: a generated one again.
	if [ -n "$WRITER_PW" ]; then
		stack_password cqrs_writer
	fi
}

# writer_password PW: cqrs_writer's password is PW (a test's, not a secret) until teardown.
writer_password() {
	WRITER_PW=1
	sql "ALTER ROLE cqrs_writer PASSWORD '$1'" >/dev/null
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

# The stack

@test "another user cannot connect to the stack" {
	local real pw h
	# The sockets, their directories and the password files: the owner's only.
	real=$(readlink -f "$PGHOST")
	[ "$(stat -c %a "$real")" = 700 ]
	[ "$(stat -c %a "$real/.s.PGSQL.$PGPORT")" = 700 ]
	[ "$(stat -c %a "$CQRS_STACK_DIR/redis")" = 700 ]
	[ "$(stat -c %a "$CQRS_STACK_DIR/redis/redis.sock")" = 700 ]
	[ "$(stat -c %a "$PGPASSFILE")" = 600 ]
	[ "$(stat -c %a "$CQRS_STACK_DIR/postgres.password")" = 600 ]
	[ "$(sql "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256' OR type <> 'local'")" = 0 ]
	[ "$(id -u)" -eq 0 ] || skip "only root can act as another user"
	pw=$(cat "$CQRS_STACK_DIR/postgres.password")
	# By the handle and by the real directory (as root, postgres's, under /var/lib),
	# even with the password.
	for h in "$PGHOST" "$real"; do
		run runuser -u nobody -- psql -X -h "$h" -U postgres -d orders -c 'select 1'
		[ "$status" -ne 0 ]
		[[ $output == *"Permission denied"* ]]
		run runuser -u nobody -- env PGPASSWORD="$pw" psql -wX -h "$h" -U postgres -d orders -c 'select 1'
		[ "$status" -ne 0 ]
		[[ $output == *"Permission denied"* ]]
	done
	run runuser -u nobody -- redis-cli -s "$CQRS_STACK_DIR/redis/redis.sock" ping
	[[ $output != *PONG* ]]
	# The stack's owner gets in.
	[ "$(sql 'SELECT 1')" = 1 ]
}

# SQL only through parameters

@test "SQL: commands assemble SQL only from constants, escaped identifiers and checked names (grep)" {
	cd "$CQRS_REPO"
	# Every SQL text that a command assembles at run time; a new one must be
	# reviewed and added here.  Values travel as $n parameters instead.
	run -0 grep -oE '(snprintf|sb_puts?|sb_put)\([^"]*"[^"]*\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT|COPY|START_REPLICATION)\b[^"]*"' cmd/*.c
	[ "$output" = 'cmd/outbox-clean.c:sb_puts(&sql, "WITH d AS (DELETE FROM "
cmd/outbox-status.c:sb_puts(&sql, "SELECT count(*), min(event_date)::text, "
cmd/outbox-tail.c:sb_puts(&sql, "DROP PUBLICATION IF EXISTS "
cmd/outbox-tail.c:sb_puts(&sql, "CREATE PUBLICATION "
cmd/outbox-tail.c:sb_puts(&sql, "SELECT quote_ident(schemaname) || '"'"'.'"'"' || "
cmd/outbox-tail.c:sb_puts(&sql, "SELECT t.*, t.xmin FROM "
cmd/outbox-tail.c:snprintf(cmd, sizeof(cmd), "START_REPLICATION SLOT %s LOGICAL 0/0 "' ]

	# What is spliced into them: escaped identifiers, checked names, constants.
	run -0 bash -c "grep -ohE 'sb_puts?\\(&sql, [^\"][^;]*;' cmd/*.c | sort -u"
	[ "$output" = 'sb_puts(&sql, PQgetvalue(tabs, i, 0));
sb_puts(&sql, clean_tail);
sb_puts(&sql, q ? q : "'"''"'");
sb_puts(&sql, q ? q : t->pub);
sb_puts(&sql, q);
sb_puts(&sql, rel ? rel : "");
sb_puts(&sql, schema ? schema : "");' ]
	# quote_ident() by the server; escaped literals and identifiers by libpq
	grep -q "SELECT quote_ident(schemaname) || '.' || " cmd/outbox-tail.c
	[ "$(grep -c 'q = PQescapeIdentifier(t->db, t->pub, strlen(t->pub));' cmd/outbox-tail.c)" = 2 ]
	grep -q 'q = PQescapeLiteral(t->repl, t->pub, strlen(t->pub));' cmd/outbox-tail.c
	grep -q '^static const char clean_tail\[\] =' cmd/outbox-clean.c
	grep -q 'schema = PQescapeIdentifier(' cmd/outbox-clean.c
	grep -q 'rel = PQescapeIdentifier(' cmd/outbox-clean.c
	grep -q 'q = quote_table(t->db, t->tables\[i\]);' cmd/outbox-tail.c
	[ "$(sed -n '/^quote_table(/,/^}/p' cmd/outbox-tail.c | grep -c 'PQescapeIdentifier(')" -eq 2 ]
	run -0 grep -A1 'START_REPLICATION SLOT' cmd/outbox-tail.c
	[[ $output == *'"(proto_version '"'1'"', publication_names '"'%s'"')", t->slot, t->pub);'* ]]
	# The slot and publication names are checked before any use.
	check=$(grep -n 'if (!valid_name(t->slot)' cmd/outbox-tail.c | cut -d: -f1)
	check2=$(grep -n 'if (!valid_name(t->pub))' cmd/outbox-tail.c | cut -d: -f1)
	use=$(grep -n 'status = prepare(&t)' cmd/outbox-tail.c | cut -d: -f1)
	[ "$(grep -n 'parse_options(&t, argc, argv);' cmd/outbox-tail.c | cut -d: -f1)" -lt "$use" ]
	[ -n "$check" ] && [ -n "$check2" ] && [ -n "$use" ]
	[ "$check" -lt "$use" ] && [ "$check2" -lt "$use" ]

	# The SQL handed to libpq: literals, constants, and the texts above.
	run -0 bash -c "grep -ohE '\\bPQ(exec|execParams|sendQuery|sendQueryParams)\\([^,]+, [^,)]+' cmd/*.c common/*.c | sed 's/(.*, /(/' | sort"
	[ "$output" = 'PQexec("BEGIN READ ONLY ISOLATION LEVEL "
PQexec("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ"
PQexec("COMMIT"
PQexec("COMMIT"
PQexec("IDENTIFY_SYSTEM"
PQexec("ROLLBACK"
PQexec(cmd
PQexec(cmd
PQexec(detect_sql
PQexec(sql
PQexec(sql.buf
PQexecParams("SELECT set_config('"'statement_timeout'"'
PQexecParams(diag_sql
PQexecParams(rmd_truth_one_sql
PQexecParams(sql
PQexecParams(sql
PQsendQuery(rmd_truth_all_sql
PQsendQuery(rmd_truth_all_sql
PQsendQuery(sql.buf' ]
	# client-rebuild's simple() takes literals, and one text made with a pid
	# (the replication connection takes no parameters).
	[ "$(grep -c 'simple(b, [^"]' cmd/client-rebuild.c)" = 1 ]
	grep -q 'snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT cqrs_rebuild_%ld "' cmd/client-rebuild.c
	# Orders: constant texts in common/ord.c, chosen, never assembled.
	grep -q 'const char \*sqls\[3\] = { "BEGIN", NULL, "COMMIT" };' common/ord.c
	grep -q 'sqls\[1\] = \*path == ORD_FUNCTION ? func_sql : plain_sql;' common/ord.c
	for v in func_sql plain_sql diag_sql detect_sql; do
		grep -q "^static const char $v\\[\\] =" common/ord.c
	done
	# The read model's truth: two constant texts with parameters.
	grep -q '^const char rmd_truth_one_sql\[\] =' common/rmd.c
	grep -q '^const char rmd_truth_all_sql\[\] =' common/rmd.c
	run -0 bash -c "grep -ohE '\\bPQprepare\\([^,]+, [^,]+, [^,]+' cmd/*.c common/*.c | sed 's/.*, //' | sort"
	[ "$output" = 'sql.buf
sqls[i]' ]
	# outbox-tail's query(): literals (with a $1 parameter), or the assembled text.
	run -0 bash -c "grep -ohE '\\bquery\\(t->db, [^,]+' cmd/outbox-tail.c | grep -v ', \"' | sort -u"
	[ "$output" = 'query(t->db, sql.buf' ]
	# Nobody quotes values into SQL; the one exception is the checked
	# publication name, on the replication connection, which takes no
	# parameters.
	run -0 grep -nE 'PQescape(Literal|String|StringConn|Bytea)' cmd/*.c common/*.c
	[ "${#lines[@]}" = 1 ]
	[[ $output == *'q = PQescapeLiteral(t->repl, t->pub, strlen(t->pub));'* ]]
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
	[ "$(rcli --scan | sort | paste -sd ' ')" = "client:1 cqrs:model sentinel {client:1}:ids" ]
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

	refuse cqrs_cleaner '^order-place: stdin:1: permission denied for function cqrs_place_order$' \
		order-place <<<"$SAMPLE"
	refuse cqrs_writer '^outbox-clean: database: permission denied for table order_event$' outbox-clean <ev
	refuse cqrs_tailer '^outbox-clean: database: permission denied for table order_event$' outbox-clean <ev
	# No slot yet: refused when creating it.
	refuse cqrs_writer '^outbox-tail: database: .*must be superuser or replication role' outbox-tail --once -w 1
	refuse cqrs_cleaner '^outbox-tail: database: .*must be superuser or replication role' outbox-tail --once -w 1
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

@test "the stack asks for a password: none is 77; PGPASSWORD from the environment is used, and wins over the password file" {
	run -77 --separate-stderr env PGPASSFILE=/nonexistent order-place <<<"$SAMPLE"
	[[ $stderr == "order-place: database: "*"no password supplied"* ]]
	run -77 --separate-stderr env PGPASSWORD=wr0ng-pw-xyz order-place <<<"$SAMPLE"
	[[ $stderr == "order-place: database: "*'password authentication failed for user "postgres"'* ]]
	lacks wr0ng-pw-xyz
	[ "$(counts)" = "0|0|0|3|3" ]
	pw=$(cat "$CQRS_STACK_DIR/postgres.password")
	run -0 --separate-stderr env PGPASSFILE=/nonexistent PGPASSWORD="$pw" order-place <<<"$SAMPLE"
	[ -z "$stderr" ]
	[ "$(counts)" = "1|2|1|3|3" ]
	run -0 --separate-stderr env PGPASSFILE=/nonexistent PGPASSWORD="$pw" outbox-tail --once -w 5
	run -0 --separate-stderr env PGPASSFILE=/nonexistent PGPASSWORD="$pw" outbox-clean </dev/null
	[[ "$output$stderr" != *"$pw"* ]]
}

@test "password authentication (scram) for cqrs_writer: wrong or none is 77 and not shown; PGPASSWORD and PGPASSFILE work" {
	writer_password w-secret-1
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
		run -0 --separate-stderr "$cmd" -h
		[[ $output == "usage: $cmd "* ]]
		[[ $output != *p4ss-xyz* ]]
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

# Least privilege, role by role, with psql: what each role must not do.

# denied ROLE SQL...: each SQL, as ROLE, fails with a privilege error; failures listed.
denied() {
	local role=$1 q
	shift
	for q in "$@"; do
		run psql -qXAt -U "$role" -v ON_ERROR_STOP=1 -c "$q"
		if [ "$status" -eq 0 ] || [[ $output != *"permission denied"* && $output != *"must be owner"* ]]; then
			failures+=("$role may: $q: exit $status: $output")
		fi
	done
}

@test "least privilege: the writer cannot insert into order_event, order_item or \"order\", nor update or delete anything" {
	local -a failures=()
	rows 1
	sql 'INSERT INTO "order" (id_client, placement_date) VALUES (1, 1707484820)' >/dev/null
	before=$(counts)
	denied cqrs_writer \
		"INSERT INTO order_event (id_client, name, email, order_total, event_date) VALUES (1, 'Mallory', 'm@evil', -5000.00, 4102444800)" \
		'INSERT INTO order_item (id_order, id_product, price_when_item_was_ordered, quantity) SELECT min(id), 1, 0.01, 1 FROM "order"' \
		"INSERT INTO order_item (id_order, id_product, price_when_item_was_ordered, quantity) VALUES (1, 1, 0.01, 1)" \
		'INSERT INTO "order" (id_client, placement_date) VALUES (1, 1)' \
		"INSERT INTO order_request (key, fingerprint, id_order, id_event, order_total, placement_date) VALUES ('k', 'f', 1, 1, 1, 1)" \
		"INSERT INTO client (name, email) VALUES ('x', 'y')" "INSERT INTO product (name, price) VALUES ('x', 0)" \
		'UPDATE product SET price = 0' "UPDATE client SET name = 'Mallory'" 'UPDATE order_event SET order_total = 0' \
		'UPDATE "order" SET id_client = 2' 'UPDATE order_item SET quantity = 9' 'UPDATE order_request SET id_order = 0' \
		'DELETE FROM order_event' 'DELETE FROM order_item' 'DELETE FROM "order"' 'DELETE FROM client' \
		'DELETE FROM product' 'DELETE FROM order_request' 'TRUNCATE order_event' \
		"SELECT nextval('order_event_id_seq')" "SELECT setval('order_id_seq', 1)" \
		'SELECT count(*) FROM order_event' 'SELECT count(*) FROM "order"' 'SELECT count(*) FROM order_request' \
		'CREATE TABLE public.x (id int)' \
		'CREATE OR REPLACE FUNCTION cqrs_place_order(p_client int, p_products int[], p_quantities int[], p_request_id text DEFAULT NULL) RETURNS TABLE (id_order bigint, id_event bigint, order_total numeric, placement_date bigint, replayed boolean) LANGUAGE sql AS $$ SELECT 1::bigint, 1::bigint, 0::numeric, 0::bigint, false $$'
	[ "$(counts)" = "$before" ] || failures+=("rows changed: $before -> $(counts)")
	# What it may do: read clients and products, place a checked order.
	run -0 psql -qXAt -U cqrs_writer -c 'SELECT count(*) FROM client' -c 'SELECT count(*) FROM product'
	run psql -qXAt -U cqrs_writer -c "SELECT * FROM cqrs_place_order(1, '{1}', '{-5}')"
	[[ $output == *"products[0].quantity: must be an integer from 1 to 1000000"* ]] || failures+=("a negative quantity: $output")
	run -0 psql -qXAt -U cqrs_writer -c "SELECT order_total FROM cqrs_place_order(1, '{1,2}', '{1,3}')"
	[ "$output" = 3000.00 ] || failures+=("the order: $output")
	[ "$(sql "SELECT name || ' ' || order_total FROM order_event ORDER BY id DESC LIMIT 1")" = "Bob 3000.00" ]
	report_failures
}

@test "least privilege: the cleaner cannot insert or update; the tailer cannot read order_item" {
	local -a failures=()
	rows 2
	sql 'INSERT INTO "order" (id_client, placement_date) VALUES (1, 1707484820)' >/dev/null
	sql 'INSERT INTO order_item (id_order, id_product, price_when_item_was_ordered, quantity) VALUES (1, 1, 1500, 1)' >/dev/null
	before=$(counts)
	denied cqrs_cleaner \
		"INSERT INTO order_event (id_client, name, email, order_total, event_date) VALUES (1, 'Mallory', 'm@evil', -5000.00, 4102444800)" \
		"INSERT INTO order_event SELECT * FROM order_event" \
		'INSERT INTO order_item (id_order, id_product, price_when_item_was_ordered, quantity) VALUES (1, 1, 0.01, 1)' \
		'INSERT INTO "order" (id_client, placement_date) VALUES (1, 1)' \
		"INSERT INTO order_request (key, fingerprint, id_order, id_event, order_total, placement_date) VALUES ('k', 'f', 1, 1, 1, 1)" \
		"INSERT INTO client (name, email) VALUES ('x', 'y')" \
		'UPDATE order_event SET order_total = 0' "UPDATE client SET name = 'Mallory'" 'UPDATE product SET price = 0' \
		'UPDATE "order" SET id_client = 2' 'UPDATE order_item SET quantity = 9' 'UPDATE order_request SET id_order = 0' \
		'DELETE FROM order_item' 'DELETE FROM "order"' 'DELETE FROM client' \
		"SELECT * FROM cqrs_place_order(1, '{1}', '{1}')" 'SELECT name, email FROM order_event'
	denied cqrs_tailer \
		'SELECT * FROM order_item' 'SELECT count(*) FROM order_item' 'SELECT * FROM "order"' \
		'SELECT * FROM order_request' \
		"INSERT INTO order_event (id_client, name, email, order_total, event_date) VALUES (1, 'M', 'm', 1, 1)" \
		'UPDATE order_event SET order_total = 0' 'DELETE FROM order_event' \
		"SELECT * FROM cqrs_place_order(1, '{1}', '{1}')"
	[ "$(counts)" = "$before" ] || failures+=("rows changed: $before -> $(counts)")
	run -0 psql -qXAt -U cqrs_tailer -c 'SELECT count(*) FROM order_event'
	[ "$output" = 2 ] || failures+=("the tailer reads the outbox: $output")
	report_failures
}

@test "roles.sql is idempotent and takes back what an older roles.sql granted" {
	sql 'GRANT INSERT ON order_event, order_item, "order" TO cqrs_writer;
		GRANT USAGE ON SEQUENCE order_event_id_seq TO cqrs_writer; GRANT UPDATE ON order_event TO cqrs_cleaner' >/dev/null
	run -0 psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql"
	run -0 psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql"
	local -a failures=()
	denied cqrs_writer "INSERT INTO order_event (id_client, name, email, order_total, event_date) VALUES (1, 'M', 'm', 1, 1)"
	denied cqrs_cleaner 'UPDATE order_event SET order_total = 0'
	report_failures
	[ "$(sql "SELECT count(*) FROM pg_publication WHERE pubname = 'cqrs_outbox'")" = 1 ]
	run -0 --separate-stderr env PGUSER=cqrs_writer order-place -v <<<"$SAMPLE"
	[ "$stderr" = "order-place: placing orders through the function cqrs_place_order()" ]
}

# A distinctive password through every option and variable of every command

SECRET=Zq9-s3cr3tPW-Xk
# try LABEL CMD...: CMD fails (not 0) and its outputs hold no part of $SECRET;
# failures listed.
try() {
	local label=$1
	shift
	run --separate-stderr "$@"
	[ "$status" -ne 0 ] || failures+=("$label: exit 0")
	if [[ "$output$stderr" == *Zq9* || "$output$stderr" == *s3cr3t* || "$output$stderr" == *Xk* ]]; then
		failures+=("$label: exit $status: the password shows: $stderr $output")
	fi
}

# httpd_try LABEL ARGS...: cqrs-httpd ARGS; if it starts, a POST and a GET, then SIGTERM;
# its outputs and the answers hold no part of $SECRET.
httpd_try() {
	local label=$1 i port= pid all
	shift
	cqrs-httpd --htpasswd "$BATS_TEST_TMPDIR/htpasswd" -l 127.0.0.1:0 "$@" >hout 2>herr 3>&- &
	pid=$!
	for i in $(seq 100); do
		port=$(sed -n 's|^cqrs-httpd: listening on http://127.0.0.1:\([0-9]*\).*|\1|p' herr)
		[ -n "$port" ] || ! kill -0 "$pid" 2>/dev/null || { sleep 0.05; continue; }
		break
	done
	: >hans
	if [ -n "$port" ]; then
		curl -s -u "admin:$APW" -H 'Content-Type: application/json' -d "$SAMPLE" "http://127.0.0.1:$port/orders" >>hans
		curl -s -u "admin:$APW" "http://127.0.0.1:$port/clients/1" >>hans
		curl -s -u "admin:$SECRET" "http://127.0.0.1:$port/clients/1" >>hans
		kill -TERM "$pid"
	fi
	wait "$pid" || true
	all=$(cat hout herr hans)
	if [[ $all == *Zq9* || $all == *s3cr3t* || $all == *Xk* ]]; then
		failures+=("cqrs-httpd $label: the password shows: $all")
	fi
}

@test "secrets: a password in any option or variable of any command never shows, whatever fails" {
	local -a failures=()
	local d r cmd
	APW=adm1n-pw
	echo "admin:$(openssl passwd -6 "$APW")" >"$BATS_TEST_TMPDIR/htpasswd"
	rows 1
	events >ev
	writer_password w-secret-1
	export PGPASSFILE=$BATS_TEST_TMPDIR/no-pgpass
	before=$(counts)

	# PostgreSQL: -d (malformed, unreachable, refused) and PGPASSWORD.
	for d in "password=$SECRET bogus" "password='$SECRET" "host=/nonexistent password=$SECRET" \
		"host=/nonexistent password=$SECRET port=bad" "postgresql://u:$SECRET@/orders?host=/nonexistent" \
		"postgresql://u:$SECRET@/orders?host=/nonexistent&bogus=1" "postgresql:///orders?pass%77ord=$SECRET%zz" \
		"user=cqrs_writer password=$SECRET" "postgresql://cqrs_writer:$SECRET@/orders?host=$PGHOST" \
		"postgresql://cqrs_writer:$(printf %s "$SECRET" | sed 's/-/%2D/g')@/orders?host=$PGHOST"; do
		try "order-place -d '$d'" order-place -d "$d" <<<"$SAMPLE"
		try "outbox-tail -d '$d'" outbox-tail -d "$d" --once -w 1
		try "outbox-clean -d '$d'" outbox-clean -d "$d" <ev
		try "outbox-status -d '$d'" outbox-status -d "$d"
		try "client-rebuild -d '$d'" client-rebuild -d "$d" -w 1
		try "client-verify -d '$d'" client-verify -d "$d"
		httpd_try "-d '$d'" -d "$d"
	done
	for e in "PGHOST=/nonexistent" "PGUSER=cqrs_writer" "PGPORT=bad"; do
		try "order-place $e PGPASSWORD" env "$e" PGPASSWORD="$SECRET" order-place <<<"$SAMPLE"
		try "outbox-tail $e PGPASSWORD" env "$e" PGPASSWORD="$SECRET" outbox-tail --once -w 1
		try "outbox-clean $e PGPASSWORD" env "$e" PGPASSWORD="$SECRET" outbox-clean <ev
		try "outbox-status $e PGPASSWORD" env "$e" PGPASSWORD="$SECRET" outbox-status
		try "client-verify $e PGPASSWORD" env "$e" PGPASSWORD="$SECRET" client-verify
		PGPASSWORD=$SECRET httpd_try "$e PGPASSWORD" -d "$e"
	done

	[ "$(counts)" = "$before" ] || failures+=("rows changed: $before -> $(counts)")

	# Redis: -r and REDIS_URL (malformed, unreachable, refused), -P.
	for r in "redis://:$SECRET@host:99999" "redis://:$SECRET@127.0.0.1:1/x" "unix://:$SECRET@tmp/sock" \
		"unix://:$SECRET@$SEC_DIR/r.sock?db=x" "rediss://:$SECRET@127.0.0.1:1" "redis://:$SECRET@127.0.0.1:1" \
		"unix://:$SECRET@/nonexistent.sock" "unix://:$SECRET@$SEC_DIR/r.sock" \
		"unix://default:$SECRET@$SEC_DIR/r.sock" "redis://u:$SECRET@[::1:1" "unix://:p@$SECRET@$SEC_DIR/r.sock"; do
		try "client-get -r '$r'" client-get -r "$r" 1
		try "client-get REDIS_URL='$r'" env REDIS_URL="$r" client-get 1
		try "client-project -r '$r'" client-project -r "$r" <<<"$EVENT"
		try "client-project REDIS_URL='$r'" env REDIS_URL="$r" client-project <<<"$EVENT"
		try "client-rebuild -r '$r'" client-rebuild -r "$r" -w 1
		try "client-verify REDIS_URL='$r'" env REDIS_URL="$r" client-verify
		try "outbox-status -r '$r'" outbox-status -r "$r"
		httpd_try "-r '$r'" -r "$r"
		REDIS_URL=$r httpd_try "REDIS_URL='$r'"
	done
	printf '%s\n' "$SECRET" >pwfile
	for r in "unix://$SEC_DIR/r.sock" "redis://127.0.0.1:1"; do
		try "client-get -P, $r" client-get -P pwfile -r "$r" 1
		try "client-project -P, $r" client-project -P pwfile -r "$r" <<<"$EVENT"
		try "client-verify -P, $r" client-verify -P pwfile -r "$r"
		httpd_try "-P, $r" -P pwfile -r "$r"
	done

	# The HTTP API: CQRS_API_AUTH, ~/.netrc, a URL with credentials.
	httpd_log=$BATS_TEST_TMPDIR/api.err
	PGPASSFILE=$CQRS_PGPASSFILE cqrs-httpd --htpasswd "$BATS_TEST_TMPDIR/htpasswd" -l 127.0.0.1:0 2>"$httpd_log" 3>&- &
	api_pid=$!
	for i in $(seq 100); do grep -q listening "$httpd_log" && break; sleep 0.05; done
	api=$(sed -n 's|^cqrs-httpd: listening on \(http://.*\)|\1|p' "$httpd_log")
	for u in "$api" http://127.0.0.1:1; do
		for a in "$SECRET" "admin:$SECRET" "$SECRET:x"; do
			try "order-place --api $u CQRS_API_AUTH=$a" env CQRS_API_AUTH="$a" order-place --api "$u" <<<"$SAMPLE"
			try "client-get --api $u CQRS_API_AUTH=$a" env CQRS_API_AUTH="$a" client-get --api "$u" 1
		done
		printf 'machine 127.0.0.1\nlogin admin\npassword %s\n' "$SECRET" >.netrc
		try "order-place --api $u .netrc" env -u CQRS_API_AUTH HOME="$BATS_TEST_TMPDIR" order-place --api "$u" <<<"$SAMPLE"
		try "client-get --api $u .netrc" env -u CQRS_API_AUTH HOME="$BATS_TEST_TMPDIR" client-get --api "$u" 1
		try "order-place --api with credentials" order-place --api "${u/http:\/\//http://admin:$SECRET@}" <<<"$SAMPLE"
		try "client-get --api with credentials" client-get --api "${u/http:\/\//http://admin:$SECRET@}" 1
	done
	# AWS: the secret key and the session token, from the environment and from the
	# credentials file; the endpoint unreachable, or answering what is not AWS.
	printf '[default]\naws_access_key_id = AKIDCQRSSEC000000001\naws_secret_access_key = %s\n' \
		"$SECRET" >aws-credentials
	# (Unreachable, each retries for seconds: once for each command.)
	aws_env=(AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=AKIDCQRSSEC000000001 AWS_SECRET_ACCESS_KEY="$SECRET"
		AWS_SESSION_TOKEN="$SECRET")
	try "event-publish, unreachable" env "${aws_env[@]}" AWS_ENDPOINT_URL=http://127.0.0.1:1 \
		event-publish http://127.0.0.1:1/000000000000/q <ev
	try "event-consume, unreachable" env "${aws_env[@]}" AWS_ENDPOINT_URL=http://127.0.0.1:1 \
		event-consume --once -w 1 http://127.0.0.1:1/000000000000/q
	for q in "$api/000000000000/q" arn:aws:sns:eu-west-1:000000000000:t; do
		try "event-publish $q AWS_SECRET_ACCESS_KEY" env "${aws_env[@]}" AWS_ENDPOINT_URL="$api" \
			event-publish "$q" <ev
		try "event-publish $q credentials file" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
			AWS_REGION=eu-west-1 AWS_ENDPOINT_URL="$api" AWS_EC2_METADATA_DISABLED=true \
			AWS_SHARED_CREDENTIALS_FILE="$BATS_TEST_TMPDIR/aws-credentials" event-publish "$q" <ev
	done
	try "event-consume AWS_SECRET_ACCESS_KEY" env "${aws_env[@]}" AWS_ENDPOINT_URL="$api" \
		event-consume --once -w 1 "$api/000000000000/q"

	kill -TERM "$api_pid"
	wait "$api_pid" || true
	if grep -q -e Zq9 -e s3cr3t -e Xk "$httpd_log"; then failures+=("cqrs-httpd's access log shows the password"); fi

	# event-fanout: subscribers whose command lines hold a password.
	try "event-fanout, client-project -r" event-fanout "client-project -r redis://:$SECRET@127.0.0.1:1" <<<"$EVENT"
	try "event-fanout, outbox-clean -d" event-fanout "outbox-clean -d 'host=/nonexistent password=$SECRET'" <ev
	report_failures
}
