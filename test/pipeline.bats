#!/usr/bin/env bats
# pipeline.bats: the whole flow, outbox-tail | event-fanout client-project outbox-clean, against the read model's ground truth in SQL.

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
	rm -rf "$CQRS_STACK_DIR/pipeline"
	RUN=$CQRS_STACK_DIR/pipeline
	SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
	# Random orders are reproducible: PIPELINE_SEED=N bats test/pipeline.bats
	SEED=${PIPELINE_SEED:-$RANDOM}
	BG_PIDS=
}

teardown() {
	local pid
	# Background order placers first (their subshell and its children).
	for pid in $BG_PIDS; do
		pkill -KILL -P "$pid" 2>/dev/null || true
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	pipeline stop || true
	# reset_state drops only inactive slots: let the walsender go first.
	wait_for 10 no_active_slot || true
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		echo "# PIPELINE_SEED=$SEED" >&2
		[ ! -f "$RUN/log" ] || { echo "# pipeline log:"; tail -n 20 "$RUN/log"; } >&2
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

# prints WANT CMD...: CMD prints exactly WANT.
prints() {
	[ "$("${@:2}" 2>/dev/null)" = "$1" ]
}

# group_gone PGID: no process (not even an unreaped one) is left in the group.
group_gone() {
	! kill -0 -- "-$1" 2>/dev/null
}

# is_zombie PIDFILE: the process named in PIDFILE has ended but is not reaped.
is_zombie() {
	[ -s "$1" ] && [ "$(cut -d' ' -f3 "/proc/$(cat "$1")/stat" 2>/dev/null)" = Z ]
}

slot_active() {
	[ "$(sql "SELECT active FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'")" = t ]
}

no_active_slot() {
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ]
}

outbox_empty() {
	[ "$(sql 'SELECT count(*) FROM order_event')" = 0 ]
}

# slot_confirmed: the pipeline slot's confirmed_flush_lsn as an integer (0 if none).
slot_confirmed() {
	sql "SELECT coalesce(max(pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint), 0)
		FROM pg_replication_slots WHERE slot_name = 'cqrs_outbox'"
}

# confirmed_past LSN: the slot's confirmed_flush_lsn is at least LSN.
confirmed_past() {
	[ "$(slot_confirmed)" -ge "$1" ]
}

# random_orders N SEED: N order requests for clients 1..3, 1 to 3 products
# each (1..3, possibly repeated), quantities 1..5.
random_orders() {
	awk -v n="$1" -v seed="$2" 'BEGIN {
		srand(seed)
		for (i = 0; i < n; i++) {
			k = 1 + int(rand() * 3)
			s = ""
			for (j = 0; j < k; j++)
				s = s (j ? "," : "") sprintf("{\"id_product\":%d,\"quantity\":%d}",
				    1 + int(rand() * 3), 1 + int(rand() * 5))
			printf "{\"id_client\":%d,\"products\":[%s]}\n", 1 + int(rand() * 3), s
		}
	}'
}

# trickle FILE GATE...: copy FILE to stdout 20 lines at a time, 100 ms apart;
# after each 300 lines, wait (up to 60 s) until the next GATE file exists.
trickle() {
	local file=$1 chunk n=0 i
	shift
	while mapfile -t -n 20 chunk && [ "${#chunk[@]}" -gt 0 ]; do
		printf '%s\n' "${chunk[@]}"
		n=$((n + ${#chunk[@]}))
		if [ $((n % 300)) -eq 0 ] && [ $# -gt 0 ]; then
			for ((i = 0; i < 600; i++)); do
				[ -e "$1" ] && break
				sleep 0.1
			done
			shift
		fi
		sleep 0.1
	done <"$file"
}

# placed_cents FILE...: the sum of the order_total of order-place's result lines, in cents.
placed_cents() {
	cat "$@" | jq -n '[inputs | .order_total * 100 | round] | add // 0'
}

# ground_truth: per client with orders, "id|name|email|total cents|last_purchase", from SQL.
ground_truth() {
	sql 'SELECT c.id, c.name, c.email,
			(sum(i.price_when_item_was_ordered * i.quantity) * 100)::bigint,
			max(o.placement_date)
		FROM client c JOIN "order" o ON o.id_client = c.id
			JOIN order_item i ON i.id_order = o.id
		GROUP BY c.id ORDER BY c.id'
}

# read_model: the same lines from the read model, for every client:* hash in
# Redis: name, email and last_purchase from client-get, the total from the
# hash's integer cents (client-get's decimal total must agree with them).
read_model() {
	local ids got rc=0 cents
	ids=$(rcli --scan --pattern 'client:*' | sed 's/^client://' | sort -n)
	[ -n "$ids" ] || return 0
	# shellcheck disable=SC2086
	got=$(client-get $ids 2>&1) || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "client-get exited $rc: $got"
		return 0
	fi
	# shellcheck disable=SC2086
	cents=$(printf 'HGET client:%s total\n' $ids | rcli)
	paste <(printf '%s\n' "$ids") <(printf '%s\n' "$cents") <(printf '%s\n' "$got") |
		jq -rR 'split("\t") as [$id, $cents, $line] | ($line | fromjson) as $c
			| [$id, $c.name, $c.email, $cents, $c.last_purchase]
			+ (if ($c.total * 100 | round | tostring) == $cents then []
			   else ["client-get total \($c.total) is not \($cents) cents"] end)
			| join("|")'
}

# check_read_model: the read model equals the ground truth for every client;
# prints the differences otherwise.
check_read_model() {
	local want got
	want=$(ground_truth)
	got=$(read_model)
	[ "$want" = "$got" ] && return 0
	diff -u --label 'ground truth (SQL)' --label 'read model (Redis)' \
		<(printf '%s\n' "$want") <(printf '%s\n' "$got") || true
	return 1
}

# wait_until_drained [SECONDS]: until order_event is empty and the read model
# equals the ground truth (60 s by default).
wait_until_drained() {
	local secs=${1:-60} deadline
	deadline=$((SECONDS + secs))
	until outbox_empty && check_read_model >/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "wait_until_drained: not drained after $secs s;" \
				"$(sql 'SELECT count(*) FROM order_event') rows in order_event" >&2
			check_read_model >&2 || true
			return 1
		fi
		sleep 0.1
	done
}

# snapshot: every client:* hash, fields sorted.
snapshot() {
	local k
	for k in $(rcli --scan --pattern 'client:*' | sort); do
		echo "$k"
		rcli hgetall "$k" | paste - - | sort
	done
}

# ack_is FILE POS: FILE holds exactly one line, POS and the slot's identity.
ack_is() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" = 1 ] &&
		[[ $(cat "$1") =~ ^$2\ pg:[0-9]+:[0-9]+:cqrs_outbox$ ]]
}

@test "the AWS sample: Bob's order reaches the read model, leaves the outbox, and the slot moves past it" {
	run -0 pipeline start
	before=$(slot_confirmed)
	run -0 --separate-stderr order-place <<<"$SAMPLE"
	[ "${#lines[@]}" -eq 1 ]
	[[ $output == '{"id_order":1,"id_client":1,"order_total":3000.00,"placement_date":'* ]]
	date=$(jq -r .placement_date <<<"$output")
	commit=$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")
	[ "$before" -lt "$commit" ]
	want='{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":'$date',"id_client":1}'
	wait_for 10 prints "$want" client-get 1 ||
		{ echo "client-get 1: $(client-get 1 2>&1), want $want" >&2; false; }
	wait_for 10 outbox_empty
	wait_for 10 confirmed_past "$commit" ||
		{ echo "confirmed_flush_lsn $(slot_confirmed) < $commit after the order" >&2; false; }
	check_read_model
	# Clients without orders have no read model.
	run -1 --separate-stderr client-get 2
	[ "$stderr" = "client-get: client 2: not found" ]
	[ "$(rcli --scan --pattern 'client:*')" = client:1 ]
}

@test "2000 random orders from two processes while the pipeline runs: read model equals SQL" {
	random_orders 1000 "$SEED" >"$BATS_TEST_TMPDIR/o1"
	random_orders 1000 "$((SEED + 1))" >"$BATS_TEST_TMPDIR/o2"
	grep -q '"products":\[{[^]]*},{' "$BATS_TEST_TMPDIR/o1"	# several products, sometimes
	run -0 pipeline start
	order-place <"$BATS_TEST_TMPDIR/o1" >"$BATS_TEST_TMPDIR/r1" 3>&- &
	p1=$!
	order-place <"$BATS_TEST_TMPDIR/o2" >"$BATS_TEST_TMPDIR/r2" 3>&- &
	p2=$!
	BG_PIDS="$p1 $p2"
	wait "$p1"
	wait "$p2"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/r1")" = 1000 ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/r2")" = 1000 ]
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2000 ]
	wait_until_drained 60
	check_read_model
	outbox_empty
	# What order-place reported is what the read model holds, to the cent.
	placed=$(placed_cents "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r2")
	held=0
	for id in 1 2 3; do
		held=$((held + $(rcli hget "client:$id" total)))
	done
	[ "$placed" = "$held" ] || { echo "order-place: $placed cents, read model: $held cents" >&2; false; }
	[ "$held" = "$(sql 'SELECT (sum(price_when_item_was_ordered * quantity) * 100)::bigint FROM order_item')" ]
}

@test "the same event stream applied twice by client-project changes nothing the second time" {
	outbox-tail --once >/dev/null 2>&1	# creates the slot before the orders
	random_orders 200 "$SEED" | order-place >"$BATS_TEST_TMPDIR/r"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/r")" = 200 ]
	run -0 --separate-stderr outbox-tail --once
	[ "${#lines[@]}" -eq 200 ]
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/events"
	run -0 --separate-stderr client-project -v <"$BATS_TEST_TMPDIR/events"
	[ "$stderr" = "client-project: 200 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	first=$(snapshot)
	[ -n "$first" ]
	run -0 --separate-stderr client-project -v <"$BATS_TEST_TMPDIR/events"
	[ "$stderr" = "client-project: 0 applied, 200 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	second=$(snapshot)
	[ "$first" = "$second" ] || { diff <(echo "$first") <(echo "$second") >&2; false; }
	check_read_model
}

@test "the pipeline killed with SIGKILL mid-run and started again loses nothing and counts nothing twice" {
	random_orders 1000 "$SEED" >"$BATS_TEST_TMPDIR/o1"
	random_orders 1000 "$((SEED + 1))" >"$BATS_TEST_TMPDIR/o2"
	run -0 pipeline start
	# Orders keep coming before, between and after the kills: each placer
	# places 300, then waits for go.1 (set after the first restart), places
	# 300 more, waits for go.2, places the rest.
	go=$BATS_TEST_TMPDIR/go
	(trickle "$BATS_TEST_TMPDIR/o1" "$go.1" "$go.2" | order-place >"$BATS_TEST_TMPDIR/r1") 3>&- &
	p1=$!
	(trickle "$BATS_TEST_TMPDIR/o2" "$go.1" "$go.2" | order-place >"$BATS_TEST_TMPDIR/r2") 3>&- &
	p2=$!
	BG_PIDS="$p1 $p2"
	for round in 1 2; do
		sleep 0.5
		placed=$(sql 'SELECT count(*) FROM "order"')
		[ "$placed" -gt 0 ]
		[ "$placed" -le $((round * 600)) ]	# gated: more come after the restart
		pid=$(cat "$RUN/pid")
		kill -KILL -- "-$pid"
		# As a supervisor would: until the whole group is gone (and reaped).
		wait_for 10 group_gone "$pid"
		run -1 pipeline status
		run -0 pipeline start
		touch "$go.$round"
	done
	wait "$p1"
	wait "$p2"
	[ "$(sql 'SELECT count(*) FROM "order"')" = 2000 ]
	run -0 pipeline status
	wait_until_drained 60
	check_read_model
	outbox_empty
	[ "$(placed_cents "$BATS_TEST_TMPDIR/r1" "$BATS_TEST_TMPDIR/r2")" = \
		"$(sql 'SELECT (sum(price_when_item_was_ordered * quantity) * 100)::bigint FROM order_item')" ]
}

@test "a subscriber that exits at once: event-fanout exits 75 and names it and its status" {
	outbox-tail --once >/dev/null 2>&1
	random_orders 20 "$SEED" | order-place >/dev/null
	run -0 --separate-stderr bash -c \
		'outbox-tail --once | event-fanout client-project "sh -c \"exit 3\""; echo "${PIPESTATUS[1]}"'
	[ "${lines[-1]}" = 75 ]
	[[ $stderr == *'event-fanout: subscriber 2 (sh -c "exit 3"): exited with status 3'* ]]
}

@test "a subscriber that dies mid-stream: event-fanout exits 75 and names it and its status" {
	outbox-tail --once >/dev/null 2>&1
	random_orders 300 "$SEED" | order-place >/dev/null
	run -0 --separate-stderr bash -c \
		'outbox-tail --once | event-fanout client-project "head -n 2 >/dev/null; exit 4"; echo "${PIPESTATUS[1]}"'
	[ "${lines[-1]}" = 75 ]
	[[ $stderr == *'event-fanout: subscriber 2 (head -n 2 >/dev/null; exit 4): exited with status 4'* ]]
	[[ $stderr != *'subscriber 1'* ]]
}

@test "ack files: each holds the last event's position, and the slot is confirmed past it" {
	run -0 pipeline start
	# A second slot sees the same events, with the positions the pipeline saw.
	sql "SELECT pg_create_logical_replication_slot('probe', 'pgoutput')" >/dev/null
	random_orders 50 "$SEED" | order-place >/dev/null
	wait_until_drained 30
	run -0 --separate-stderr outbox-tail --once --slot probe
	[ "${#lines[@]}" -eq 50 ]
	last=$(jq -r '"\(.__lsn) \(.__seq)"' <<<"${lines[-1]}")
	[[ $last =~ ^[0-9]+\ 0$ ]]
	wait_for 5 ack_is "$RUN/proj.pos" "$last" ||
		{ echo "proj.pos: $(cat "$RUN/proj.pos"), want $last" >&2; false; }
	wait_for 5 ack_is "$RUN/clean.pos" "$last" ||
		{ echo "clean.pos: $(cat "$RUN/clean.pos"), want $last" >&2; false; }
	# The slot is confirmed past the last commit (its end LSN).
	wait_for 5 confirmed_past "$((${last% *} + 1))" ||
		{ echo "confirmed_flush_lsn $(slot_confirmed), last event at ${last% *}" >&2; false; }
	# No temporary ack files are left behind.
	[ -z "$(find "$RUN" -name '*.tmp*')" ]
}

@test "status exits 0 while running and 1 when stopped; stop twice is fine" {
	run -1 pipeline status
	[ "${lines[0]}" = "pipeline: not running" ]
	run -0 pipeline start
	run -0 pipeline status
	[[ ${lines[0]} == "pipeline: running (pid $(cat "$RUN/pid"))"* ]]
	run -0 pipeline start	# already running
	run -0 pipeline stop
	[ ! -e "$RUN/pid" ]
	run -0 pipeline stop
	run -1 pipeline status
	wait_for 10 no_active_slot
}

@test "start fails, and says why, when another consumer holds the slot" {
	outbox-tail >/dev/null 2>"$BATS_TEST_TMPDIR/other.err" 3>&- &
	BG_PIDS=$!
	wait_for 10 slot_active
	# The pipeline's outbox-tail cannot stream: start must not report success.
	run -1 --separate-stderr pipeline start
	[[ $stderr == *'slot cqrs_outbox is in use by another process; not starting'* ]]
	run -1 pipeline status
}

@test "a pid file naming a dead but unreaped process (a zombie) counts as stopped" {
	# The state after kill -9 under an init that reaps late or never:
	# the leader is dead, but kill -0 still succeeds on it.
	# The child exits only once its parent is sleep, which never reaps it.
	bash -c 'sh -c "while [ \"\$(cat /proc/\$PPID/comm)\" != sleep ]; do sleep 0.01; done" &
		echo $! >"$0"; exec sleep 10' "$BATS_TEST_TMPDIR/zpid" 3>&- &
	BG_PIDS=$!
	wait_for 5 is_zombie "$BATS_TEST_TMPDIR/zpid"
	zombie=$(cat "$BATS_TEST_TMPDIR/zpid")
	mkdir -p "$RUN"
	echo "$zombie" >"$RUN/pid"
	run -1 pipeline status
	[ "${lines[0]}" = "pipeline: not running" ]
	run -0 --separate-stderr pipeline start
	[ "$(cat "$RUN/pid")" != "$zombie" ]
	run -0 pipeline status
}

# Operations (issues 9 and 15): the log, restarts with the servers, a clean
# stop, the flow's exit status, and status as a table or JSON.

# ops_stamped FILE: every line of FILE starts with a UTC time to the
# millisecond, and the times never go back.
ops_stamped() {
	local bad
	bad=$(grep -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z ' "$1" || true)
	[ -z "$bad" ] || { echo "lines without a timestamp: $bad"; return 1; }
	cut -d' ' -f1 "$1" | sort -c
}

@test "pipeline log: every line starts with a UTC timestamp to the millisecond, in order, to the last words" {
	run -0 pipeline start
	order-place <<<"$SAMPLE" >/dev/null
	wait_until_drained 30
	run -0 pipeline stop
	[ "$(wc -l <"$RUN/log")" -ge 2 ]
	ops_stamped "$RUN/log"
	grep -q 'Z supervise: .* started (pid ' "$RUN/log"
	tail -n 1 "$RUN/log" | grep -q 'Z supervise: .* stopped after '
}

@test "pipeline: after PostgreSQL and then Redis crash and come back, it runs again and delivers" {
	run -0 pipeline start
	order-place <<<"$SAMPLE" >/dev/null
	wait_until_drained 30
	# Bring each server back before judging, so that a failure here
	# leaves the stack up for the tests after it.
	"$CQRS_REPO/scripts/stack" crash pg >/dev/null 2>&1
	noticed=0
	wait_for 30 grep -q 'exited with status' "$RUN/log" || noticed=$?
	st=0
	out=$(pipeline status 2>&1) || st=$?
	"$CQRS_REPO/scripts/stack" up >/dev/null 2>&1
	[ "$noticed" -eq 0 ]
	[ "$st" -eq 0 ] || { echo "status while PostgreSQL was down: $st: $out"; false; }
	[[ $out == "pipeline: running (pid $(cat "$RUN/pid"))"* ]]
	order-place <<<"$SAMPLE" >/dev/null
	wait_for 60 prints '{"name":"Bob","email":"bob@anemailprovider.com","total":6000.0,"last_purchase":'"$(sql 'SELECT max(placement_date) FROM "order"')"',"id_client":1}' client-get 1 ||
		{ echo "client-get 1: $(client-get 1 2>&1)"; false; }

	restarts=$(grep -c 'exited with status' "$RUN/log")
	"$CQRS_REPO/scripts/stack" crash redis >/dev/null 2>&1
	order-place <<<'{"id_client":2,"products":[{"id_product":3,"quantity":1}]}' >/dev/null
	noticed=0
	wait_for 30 more_restarts "$restarts" || noticed=$?
	"$CQRS_REPO/scripts/stack" up >/dev/null 2>&1
	[ "$noticed" -eq 0 ]
	wait_for 60 prints 1000 client_total 2
	wait_until_drained 60
	check_read_model
	run -0 pipeline status
	ops_stamped "$RUN/log"
}

# more_restarts N: the supervisor has logged more than N restarts.
more_restarts() {
	[ "$(grep -c 'exited with status' "$RUN/log")" -gt "$1" ]
}

# client_total ID: the total that client-get prints for ID, as jq writes numbers (1000.0 is 1000).
client_total() {
	client-get "$1" 2>/dev/null | jq -r .total
}

@test "pipeline stop: every stage ends cleanly, and the log names no failure" {
	run -0 pipeline start
	random_orders 100 "$SEED" | order-place >/dev/null
	wait_until_drained 30
	pid=$(cat "$RUN/pid")
	run -0 --separate-stderr pipeline stop
	[ "$stderr" = "pipeline: stopped" ]
	# Nothing of the pipeline is left, and the slot is free.
	wait_for 10 group_gone "$pid"
	wait_for 10 no_active_slot
	run -1 grep -E 'killed by signal|exited with status|failed|still running' "$RUN/log"
	tail -n 1 "$RUN/log" | grep -q 'supervise: .* stopped after 1 restarts'
}

@test "pipeline run: exits with outbox-tail's failure, not event-fanout's 0" {
	# Another consumer holds the slot: outbox-tail cannot stream, and the
	# consumers, their input ended, exit 0, and so does event-fanout.
	outbox-tail >/dev/null 2>"$BATS_TEST_TMPDIR/other.err" 3>&- &
	BG_PIDS=$!
	wait_for 10 slot_active
	want=0
	outbox-tail </dev/null >/dev/null 2>/dev/null || want=$?
	[ "$want" -ne 0 ]
	mkdir -p "$RUN"
	run --separate-stderr "$CQRS_REPO/scripts/pipeline" run 3>&-
	[ "$status" -eq "$want" ] || { echo "pipeline run: $status, outbox-tail alone: $want; $stderr"; false; }
	[[ $stderr == *"outbox-tail: "* ]]
	[[ $stderr != *"event-fanout: "* ]]
}

@test "pipeline status: outbox-status's view as a table, and as JSON with --json" {
	run -1 --separate-stderr pipeline status
	[ "${lines[0]}" = "pipeline: not running" ]
	run -0 pipeline start
	order-place <<<"$SAMPLE" >/dev/null
	wait_until_drained 30
	wait_for 30 ack_has_source "$RUN/proj.pos"
	run -0 --separate-stderr pipeline status
	[ -z "$stderr" ]
	[ "${lines[0]}" = "pipeline: running (pid $(cat "$RUN/pid"))" ]
	[[ ${lines[1]} =~ ^flow\ +pid\ [0-9]+,\ up\ [0-9:]+$ ]]
	src=$(psql "dbname=$PGDATABASE replication=database" -XAt -c IDENTIFY_SYSTEM |
		awk -F'|' '{ print "pg:" $1 ":" $2 ":cqrs_outbox" }')
	[[ ${lines[2]} =~ ^source\ +$src,\ WAL\ at\ [0-9A-F]+/[0-9A-F]+$ ]]
	[[ ${lines[3]} =~ ^slot\ +cqrs_outbox:\ active\ \(pid\ [0-9]+\),\ lag\ [0-9.]+\ (B|KiB|MiB),\ retained\ .*,\ wal_status\ reserved$ ]]
	[ "${lines[4]}" = "outbox      0 rows pending" ]
	[ "${lines[5]}" = "read model  1 clients" ]
	[[ ${lines[6]} == "ack file "*position*lag*age*held*behind ]]
	# The positions as PostgreSQL writes LSNs.
	for f in clean.pos proj.pos; do
		lsn=$(sql "SELECT ('0/0'::pg_lsn + $(cut -d' ' -f1 "$RUN/$f"))::text")
		seq=$(cut -d' ' -f2 "$RUN/$f")
		printf '%s\n' "${lines[@]}" | grep -qE "^$f +$lsn/$seq +[0-9.]+ (B|KiB|MiB) +[0-9.]+ (s|min|h) +yes +no$" ||
			{ echo "no row for $f at $lsn/$seq:"; printf '%s\n' "${lines[@]}"; false; }
	done
	[ "${lines[-1]}" = "alerts      none" ]

	run -0 --separate-stderr pipeline status --json
	[ "${#lines[@]}" -eq 1 ]
	jq -e --argjson pid "$(cat "$RUN/pid")" --arg run "$RUN" --arg src "$src" '
		.pipeline.running and .pipeline.pid == $pid and .pipeline.flow_pid > 0
		and .source == $src and .slot.active
		and [.ack[].path] == [$run + "/clean.pos", $run + "/proj.pos"]
		and all(.ack[]; .held and .source_ok)' <<<"$output"
	run -64 pipeline status --yaml

	run -0 pipeline stop
	run -1 --separate-stderr pipeline status
	[ "${lines[0]}" = "pipeline: not running" ]
	[[ ${lines[2]} == "slot        cqrs_outbox: inactive, lag "* ]]
	run -1 --separate-stderr pipeline status --json
	jq -e '(.pipeline.running | not) and .pipeline.pid == null and (.slot.active | not)
		and all(.ack[]; .held | not)' <<<"$output"
}

# ack_has_source FILE: FILE names the stream its position belongs to.
ack_has_source() {
	[ "$(wc -w <"$1")" -eq 3 ]
}
