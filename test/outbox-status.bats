#!/usr/bin/env bats
# outbox-status: the pipeline's state from outside, as JSON and Prometheus text; thresholds, checks and exit codes, against a running pipeline.

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
	RUN=$CQRS_STACK_DIR/pipeline
	rm -rf "$RUN"
	P=$RUN/proj.pos
	C=$RUN/clean.pos
	STOPPED=
	BG_PIDS=
	RESET_CONF=
}

teardown() {
	local pid
	[ -z "$STOPPED" ] || kill -CONT "$STOPPED" 2>/dev/null || true
	for pid in $BG_PIDS; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	"$CQRS_REPO/scripts/pipeline" stop 3>&- 2>/dev/null || true
	if [ -n "$RESET_CONF" ]; then
		sql "ALTER SYSTEM RESET max_slot_wal_keep_size" >/dev/null
		sql 'SELECT pg_reload_conf()' >/dev/null
		sql 'DROP TABLE IF EXISTS filler' >/dev/null
	fi
	wait_for 10 no_active_slot || true
	if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -f "$RUN/log" ]; then
		{ echo "# pipeline log:"; tail -n 20 "$RUN/log"; } >&2
	fi
	return 0
}

# pipeline ARGS...: scripts/pipeline; the background flow must not hold bats' fd 3.
pipeline() {
	"$CQRS_REPO/scripts/pipeline" "$@" 3>&-
}

# wait_for SECONDS CMD...: run CMD every 50 ms until it succeeds; fail after SECONDS.
wait_for() {
	local secs=$1 deadline
	shift
	deadline=$((${EPOCHREALTIME/./} + secs * 1000000))
	until "$@"; do
		if [ "${EPOCHREALTIME/./}" -gt "$deadline" ]; then
			echo "wait_for: '$*' still failing after $secs s" >&2
			return 1
		fi
		sleep 0.05
	done
}

no_active_slot() {
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ]
}

outbox_empty() {
	[ "$(sql 'SELECT count(*) FROM order_event')" = 0 ]
}

# quiet_ok ARGS...: outbox-status ARGS exits 0.
quiet_ok() {
	outbox-status "$@" >/dev/null 2>&1
}

# orders N CLIENT: N orders of one computer each for CLIENT, placed.
orders() {
	local i
	for ((i = 0; i < $1; i++)); do
		echo "{\"id_client\":$2,\"products\":[{\"id_product\":1,\"quantity\":1}]}"
	done | order-place >/dev/null
}

# identity: the stream identity that IDENTIFY_SYSTEM gives, for the slot cqrs_outbox.
identity() {
	psql "dbname=$PGDATABASE replication=database" -XAt -c IDENTIFY_SYSTEM |
		awk -F'|' '{ print "pg:" $1 ":" $2 ":cqrs_outbox" }'
}

# server_past_mtime FILE: the server's clock is in a later second than FILE's mtime.
server_past_mtime() {
	[ "$(sql 'SELECT floor(extract(epoch FROM now()))::bigint')" -gt "$(stat -c %Y "$1")" ]
}

# metric_names: the metric names that outbox-status(1) documents.
metric_names() {
	sed -n 's/^\.It Li \(cqrs_[a-z_]*\)$/\1/p' "$CQRS_REPO/man/outbox-status.1" | sort -u
}

@test "-h prints the synopsis and the options on stdout; usage errors print the synopsis and exit 64" {
	run -0 --separate-stderr outbox-status -h
	[ -z "$stderr" ]
	[[ ${lines[0]} == "usage: outbox-status [-hV] [--prometheus]"* ]]
	for o in --ack-file --dbname --help --max-age --max-lag --password-file --prometheus --redis --slot --table --version; do
		[[ $output == *"$o"* ]] || { echo "no $o in -h"; false; }
	done
	run -0 outbox-status -V
	[[ $output == "outbox-status (cqrs-pipes) "[0-9]* ]]
	run -64 --separate-stderr outbox-status extra
	[ -z "$output" ]
	[ "$(tr -s ' \n' '  ' <<<"$stderr" | sed 's/ $//')" = "usage: $(synopsis outbox-status)" ]
	run -64 --separate-stderr outbox-status --max-lag 12x
	[[ $stderr == *"--max-lag 12x: want bytes"* ]]
	run -64 --separate-stderr outbox-status --max-lag -1
	run -64 --separate-stderr outbox-status --max-lag 99999999999999999999
	run -64 --separate-stderr outbox-status --max-age soon
	[[ $stderr == *"--max-age soon: want seconds"* ]]
	run -64 --separate-stderr outbox-status --max-age -5
	run -64 --separate-stderr outbox-status -s Bad-Slot
	[[ $stderr == *"-s Bad-Slot: want 1 to 63 of a-z, 0-9 and _"* ]]
	run -64 --separate-stderr outbox-status -t public.
	[[ $stderr == *"-t public.: want table or schema.table"* ]]
	run -64 --separate-stderr outbox-status -a x.pos -a y.pos -a x.pos
	[[ $stderr == *"-a x.pos: given twice"* ]]
	REDIS_URL= run -64 --separate-stderr outbox-status -P "$BATS_TEST_TMPDIR/pass"
	[[ $stderr == *"-P: the password of which Redis?"* ]]
}

@test "before any slot: exit 1, the missing slot named, and a JSON object on one line" {
	run -1 --separate-stderr outbox-status
	[ "${#lines[@]}" -eq 1 ]
	[[ $stderr == "outbox-status: slot cqrs_outbox: does not exist"* ]]
	jq -e '.slot == {"name":"cqrs_outbox","exists":false,"snapshot_pending":false}
		and .outbox.pending == 0 and .outbox.oldest_event_date == null
		and .ack == [] and .read_model.clients == 0
		and (.alerts | length) == 1' <<<"$output"
}

@test "a caught-up pipeline: exit 0 with small lags, the stream's identity, held ack files, the read model" {
	run -0 pipeline start
	random=$((RANDOM % 20 + 30))
	orders "$random" 1
	orders 7 2
	wait_for 60 outbox_empty
	wait_for 60 quiet_ok --max-lag 64k --max-age 60 -a "$P" -a "$C"
	run -0 --separate-stderr outbox-status --max-lag 64k --max-age 60 -a "$P" -a "$C"
	[ -z "$stderr" ]
	want=$(identity)
	[[ $want =~ ^pg:[0-9]+:[0-9]+:cqrs_outbox$ ]]
	jq -e --arg src "$want" --arg p "$P" --arg c "$C" '
		.server.wal_lsn as $wal | .source == $src and .slot.active and .slot.active_pid > 0
		and .slot.plugin == "pgoutput" and .slot.database == "orders"
		and .slot.lag_bytes < 65536 and .slot.wal_status == "reserved"
		and (.slot.wal_at_risk | not)
		and .slot.confirmed_flush_lsn <= .server.wal_lsn
		and .slot.retained_bytes == .server.wal_lsn - .slot.restart_lsn
		and .outbox.pending == 0
		and ([.ack[].path] == [$p, $c])
		and all(.ack[]; .exists and .valid and .held and .lag_bytes < 65536
			and (.behind | not) and (.ahead | not) and .seq == 0
			and .lsn <= $wal)
		and .read_model.clients == 2 and .alerts == []' <<<"$output" ||
		{ echo "$output"; false; }
	# Idle, the slot and both consumers come to no lag at all.
	wait_for 60 quiet_ok --max-lag 0 -a "$P" -a "$C"
}

@test "client-project stopped: --max-lag 1 exits 1 naming its ack file, behind with rows pending; after SIGCONT it catches up and exits 0" {
	run -0 pipeline start
	orders 1 1
	wait_for 30 outbox_empty
	wait_for 10 test -s "$P"
	pid=$(pgrep -f "^client-project .*$RUN/")
	[ -n "$pid" ]
	kill -STOP "$pid"
	STOPPED=$pid
	# The orders come in a later second than the projector's last write,
	# so that they are newer than its ack file by the clock as well.
	wait_for 5 server_past_mtime "$P"
	# The cleaner, until it waits for the projector, deletes what the
	# pipes still carried: 1000 orders are more than they hold.
	orders 1000 3
	run -1 --separate-stderr outbox-status --max-lag 1 -a "$P" -a "$C"
	[[ $stderr =~ "outbox-status: ack file $P: lag "[0-9]+" bytes, over --max-lag 1" ]]
	[[ $stderr =~ "outbox-status: slot cqrs_outbox: lag "[0-9]+" bytes, over --max-lag 1" ]]
	jq -e --arg p "$P" '(.ack[] | select(.path == $p) | .behind and .lag_bytes > 1 and .held)
		and .outbox.pending > 0 and .slot.lag_bytes > 1
		and (.alerts | length) >= 2' <<<"$output" || { echo "$output"; false; }
	# The same with a large threshold: 1000 orders are far more than 64 KiB of WAL.
	run -1 outbox-status --max-lag 64k -a "$P"
	run -1 --separate-stderr outbox-status --max-age 0 -a "$P" -a "$C"
	[[ $stderr == *"outbox-status: outbox public.order_event: oldest pending row "*" s old, over --max-age 0"* ]]
	[[ $stderr == *"outbox-status: ack file $P: not written for "*" s while newer rows wait, over --max-age 0"* ]]
	kill -CONT "$pid"
	STOPPED=
	wait_for 60 quiet_ok --max-lag 64k --max-age 60 -a "$P" -a "$C"
	wait_for 60 outbox_empty
	run -0 --separate-stderr outbox-status --max-lag 64k --max-age 60 -a "$P" -a "$C"
	jq -e '.outbox.pending == 0 and all(.ack[]; .behind | not) and .read_model.clients == 2' <<<"$output"
}

@test "--prometheus: every documented metric, in a strictly valid text exposition, that node_exporter's textfile collector takes" {
	sql "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'" >/dev/null
	sql 'SELECT pg_reload_conf()' >/dev/null
	RESET_CONF=1
	run -0 pipeline start
	orders 3 1
	wait_for 30 outbox_empty
	wait_for 10 test -s "$P"
	# An ack file with this slot's identity, and one whose name needs
	# escaping: a quote, a backslash, a newline and a byte that is not UTF-8.
	printf '%s %s\n' "$(cut -d' ' -f1-2 "$P")" "$(identity)" >"$BATS_TEST_TMPDIR/pub.pos"
	weird=$BATS_TEST_TMPDIR/$'we"ird\\pa\nth\xff.pos'
	cp "$P" "$weird"
	wait_for 10 prints_true '.slot.reply_age_seconds != null and .slot.safe_wal_size != null'
	run -0 --separate-stderr outbox-status --prometheus -a "$P" -a "$C" \
		-a "$BATS_TEST_TMPDIR/pub.pos" -a "$weird" -a "$BATS_TEST_TMPDIR/none.pos"
	[ -z "$stderr" ]
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/cqrs.prom"
	run -0 "$CQRS_REPO/test/lib/promtext-check" <"$BATS_TEST_TMPDIR/cqrs.prom"
	# Every family is documented, and every documented one is there.
	got=$(sed -n 's/^# TYPE \([^ ]*\) gauge$/\1/p' "$BATS_TEST_TMPDIR/cqrs.prom" | sort)
	[ "$got" = "$(metric_names)" ] ||
		{ diff <(metric_names) <(echo "$got"); false; }
	# Only our own names, and gauges only.
	[ -z "$(grep -v '^cqrs_\|^# HELP cqrs_\|^# TYPE cqrs_[a-z_]* gauge$' "$BATS_TEST_TMPDIR/cqrs.prom")" ]
	grep -qxF 'cqrs_ack_source_ok{ack_file="'"$BATS_TEST_TMPDIR"'/pub.pos"} 1' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qxF 'cqrs_ack_exists{ack_file="'"$BATS_TEST_TMPDIR"'/none.pos"} 0' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qF 'cqrs_ack_held{ack_file="'"$BATS_TEST_TMPDIR"'/we\"ird\\pa\nth'$'\xef\xbf\xbd''.pos"} 0' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qxF 'cqrs_ack_held{ack_file="'"$P"'"} 1' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qxF 'cqrs_read_model_clients 1' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qxF 'cqrs_status_alerts 0' "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qxF "cqrs_ack_position_bytes{ack_file=\"$P\"} $(cut -d' ' -f1 "$P")" "$BATS_TEST_TMPDIR/cqrs.prom"
	grep -qF "cqrs_server_info{system_identifier=\"$(identity | cut -d: -f2)\",timeline=\"$(identity | cut -d: -f3)\",source=\"$(identity)\"} 1" "$BATS_TEST_TMPDIR/cqrs.prom"

	# The real consumer: node_exporter's textfile collector.
	require_tool prometheus-node-exporter
	mkdir "$BATS_TEST_TMPDIR/textfile"
	cp "$BATS_TEST_TMPDIR/cqrs.prom" "$BATS_TEST_TMPDIR/textfile/"
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		prometheus-node-exporter --collector.disable-defaults --collector.textfile \
			--collector.textfile.directory="$BATS_TEST_TMPDIR/textfile" \
			--web.listen-address="127.0.0.1:$port" >"$BATS_TEST_TMPDIR/ne.log" 2>&1 3>&- &
		BG_PIDS=$!
		wait_for 10 scrape "$port" && break
		kill "$BG_PIDS" 2>/dev/null || true
		wait "$BG_PIDS" 2>/dev/null || true
		BG_PIDS=
	done
	[ -n "$BG_PIDS" ]
	scraped=$(scrape "$port")
	grep -qx 'node_textfile_scrape_error 0' <<<"$scraped" ||
		{ grep textfile <<<"$scraped"; cat "$BATS_TEST_TMPDIR/ne.log"; false; }
	for m in $(metric_names); do
		grep -q "^$m[{ ]" <<<"$scraped" || { echo "node_exporter does not export $m"; false; }
	done
}

# prints_true FILTER: outbox-status's JSON passes jq -e FILTER.
prints_true() {
	outbox-status 2>/dev/null | jq -e "$1" >/dev/null
}

# scrape PORT: GET /metrics from 127.0.0.1:PORT, the body on stdout.
scrape() {
	local reply
	exec 5<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&5
	reply=$(cat <&5)
	exec 5<&-
	[[ $reply == "HTTP/1.0 200"* ]] || return 1
	sed '1,/^\r$/d' <<<"$reply"
}

@test "the strict check itself refuses what the format forbids" {
	check() {
		printf "$1" | "$CQRS_REPO/test/lib/promtext-check"
	}
	run -0 check '# HELP a_b A.\n# TYPE a_b gauge\na_b{x="1",y="q\\\\\\"\\\\n"} 1.5\na_b{x="2"} -Inf\n'
	run -1 check '# HELP a A.\n# TYPE a gauge\na 1 1700000000000\n'		# a timestamp
	run -1 check '# HELP a A.\na 1\n'						# no TYPE
	run -1 check '# TYPE a gauge\na 1\n'						# no HELP
	run -1 check '# HELP a A.\n# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n'		# one series twice
	run -1 check '# HELP a A.\n# TYPE a gauge\na{x="\\q"} 1\n'			# a bad escape
	run -1 check '# HELP a A.\n# TYPE a gauge\na{x="1",} 1\n'			# a trailing comma
	run -1 check '# HELP a A.\n# TYPE a gauge\na{__x="1"} 1\n'			# a reserved label
	run -1 check '# HELP a A.\n# TYPE a gauge\na one\n'				# not a number
	run -1 check '# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n'	# split
	run -1 check '# HELP a A.\n# TYPE a gauge\na 1'				# no final newline
	run -1 check '# HELP a A.\n# TYPE a gauge\n\na 1\n'				# a blank line
	run -1 check '# HELP a A.\n# TYPE a gauge\na{x="\xff"} 1\n'			# not UTF-8
	run -1 check '# HELP a A.\n# TYPE a gauge\n'					# no sample
}

@test "ack files from another source, beyond the WAL, malformed, not regular or missing are flagged; a 0.1 file is not" {
	outbox-tail --once >/dev/null 2>&1	# the slot
	src=$(identity)
	wal=$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint")
	d=$BATS_TEST_TMPDIR
	echo "100 0 pg:1:1:other" >"$d/other.pos"
	echo "$((wal + 1000000000)) 0 $src" >"$d/ahead.pos"
	echo "x y" >"$d/bad.pos"
	mkdir "$d/dir.pos"
	mkfifo "$d/fifo.pos"
	echo "100 3" >"$d/old.pos"
	echo "100 3 $src" >"$d/good.pos"
	run -1 --separate-stderr outbox-status -a "$d/other.pos" -a "$d/ahead.pos" -a "$d/bad.pos" \
		-a "$d/dir.pos" -a "$d/fifo.pos" -a "$d/none.pos" -a "$d/old.pos" -a "$d/good.pos"
	[[ $stderr == *"outbox-status: ack file $d/other.pos: from pg:1:1:other, not this slot's $src"* ]]
	[[ $stderr == *"outbox-status: ack file $d/ahead.pos: position $((wal + 1000000000)) is beyond the server's WAL ($wal)"* ]] ||
		[[ $stderr == *"outbox-status: ack file $d/ahead.pos: position $((wal + 1000000000)) is beyond the server's WAL ("* ]]
	[[ $stderr == *"outbox-status: ack file $d/bad.pos: not an ack file"* ]]
	[[ $stderr == *"outbox-status: ack file $d/dir.pos: not a regular file"* ]]
	[[ $stderr == *"outbox-status: ack file $d/fifo.pos: not a regular file"* ]]
	[[ $stderr != *none.pos* && $stderr != *old.pos* && $stderr != *good.pos* ]]
	[ "$(grep -c . <<<"$stderr")" -eq 5 ]
	jq -e '
		def a($n): .ack[] | select(.path | endswith("/" + $n));
		(a("other.pos") | .source == "pg:1:1:other" and .source_ok == false and .lag_bytes == null)
		and (a("ahead.pos") | .ahead and .source_ok and .lag_bytes == null)
		and (a("bad.pos") | .exists and (.valid | not) and .lsn == null)
		and (a("none.pos") | (.exists | not) and .age_seconds == null and .lag_bytes >= 0)
		and (a("old.pos") | .valid and .lsn == 100 and .seq == 3 and .source == null and .source_ok == null)
		and (a("good.pos") | .source_ok and .lag_bytes >= 0 and (.held | not))
		and (.alerts | length) == 5' <<<"$output" || { echo "$output"; false; }
}

@test "the initial snapshot: pending, and its consumers behind, until every one has applied it" {
	orders 2 1	# in the outbox before the slot: sent as a snapshot
	a=$BATS_TEST_TMPDIR/a.pos
	run -75 --separate-stderr outbox-tail --once -w 0.5 -a "$a"	# nobody applies it
	run -0 --separate-stderr outbox-status -a "$a"
	jq -e '.slot.snapshot_pending and .ack[0].behind and .ack[0].lag_bytes == null' <<<"$output"
	run -0 outbox-status --prometheus -a "$a"
	grep -qx 'cqrs_slot_snapshot_pending{slot="cqrs_outbox"} 1' <<<"$output"
	grep -qx "cqrs_ack_behind{ack_file=\"$a\"} 1" <<<"$output"
	# A consumer applies it (outbox-tail sends it again on a new slot).
	outbox-tail --once -a "$a" 2>/dev/null | client-project -a "$a"
	run -0 --separate-stderr outbox-status --max-lag 64k -a "$a"
	jq -e '(.slot.snapshot_pending | not) and (.ack[0] | .valid and .source_ok and (.behind | not) and .lag_bytes < 65536)
		and .read_model.clients == 1' <<<"$output"
}

@test "--max-age: an idle consumer's old ack file is no problem; with newer rows waiting it is, and so is an old pending row" {
	outbox-tail --once >/dev/null 2>&1
	echo "100 0" >"$BATS_TEST_TMPDIR/idle.pos"
	touch -d '-2 hours' "$BATS_TEST_TMPDIR/idle.pos"
	run -0 --separate-stderr outbox-status --max-age 60 -a "$BATS_TEST_TMPDIR/idle.pos"
	jq -e '.ack[0].age_seconds > 7000 and (.ack[0].behind | not)' <<<"$output"
	orders 1 2
	run -1 --separate-stderr outbox-status --max-age 60 -a "$BATS_TEST_TMPDIR/idle.pos"
	[[ $stderr =~ "outbox-status: ack file $BATS_TEST_TMPDIR/idle.pos: not written for 7"[0-9]{3}\.[0-9]" s while newer rows wait, over --max-age 60" ]]
	[[ $stderr != *"oldest pending row"* ]]	# that row is new
	jq -e '.ack[0].behind and .outbox.pending == 1' <<<"$output"
	# An event an hour old, still in the outbox.
	sql "INSERT INTO order_event (id_client, name, email, order_total, event_date)
		VALUES (1, 'Bob', 'bob@anemailprovider.com', 1, floor(extract(epoch FROM now()))::bigint - 3600)"
	run -1 --separate-stderr outbox-status --max-age 600
	[[ $stderr =~ "outbox-status: outbox public.order_event: oldest pending row 36"[0-9]{2}\.[0-9]" s old, over --max-age 600" ]]  || { echo "$stderr"; false; }
	jq -e '.outbox.pending == 2 and .outbox.oldest_age_seconds >= 3600
		and .outbox.newest_event_date - .outbox.oldest_event_date >= 3599' <<<"$output"
	run -0 outbox-status --max-age 4000
}

@test "a slot whose WAL is past max_slot_wal_keep_size: wal_status at risk is always a problem" {
	RESET_CONF=1
	sql "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'" >/dev/null
	sql 'SELECT pg_reload_conf()' >/dev/null
	outbox-tail --once >/dev/null 2>&1
	run -0 outbox-status
	sql 'CREATE TABLE filler (x int)' >/dev/null
	for i in 1 2 3; do
		sql 'INSERT INTO filler SELECT generate_series(1, 1000)' >/dev/null
		sql 'SELECT pg_switch_wal()' >/dev/null
	done
	sql 'CHECKPOINT' >/dev/null
	wait_for 30 at_risk
	run -1 --separate-stderr outbox-status --prometheus
	[[ $stderr =~ "outbox-status: slot cqrs_outbox: wal_status "(lost|unreserved) ]]
	grep -qx 'cqrs_slot_wal_at_risk{slot="cqrs_outbox"} 1' <<<"$output"
	run -1 --separate-stderr outbox-status
	jq -e '.slot.wal_at_risk and (.slot.wal_status == "lost" or .slot.wal_status == "unreserved")' <<<"$output"
}

at_risk() {
	[[ $(sql "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'") =~ ^(lost|unreserved)$ ]]
}

@test "read-only: as cqrs_monitor from roles.sql (applied twice), which cannot read names nor write" {
	psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql" >/dev/null
	psql -qX -v ON_ERROR_STOP=1 -f "$CQRS_REPO/scripts/roles.sql" >/dev/null
	stack_password cqrs_monitor
	run -0 pipeline start
	orders 2 1
	wait_for 30 outbox_empty
	wait_for 10 monitor_sees_reply
	PGUSER=cqrs_monitor run -0 --separate-stderr outbox-status --max-lag 64M -a "$P" -a "$C"
	[ -z "$stderr" ]
	jq -e '.slot.active and .slot.reply_age_seconds != null and .read_model.clients == 1' <<<"$output"
	PGUSER=cqrs_monitor run -0 outbox-status --prometheus -a "$P"
	run -1 --separate-stderr psql -XAt -U cqrs_monitor -v ON_ERROR_STOP=1 -c 'SELECT name FROM order_event'
	[[ $stderr == *"permission denied"* ]]
	run -1 --separate-stderr psql -XAt -U cqrs_monitor -v ON_ERROR_STOP=1 -c 'CREATE TEMP TABLE t (x int)'
	[[ $stderr == *"read-only transaction"* ]]
	[ "$(sql "SELECT pg_has_role('cqrs_monitor', 'pg_monitor', 'MEMBER')")" = t ]
}

monitor_sees_reply() {
	PGUSER=cqrs_monitor outbox-status 2>/dev/null | jq -e '.slot.reply_age_seconds != null' >/dev/null
}

@test "exit 69, 77, 78, 70 when PostgreSQL cannot be looked at; nothing on stdout, no secret in any message" {
	outbox-tail --once >/dev/null 2>&1
	PGHOST=$BATS_TEST_TMPDIR/nowhere run -69 --separate-stderr outbox-status
	[ -z "$output" ]
	[[ $stderr == "outbox-status: database: "* ]]
	run -69 --separate-stderr outbox-status -d "host=$BATS_TEST_TMPDIR/nowhere password=s3cr3t-pw"
	[[ $stderr != *s3cr3t-pw* ]]
	run -78 --separate-stderr outbox-status -d "host=x password=s3cr3t-pw bogus=1"
	[[ $stderr != *s3cr3t-pw* ]]
	run -78 --separate-stderr outbox-status -d no_such_database
	[ -z "$output" ]
	run -78 --separate-stderr outbox-status -t no_such_table
	[[ $stderr == *'relation "public.no_such_table" does not exist'* ]]
	sql 'DROP ROLE IF EXISTS nosel' >/dev/null
	sql 'CREATE ROLE nosel LOGIN' >/dev/null
	stack_password nosel
	PGUSER=nosel run -77 --separate-stderr outbox-status
	[ -z "$output" ]
	[[ $stderr == *"permission denied for table order_event"* ]]
	sql 'DROP ROLE nosel' >/dev/null
	# An "outbox" whose event_date has no min(): the server's error is not ours to name.
	sql 'CREATE TABLE IF NOT EXISTS oddbox (id int, event_date json)' >/dev/null
	run -70 --separate-stderr outbox-status -t oddbox
	[ -z "$output" ]
	sql 'DROP TABLE oddbox' >/dev/null
}

@test "Redis: -r and REDIS_URL count the read model; exit 69, 75, 77, 78 when it cannot be looked at" {
	outbox-tail --once >/dev/null 2>&1
	rcli hset client:1 name Bob >/dev/null
	rcli hset client:22 name Alice >/dev/null
	rcli hset client:x name Nobody >/dev/null	# not a client id
	rcli set other 1 >/dev/null
	run -0 outbox-status
	jq -e '.read_model.clients == 2' <<<"$output"
	url=$REDIS_URL
	REDIS_URL= run -0 outbox-status
	jq -e 'has("read_model") | not' <<<"$output"
	REDIS_URL= run -0 outbox-status -r "$url"
	jq -e '.read_model.clients == 2' <<<"$output"
	REDIS_URL="unix://:s3cr3t-pw@$BATS_TEST_TMPDIR/nowhere.sock" run -69 --separate-stderr outbox-status
	[ -z "$output" ]
	[[ $stderr == *"redis: "* && $stderr != *s3cr3t-pw* ]]
	run -78 --separate-stderr outbox-status -r "http://s3cr3t-pw@example"
	[[ $stderr != *s3cr3t-pw* ]]
	# A password that this Redis (which has none) refuses.
	REDIS_URL="unix://:s3cr3t-pw@${url#unix://}" run -77 --separate-stderr outbox-status
	[[ $stderr != *s3cr3t-pw* ]]
	# A Redis busy with a script answers BUSY: a retry may work.
	rcli config set busy-reply-threshold 100 >/dev/null
	rcli eval 'while true do end' 0 >/dev/null 2>&1 3>&- &
	BG_PIDS=$!
	wait_for 10 redis_busy
	run -75 --separate-stderr outbox-status
	[[ $stderr == *BUSY* ]]
	rcli script kill >/dev/null
	wait "$BG_PIDS" || true
	BG_PIDS=
	rcli config set busy-reply-threshold 5000 >/dev/null
	run -0 outbox-status
}

redis_busy() {
	[[ $(rcli ping 2>&1) == BUSY* ]]
}

@test "exit 77 and 74 for ack files that cannot be read; 74 when stdout fails; 0 quietly when its reader has gone" {
	outbox-tail --once >/dev/null 2>&1
	# Ack files are read before anything else: no connection is needed.
	d=$(mktemp -d /tmp/outbox-status-perm.XXXXXX)
	chmod 755 "$d"
	mkdir -m 700 "$d/private"
	echo "100 0" >"$d/private/p.pos"
	if [ "$(id -u)" -eq 0 ]; then
		# Root reads anything: as another user, with a copy it can run.
		cp "$(command -v outbox-status)" "$d/"
		run -77 --separate-stderr runuser -u nobody -- "$d/outbox-status" -a "$d/private/p.pos"
	else
		chmod 000 "$d/private"
		run -77 --separate-stderr outbox-status -a "$d/private/p.pos"
		chmod 700 "$d/private"
	fi
	rm -rf "$d"
	[ -z "$output" ]
	[[ $stderr == *"$d/private/p.pos: Permission denied"* ]]
	ln -s loop.pos "$BATS_TEST_TMPDIR/loop.pos"
	run -74 --separate-stderr outbox-status -a "$BATS_TEST_TMPDIR/loop.pos"
	[ -z "$output" ]
	[[ $stderr == *"loop.pos: Too many levels of symbolic links"* ]]
	run -74 --separate-stderr bash -c 'outbox-status >/dev/full'
	[[ $stderr == *"stdout: No space left on device"* ]]
	# The reader is gone before outbox-status writes (or, on a slow day,
	# has taken the line): either way a quiet 0.
	run -0 --separate-stderr bash -c '(sleep 0.5; outbox-status; echo "status $?" >&2) | true'
	[ "$stderr" = "status 0" ]
}
