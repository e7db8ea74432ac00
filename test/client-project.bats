#!/usr/bin/env bats
# client-project: events to the Redis read model, exactly once, in cents; bad lines, acks, Redis faults.

bats_require_minimum_version 1.5.0
load test_helper

USAGE='usage: client-project [-hkvV] [-a ack-file] [-b batch] [-L latency-file]
                      [-P password-file] [-r url] [-W window] [--reject-file file]
                      [--stats seconds]'
POS100=000000000000000001000000000000	# __lsn 100, __seq 0

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
	PRIV_DIR=
}

teardown() {
	exec 4>&- 2>/dev/null || true
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"
	fi
	redis_private_stop
}

# ev LSN SEQ [ID_CLIENT [ORDER_TOTAL [EVENT_DATE [TABLE]]]]: an event line as
# outbox-tail writes it; numbers are written as given (3000.00 stays 3000.00).
ev() {
	printf '{"id":%s,"id_client":%s,"name":"%s","email":"%s","order_total":%s,"event_date":%s,"__table":"%s","__op":"c","__lsn":%s,"__seq":%s,"__xid":7,"__ts_ms":1707484820123}\n' \
	    "$1" "${3:-1}" "Client${3:-1}" "c${3:-1}@anemailprovider.com" \
	    "${4:-3000.00}" "${5:-1707484820}" "${6:-public.order_event}" \
	    "$1" "$2"
}

# snapshot: every key of the read model with its fields, sorted.
snapshot() {
	local k
	rcli --scan | sort | while read -r k; do
		echo "$k"
		rcli hgetall "$k" | paste - - | sort | grep -v '^created'
	done
}

# field KEY FIELD: one field of a hash.
field() {
	rcli hget "$1" "$2"
}

# wait_for_content FILE TEXT: wait up to 10 s until FILE holds exactly TEXT.
wait_for_content() {
	local i
	for i in $(seq 200); do
		[ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.05
	done
	echo "wait_for_content: $1 holds '$(cat "$1" 2>/dev/null)', not '$2', after 10 s" >&2
	return 1
}

# redis_private [ARGS...]: a second Redis of this test only, on $PRIV_SOCK.
redis_private() {
	local i
	PRIV_DIR=$BATS_TEST_TMPDIR/r
	PRIV_SOCK=$PRIV_DIR/redis.sock
	mkdir -p "$PRIV_DIR"
	redis-server --port 0 --unixsocket "$PRIV_SOCK" --unixsocketperm 700 \
		--pidfile "$PRIV_DIR/redis.pid" --dir "$PRIV_DIR" \
		--logfile "$PRIV_DIR/redis.log" --daemonize yes --save '' "$@"
	for i in $(seq 100); do
		[ -s "$PRIV_DIR/redis.pid" ] && [ -S "$PRIV_SOCK" ] &&
			[ -n "$(redis-cli -s "$PRIV_SOCK" ping 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	echo "redis_private: no answer within 5 s" >&2
	return 1
}

# redis_private_kill [SIGNAL]: signal the private Redis by its pidfile; wait up to 5 s for it to end.
redis_private_kill() {
	local p i
	p=$(cat "$PRIV_DIR/redis.pid" 2>/dev/null) || return 0
	[ "$(cat "/proc/$p/comm" 2>/dev/null)" = redis-server ] || return 0
	kill "-${1:-TERM}" "$p"
	for i in $(seq 100); do
		alive "$p" || return 0
		sleep 0.05
	done
	kill -9 "$p"
}

# alive PID: whether PID runs (a zombie that init has not reaped yet does not).
alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ] && [ "${st%% *}" != X ]
}

redis_private_stop() {
	[ -n "$PRIV_DIR" ] || return 0
	redis_private_kill KILL
}

# rejects LINE MESSAGE: with LINE between two good events, client-project
# exits 65 naming stdin:2 and MESSAGE; the first event is applied and
# acknowledged, the bad line and the one after it change nothing.
rejects() {
	{ ev 100 0; printf '%s\n' "$1"; ev 300 0 2 5.00; } >input
	run -65 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == "client-project: stdin:2: "$2 ]]	# $2 may be a pattern
	[ "${#stderr_lines[@]}" = 1 ]
	[ -z "$output" ]
	# client:1 (and its window) as the first event left it, and the model's mark
	[ "$(rcli eval "return {redis.call('dbsize'),
	    redis.call('hget', 'client:1', 'total'),
	    redis.call('hget', 'client:1', 'pos')}" 0 | paste -sd ' ')" = "3 300000 $POS100" ]
	[ "$(cat ack)" = "100 0" ]
}

@test "one event: client-get shows it, the hash holds cents and the position" {
	ev 100 0 | sed 's/"name":"Client1"/"name":"Bob"/; s/c1@/bob@/' >input
	run -0 --separate-stderr client-project <input
	[ -z "$output" ]
	[ -z "$stderr" ]
	run -0 --separate-stderr client-get 1
	[ "$output" = '{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820,"id_client":1}' ]
	[ "$(field client:1 total)" = 300000 ]
	[ "$(field client:1 pos)" = 00000000000000000100$(printf %010d 0) ]
	[ "$(field client:1 last_purchase)" = 1707484820 ]
	[ "$(rcli get '{client:1}:ids')" = ' 100 ' ]
	[ "$(rcli hlen client:1)" = 8 ]
	[ "$(rcli --scan | sort | paste -sd ' ')" = "client:1 cqrs:model {client:1}:ids" ]
}

@test "the position is 20 digits of __lsn and 10 of __seq" {
	ev 1152921504606846976 4294967295 | sed 's/^{"id":[0-9]*/{"id":1/' >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 pos)" = 011529215046068469764294967295 ]
}

@test "totals add in exact cents" {
	{ ev 100 0 1 0.10; ev 200 0 1 0.20; } >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 30 ]
	run -0 --separate-stderr client-get 1
	[[ $output == *'"total":0.3,'* ]]
	for i in $(seq 1000); do ev "$((1000 + i))" 0 2 0.01; done >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:2 total)" = 1000 ]
	run -0 --separate-stderr client-get 2
	[[ $output == *'"total":10.0,'* ]]
}

@test "batches of one and of 7 give the same totals as the default" {
	for i in $(seq 100); do ev "$((100 * i))" "$((i % 3))" "$((i % 4 + 1))" "$i.$((i % 10))5"; done >input
	client-project <input
	snapshot | grep -v created >want
	for b in 1 7; do
		rcli flushall >/dev/null
		rm -f ack
		run -0 --separate-stderr client-project -b "$b" --ack-file ack <input
		snapshot | grep -v created >got
		cmp want got
		[ "$(cat ack)" = "10000 1" ]
	done
}

@test "integer totals count whole units; a negative total is refused" {
	{ ev 100 0 1 3000; ev 200 0 1 0.5; } >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 300050 ]
	rcli flushall >/dev/null
	rejects "$(ev 200 0 1 -0.5)" "order_total: must be from 0 to 999999999999.99"
}

@test "last_purchase never goes backwards; name and email follow the last event" {
	{ ev 100 0 1 1.00 1707484000; ev 200 0 1 1.00 1707400000 | sed 's/Client1/Robert/'; } >input
	run -0 --separate-stderr client-project -v <input
	[ "$stderr" = "client-project: 2 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 last_purchase)" = 1707484000 ]
	[ "$(field client:1 total)" = 200 ]
	[ "$(field client:1 name)" = Robert ]
	[ "$(field client:1 pos)" = 000000000000000002000000000000 ]
}

@test "the same stream fed twice changes nothing the second time" {
	for i in $(seq 20); do ev "$((100 * i))" 0 "$((i % 3 + 1))" "1$i.25" "$((1707484820 - i))"; done >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 20 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	snapshot >first
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 0 applied, 20 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	snapshot >second
	cmp first second
	[ "$(cat ack)" = "2000 0" ]
	# Without the ack file, the read model's positions alone tell the replay.
	run -0 --separate-stderr client-project -v <input
	[ "$stderr" = "client-project: 0 applied, 20 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	snapshot >third
	cmp first third
}

@test "a stream whose first half comes again in the middle counts each position once" {
	for i in $(seq 10); do ev "$((100 * i))" 0 "$((i % 3 + 1))" "$i.01"; done >all
	{ head -n 5 all; head -n 5 all; tail -n 5 all; } >replayed
	run -0 --separate-stderr client-project -v --ack-file ack <replayed
	[ "$stderr" = "client-project: 10 applied, 5 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(cat ack)" = "1000 0" ]
	snapshot >got
	rcli flushall >/dev/null
	client-project <all
	snapshot >want
	cmp want got
}

@test "an event behind its client's position is not applied (input order is position order)" {
	{ ev 200 0 1 1.00; ev 100 0 1 5.00; ev 100 1 2 7.00; } >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 2 applied, 1 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 total)" = 100 ]
	[ "$(field client:2 total)" = 700 ]
	[ "$(cat ack)" = "200 0" ]
}

@test "events of other tables are skipped and acknowledged" {
	{ ev 100 0 1 1.00 1 public.order_item; ev 100 1 1 1.00 1 public.client; } >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 0 applied, 0 replayed, 0 duplicates, 2 skipped, 0 rejected" ]
	[ -z "$output" ]
	[ "$(rcli --scan)" = cqrs:model ]	# marked, nothing else
	[ "$(cat ack)" = "100 1" ]
	# a line without __table is refused, not taken for another table
	echo '{"__lsn":200,"__seq":0,"id_client":"not checked"}' >input
	run -65 --separate-stderr client-project -v --ack-file ack <input
	[[ $stderr == "client-project: stdin:1: __table: missing"* ]]
	[ "$(cat ack)" = "100 1" ]
}

@test "the ack file is one line \"LSN SEQ\" of the last event, written atomically" {
	{ ev 100 0; ev 100 1 2; ev 250 3 3; } >input
	run -0 --separate-stderr client-project --ack-file ack <input
	printf '250 3\n' | cmp - ack
	[ "$(ls -A | grep '^ack\.')" = ack.lock ]	# no temporary file left
	run -0 --separate-stderr client-project -a ack2 <input
	cmp ack ack2
}

@test "no event applied, no ack file written" {
	run -0 --separate-stderr client-project --ack-file ack </dev/null
	[ ! -e ack ]
	[ -z "$stderr" ]
}

@test "the ack file is written while the input stays open" {
	idle_input
	client-project --ack-file ack <in 3>&- 4>&- &
	pid=$!
	ev 100 0 >&4
	wait_for_content ack "100 0"
	[ "$(field client:1 total)" = 300000 ]
	ev 200 5 >&4
	wait_for_content ack "200 5"
	exec 4>&-
	wait_job "$pid"
	[ "$rc" = 0 ]
}

@test "SIGTERM while reading: what was read is applied and acknowledged, exit 0" {
	idle_input
	client-project --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	ev 100 0 >&4
	wait_for_content ack "100 0"
	kill -TERM "$pid"
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ ! -s err ]
	[ "$(field client:1 total)" = 300000 ]
}

@test "a bad field: 65 naming stdin:2 and the field, nothing changed by that line or after it" {
	# jq filter applied to a good event (client 1, position 200 0), message
	local cases=(
		'del(.__lsn)'			'__lsn: missing'
		'.__seq = -1'			'__seq: must be an integer from 0 to 4294967295'
		'.__seq = 4294967296'		'__seq: must be an integer from 0 to 4294967295'
		'.__lsn = "200"'		'__lsn: must be an integer from 0 to 1152921504606846976'
		'.__lsn = 200.5'		'__lsn: must be an integer from 0 to 1152921504606846976'
		'.__lsn = 4611686018427387904'	'__lsn: must be an integer from 0 to 1152921504606846976'
		'.__src = ""'			'__src: must be a source identity *'
		'.__src = "a b"'		'__src: must be a source identity *'
		'.__op = "d"'			'__op: "d" is not an insert (want "c" or "r")'
		'.__op = "u"'			'__op: "u" is not an insert *'
		'.__op = 1'			'__op: must be one letter'
		'del(.id)'			'id: missing'
		'.id = 0'			'id: must be an integer from 1 to 9007199254740991'
		'.id = 9007199254740992'	'id: must be an integer from 1 to 9007199254740991'
		'del(.id_client)'		'id_client: missing'
		'.id_client = 0'		'id_client: must be *'
		'.id_client = "1"'		'id_client: must be *'
		'.id_client = -1'		'id_client: must be *'
		'.id_client = 2147483648'	'id_client: must be *'
		'del(.order_total)'		'order_total: missing'
		'.order_total = "3000"'		'order_total: must be a number'
		'.order_total = "NaN"'		'order_total: must be a number'
		'.order_total = 0.001'		'order_total: more than two decimals'
		'.order_total = 12.345'		'order_total: more than two decimals'
		'.order_total = 1e14'		'order_total: must be from 0 to 999999999999.99'
		'.order_total = -1e14'		'order_total: must be from 0 to 999999999999.99'
		'.order_total = -0.01'		'order_total: must be from 0 to 999999999999.99'
		'.order_total = 1000000000000'	'order_total: must be from 0 to 999999999999.99'
		'.order_total = 1e13 + 0.5'	'order_total: must be from 0 to 999999999999.99'
		'del(.name)'			'name: missing'
		'.name = 1'			'name: must be a string'
		'.name = "a\u0000b"'		'*\u0000 is not allowed*'
		'.email = null'			'email: must be a string'
		'del(.event_date)'		'event_date: missing'
		'.event_date = 1.5'		'event_date: must be an integer'
		'.event_date = "1707484820"'	'event_date: must be an integer'
		'.event_date = -1'		'event_date: -1 is not from 2000-01-01 to a day from now'
		'.event_date = 946684799'	'event_date: 946684799 is not from *'
		'.event_date = 4102444800'	'event_date: 4102444800 is not from *'
		'.__xid = -1'			'__xid: must be an integer from 0 to 4294967295'
		'.__xid = "7"'			'__xid: must be an integer from 0 to 4294967295'
		'del(.__table)'			'__table: missing'
	)
	# not i: bats's own functions, which run calls, set i
	for ((case_no = 0; case_no < ${#cases[@]}; case_no += 2)); do
		echo "case: ${cases[case_no]}"
		rcli flushall >/dev/null
		rm -f ack
		rejects "$(ev 200 0 | jq -c "${cases[case_no]}")" "${cases[case_no + 1]}"
	done
	rcli flushall >/dev/null
	rm -f ack
	rejects "$(ev 200 0 0)" "id_client: must be *"
	[ "$(rcli exists client:0)" = 0 ]
}

@test "a bad line: 65 naming stdin:2, nothing changed by that line or after it" {
	local cases=(
		'{"__table":"public.client","__lsn":200}'	'__seq: missing'
		'{"__lsn":200,'					'*expected near end of file (column 13)'
		'[1,2]'						'not a JSON object'
		'"event"'					"*expected near '\"event\"' (column 7)"
		'{"__lsn":200,"__lsn":201,"__seq":0}'		'duplicate object key near *'
		$'{"__lsn":200,"__seq":0,"name":"\xff"}'	'invalid UTF-8 at column 32'
	)
	for ((case_no = 0; case_no < ${#cases[@]}; case_no += 2)); do
		echo "case: ${cases[case_no]}"
		rcli flushall >/dev/null
		rm -f ack
		rejects "${cases[case_no]}" "${cases[case_no + 1]}"
	done
}

@test "id_client 2^31-1 is fine" {
	ev 100 0 2147483647 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:2147483647 total)" = 300000 ]
}

@test "order_total with six decimals is not two decimals" {
	rejects "$(ev 200 0 1 1.000001)" "order_total: more than two decimals"
}

@test "order_total beyond numeric(14,2) is out of range" {
	rejects "$(ev 200 0 1 10000000000000)" "order_total: must be from 0 to 999999999999.99"
	rcli flushall >/dev/null
	rm ack
	rejects "$(ev 200 0 1 1000000000000.00)" "order_total: must be from 0 to 999999999999.99"
}

@test "order_total at the top of numeric(14,2) is exact" {
	ev 100 0 1 999999999999.99 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 99999999999999 ]
	ev 200 0 1 999999999999.99 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 199999999999998 ]
}

@test "-k reports a bad event, applies the rest, acknowledges nothing past it, and exits 65" {
	{ ev 100 0; ev 200 0 0; ev 300 0 2 5.00; ev 400 0 | jq -c 'del(.email)'; } >input
	run -65 --separate-stderr client-project -k -v --ack-file ack <input
	[ "${#stderr_lines[@]}" = 3 ]
	[[ ${stderr_lines[0]} == "client-project: stdin:2: id_client: must be "* ]]
	[ "${stderr_lines[1]}" = "client-project: stdin:4: email: missing" ]
	[ "${stderr_lines[2]}" = "client-project: 2 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 total)" = 300000 ]
	[ "$(field client:2 total)" = 500 ]
	# The bad event is not acknowledged, so it comes again: never lost.
	[ "$(cat ack)" = "100 0" ]
}

@test "NOSCRIPT mid-run: the script is loaded again and the batch applied" {
	idle_input
	client-project -v --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	ev 100 0 1 1.00 >&4
	wait_for_content ack "100 0"
	rcli config resetstat >/dev/null
	rcli script flush >/dev/null
	ev 200 0 1 2.00 >&4
	ev 300 0 2 4.00 >&4
	wait_for_content ack "300 0"
	exec 4>&-
	wait_job "$pid"
	[ "$rc" = 0 ]
	[ "$(cat err)" = "client-project: 3 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 total)" = 300 ]
	[ "$(field client:2 total)" = 400 ]
	rcli info errorstats | grep -q '^errorstat_NOSCRIPT:count=[1-9]'
}

@test "Redis unreachable: 69" {
	ev 100 0 >input
	REDIS_URL=unix:///nonexistent.sock run -69 --separate-stderr client-project <input
	[[ $stderr == "client-project: redis: /nonexistent.sock: "* ]]
	REDIS_URL=redis://127.0.0.1:1 run -69 --separate-stderr client-project <input
	[[ $stderr == "client-project: redis: 127.0.0.1:1: "* ]]
}

@test "-r overrides REDIS_URL" {
	ev 100 0 >input
	REDIS_URL=unix:///nonexistent.sock run -0 --separate-stderr \
	    client-project -r "unix://$CQRS_STACK_DIR/redis/redis.sock" <input
	[ "$(field client:1 total)" = 300000 ]
	REDIS_URL=unix:///nonexistent.sock run -0 --separate-stderr \
	    client-project --redis "unix://$CQRS_STACK_DIR/redis/redis.sock" <input
}

@test "Redis lost mid-run: 69, what was applied stays acknowledged" {
	redis_private
	idle_input
	REDIS_URL=unix://$PRIV_SOCK client-project --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	ev 100 0 >&4
	wait_for_content ack "100 0"
	redis_private_kill KILL
	ev 200 0 >&4
	wait_job "$pid"
	[ "$rc" = 69 ]
	[[ $(cat err) == "client-project: redis: "* ]]
	[ "$(cat ack)" = "100 0" ]
}

@test "a password: none or a wrong one is 77, the right one works" {
	redis_private --requirepass s3cret
	ev 100 0 >input
	REDIS_URL=unix://$PRIV_SOCK run -77 --separate-stderr client-project <input
	[[ $stderr == *NOAUTH* ]]
	REDIS_URL=unix://:n0tit@$PRIV_SOCK run -77 --separate-stderr client-project <input
	[[ $stderr == "client-project: redis: AUTH: "* ]]
	[[ $stderr != *n0tit* ]]	# the password stays out of messages
	REDIS_URL=unix://default:n0tit@$PRIV_SOCK run -77 --separate-stderr client-project <input
	REDIS_URL=unix://:s3cret@$PRIV_SOCK run -0 --separate-stderr client-project <input
	[ -z "$stderr" ]
	REDIS_URL=unix://default:s3cret@$PRIV_SOCK?db=2 run -0 --separate-stderr client-project <input
	[ "$(redis-cli -s "$PRIV_SOCK" -a s3cret --no-auth-warning hget client:1 total)" = 300000 ]
	[ "$(redis-cli -s "$PRIV_SOCK" -a s3cret --no-auth-warning -n 2 hget client:1 total)" = 300000 ]
}

@test "-P: the password from a file, instead of the URL's" {
	redis_private --requirepass 's3cret@:%41'
	printf '%s\n' 's3cret@:%41' >pass
	printf '%s\n' nope >wrong
	: >empty
	ev 100 0 >input
	REDIS_URL=unix://:n0tit@$PRIV_SOCK run -0 --separate-stderr client-project -P pass <input
	[ -z "$stderr" ]
	[ "$(redis-cli -s "$PRIV_SOCK" --pass 's3cret@:%41' --no-auth-warning hget client:1 total)" = 300000 ]
	REDIS_URL=unix://default@$PRIV_SOCK run -0 --separate-stderr client-project --password-file pass <input
	REDIS_URL=unix://$PRIV_SOCK run -77 --separate-stderr client-project -P wrong <input
	[[ $stderr == "client-project: redis: AUTH: "* ]]
	[[ $stderr != *nope* ]]
	REDIS_URL=unix://$PRIV_SOCK run -78 --separate-stderr client-project -P empty <input
	[ "$stderr" = "client-project: empty: empty" ]
	REDIS_URL=unix://$PRIV_SOCK run -78 --separate-stderr client-project -P missing <input
	[[ $stderr == "client-project: missing: "* ]]
}

@test "an ACL user without the needed commands: 77" {
	redis_private
	redis-cli -s "$PRIV_SOCK" acl setuser reader on '>pw' '~*' +ping +hget >/dev/null
	ev 100 0 >input
	REDIS_URL=unix://reader:pw@$PRIV_SOCK run -77 --separate-stderr client-project <input
	[[ $stderr == *NOPERM* ]]
}

@test "Redis out of memory: 75, nothing acknowledged" {
	redis_private --maxmemory 1
	ev 100 0 >input
	REDIS_URL=unix://$PRIV_SOCK run -75 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == "client-project: redis: OOM "* ]]
	[ ! -e ack ]
	[ "$(redis-cli -s "$PRIV_SOCK" dbsize)" = 0 ]
}

@test "Redis busy with a script: 75" {
	redis_private --lua-time-limit 10
	redis-cli -s "$PRIV_SOCK" eval 'while true do end' 0 >/dev/null 2>&1 3>&- &
	busy=$!
	for i in $(seq 100); do
		[[ $(redis-cli -s "$PRIV_SOCK" ping 2>&1) == BUSY* ]] && break
		sleep 0.05
	done
	ev 100 0 >input
	REDIS_URL=unix://$PRIV_SOCK run -75 --separate-stderr client-project <input
	[[ $stderr == *BUSY* ]]
	redis-cli -s "$PRIV_SOCK" script kill >/dev/null
	wait_job "$busy"
}

@test "a key of another type: 70, nothing acknowledged" {
	rcli set client:1 x >/dev/null
	ev 100 0 >input
	run -70 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == "client-project: redis: "*WRONGTYPE* ]]
	[ ! -e ack ]
	[ "$(rcli get client:1)" = x ]
}

@test "a malformed REDIS_URL: 78" {
	for url in http://localhost redis://localhost:99999 redis://localhost:x \
	    redis://localhost/x 'redis://[::1' unix:// 'unix:///tmp/s?x=1' \
	    'unix:///tmp/s?db=x'; do
		REDIS_URL=$url run -78 --separate-stderr client-project </dev/null
		[[ $stderr == "client-project: REDIS_URL: "* ]]
	done
	run -78 --separate-stderr client-project -r rediss://localhost </dev/null
	[[ $stderr == "client-project: -r: "* ]]
}

@test "a database number the server refuses: 78" {
	REDIS_URL="unix://$CQRS_STACK_DIR/redis/redis.sock?db=99" \
	    run -78 --separate-stderr client-project </dev/null
	[[ $stderr == "client-project: redis: SELECT 99: "* ]]
}

@test "usage: unknown options, operands and bad batch sizes are 64; -h is 0" {
	run -0 --separate-stderr client-project -h
	[ -z "$stderr" ]
	[ "${output%%$'\n\n'*}" = "$USAGE" ]
	[[ $output == *"--reject-file FILE"* ]]
	run -0 --separate-stderr client-project --help
	[ "${output%%$'\n\n'*}" = "$USAGE" ]
	run -64 --separate-stderr client-project -x
	[ "${stderr_lines[0]}" = "client-project: invalid option -- 'x'" ]
	[ "$(printf '%s\n' "${stderr_lines[@]:1}")" = "$USAGE" ]
	run -64 --separate-stderr client-project operand
	[ "$stderr" = "$USAGE" ]
	for b in 0 65537 -1 x 1x ''; do
		run -64 --separate-stderr client-project -b "$b"
		[ "$stderr" = "client-project: -b $b: want 1 to 65536" ]
	done
	for w in 0 100001 x; do
		run -64 --separate-stderr client-project -W "$w"
		[ "$stderr" = "client-project: -W $w: want 1 to 100000" ]
	done
	run -0 --separate-stderr client-project -b 65536 </dev/null
}

@test "-L appends the commit-to-applied time of each event, in microseconds" {
	now=$(date +%s%3N)
	{ ev 100 0 | sed "s/\"__ts_ms\":[0-9]*/\"__ts_ms\":$((now - 2000))/"
	  ev 200 0 | jq -c 'del(.__ts_ms)'
	  ev 300 0 1 1.00 1 public.client
	  ev 400 0 2 | sed "s/\"__ts_ms\":[0-9]*/\"__ts_ms\":$((now - 1000))/"; } >input
	echo 7 >lat
	run -0 --separate-stderr client-project -L lat <input
	[ "${#lines[@]}" = 0 ]
	[ "$(wc -l <lat)" = 3 ]
	[ "$(head -n 1 lat)" = 7 ]
	first=$(sed -n 2p lat)
	second=$(sed -n 3p lat)
	# microseconds
	[ "$first" -ge 2000000 ]
	[ "$first" -lt 60000000 ]
	[ "$second" -ge 1000000 ]
	[ "$second" -lt "$first" ]
	# __ts_us wins over __ts_ms
	us=$(( $(date +%s%6N) - 500000 ))
	ev 500 0 | sed "s/\"__ts_ms\":[0-9]*/\"__ts_ms\":1,\"__ts_us\":$us/" >input2
	: >lat2
	run -0 --separate-stderr client-project -L lat2 <input2
	[ "$(cat lat2)" -ge 500000 ]
	[ "$(cat lat2)" -lt 60000000 ]
	# replayed events get their line too
	run -0 --separate-stderr client-project --latency lat <input
	[ "$(wc -l <lat)" = 5 ]
}

@test "-L with a file that cannot be created: 73" {
	run -73 --separate-stderr client-project -L /nonexistent/dir/lat </dev/null
	[[ $stderr == "client-project: /nonexistent/dir/lat: "* ]]
}

@test "-V prints the version" {
	run -0 --separate-stderr client-project -V
	[[ $output == "client-project (cqrs-pipes) "* ]]
	run -0 --separate-stderr client-project --version
}

@test "an ack file that cannot be written: 74, the events stay applied" {
	ev 100 0 >input
	run -74 --separate-stderr client-project --ack-file /nonexistent/dir/f <input
	[[ $stderr == "client-project: /nonexistent/dir/f.lock: "* ]]
	[ "$(rcli exists client:1)" = 0 ]
	# The directory goes away while it runs: the events stay applied.
	mkdir d
	idle_input
	client-project --ack-file d/f <in 2>err 3>&- 4>&- &
	pid=$!
	ev 100 0 >&4
	wait_for_content d/f "100 0"
	mv d d2
	ev 200 0 >&4
	wait_job "$pid"
	[ "$rc" = 74 ]
	grep -q "^client-project: d/f.tmp" err
	[ "$(field client:1 total)" = 600000 ]
}

@test "reading stdin fails: 74" {
	run -74 --separate-stderr client-project </
	[[ $stderr == "client-project: stdin: "* ]]
}

@test "-v prints the counts on stderr, nothing on stdout" {
	{ ev 100 0; ev 100 0; ev 200 0 1 1.00 1 public.client; ev 300 0 2; } >input
	run -0 --separate-stderr client-project -v <input
	[ -z "$output" ]
	[ "$stderr" = "client-project: 2 applied, 1 replayed, 0 duplicates, 1 skipped, 0 rejected" ]
	run -0 --separate-stderr client-project --verbose <input
	[ "$stderr" = "client-project: 0 applied, 3 replayed, 0 duplicates, 1 skipped, 0 rejected" ]
	run -0 --separate-stderr client-project <input
	[ -z "$stderr" ]
}

# --- Nothing lost, nothing doubled (issue 10) ---

# evs LSN SEQ ID_CLIENT TOTAL SRC OP ID: an event line with a source identity and an op.
evs() {
	ev "$1" "$2" "$3" "$4" | jq -c --arg src "$5" --arg op "$6" --argjson id "$7" \
	    '.__src = $src | .__op = $op | .id = $id'
}

@test "an event that cannot be applied leaves its client's hash as it was; the next run does not take it for applied" {
	ev 100 0 1 1.00 >input
	run -0 --separate-stderr client-project <input
	rcli hset client:1 total 8999999999999999900 >/dev/null
	before=$(rcli hgetall client:1 | paste -sd ' ')
	{ ev 200 0 1 999999999.99; ev 300 0 2 1.00; } >input
	run -65 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == *"stdin:1: order_total: the total of client:1 would pass 9e18 cents"* ]]
	[ "$(rcli hgetall client:1 | paste -sd ' ')" = "$before" ]
	[ "$(rcli exists client:2)" = 0 ]
	[ ! -e ack ]
	# Once the total allows it, the same event is applied: it was never recorded.
	rcli hset client:1 total 100 >/dev/null
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 2 applied, 0 replayed, 0 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 total)" = 100000000099 ]
}

@test "--reject-file: a poison event is kept with its reason, acknowledged, and the flow goes on" {
	{ ev 100 0; ev 200 0 1 1.00 | sed 's/"order_total":1.00/"order_total":"NaN"/'
	  ev 300 0 | sed 's/Client1.*//' | tr -d '\n'; head -c 1100000 /dev/zero | tr '\0' x
	  ev 300 0 | sed 's/.*Client1//'; ev 400 0 2 5.00; } >input
	run -0 --separate-stderr client-project -v --reject-file rej --ack-file ack <input
	[[ ${stderr_lines[0]} == "client-project: stdin:2: order_total: must be a number (rejected)" ]]
	[[ ${stderr_lines[1]} == "client-project: stdin:3: line longer than 1048576 bytes (rejected)" ]]
	[ "${stderr_lines[2]}" = "client-project: 2 applied, 0 replayed, 0 duplicates, 0 skipped, 2 rejected" ]
	[ "$(cat ack)" = "400 0" ]
	[ "$(wc -l <rej)" = 2 ]
	[ "$(jq -r .reason rej | head -n 1)" = "order_total: must be a number" ]
	[ "$(head -n 1 rej | jq -r .line)" = "$(sed -n 2p input)" ]
	[ "$(jq -r .input rej | paste -sd ' ')" = "stdin:2 stdin:3" ]
	[ "$(jq -r .by rej | sort -u)" = client-project ]
	[ "$(sed -n 2p rej | jq -r .line | wc -c)" -gt 1048576 ]
	[ "$(field client:1 total)" = 300000 ]
	[ "$(field client:2 total)" = 500 ]
	# Without --reject-file the same poison stops the run, and is not acknowledged.
	rcli flushall >/dev/null
	rm -f ack
	run -65 --separate-stderr client-project --ack-file ack <input
	[ "$(cat ack)" = "100 0" ]
}

@test "one ack file, one consumer: a second client-project on it is refused with 75" {
	idle_input
	client-project --ack-file ack <in 3>&- 4>&- &
	pid=$!
	ev 100 0 >&4
	wait_for_content ack "100 0"
	ev 200 0 >input
	run -75 --separate-stderr client-project --ack-file ack -r "unix://$CQRS_STACK_DIR/redis/redis.sock?db=1" <input
	[[ $stderr == *"ack: in use by another consumer"* ]]
	[ "$(rcli -n 1 dbsize)" = 0 ]
	exec 4>&-
	wait_job "$pid"
	[ "$rc" = 0 ]
}

@test "FLUSHALL: a read model that lost what the ack file says was applied is refused, before and while running" {
	ev 100 0 >input
	run -0 --separate-stderr client-project --ack-file ack <input
	rcli flushall >/dev/null
	ev 200 0 >input
	run -78 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == *"the read model is gone"*"client-rebuild"* ]]
	[ "$(rcli dbsize)" = 0 ]
	# While running: the batch after the flush is refused.
	rm -f ack
	idle_input
	client-project --ack-file ack <in 2>err 3>&- 4>&- &
	pid=$!
	ev 300 0 >&4
	wait_for_content ack "300 0"
	rcli flushall >/dev/null
	ev 400 0 >&4
	wait_job "$pid"
	[ "$rc" = 78 ]
	grep -q "the read model is gone" err
	[ "$(rcli exists client:1)" = 0 ]
	[ "$(cat ack)" = "300 0" ]
}

@test "positions of another stream are refused with 78, naming both; within one run and against the ack file" {
	evs 100 0 1 1.00 pg:1:1:s c 1 >input
	run -0 --separate-stderr client-project --ack-file ack <input
	[ "$(cat ack)" = "100 0 pg:1:1:s" ]
	evs 200 0 2 1.00 pg:2:1:s c 2 >input
	run -78 --separate-stderr client-project --ack-file ack <input
	[[ $stderr == *'"pg:2:1:s"'*'"pg:1:1:s"'* ]]
	[ "$(rcli exists client:2)" = 0 ]
	# A read model that follows another stream, even without the ack file.
	run -78 --separate-stderr client-project <input
	[[ $stderr == *"the read model: its read model holds positions of \"pg:1:1:s\", this event is from \"pg:2:1:s\""*client-rebuild* ]]
	[ "$(rcli exists client:2)" = 0 ]
	# A client whose hash came from another stream (a model without its mark of source).
	rcli hdel cqrs:model src >/dev/null
	evs 300 0 1 1.00 pg:2:1:s c 3 >input
	run -78 --separate-stderr client-project <input
	[[ $stderr == *"client:1: its read model holds positions of \"pg:1:1:s\", this event is from \"pg:2:1:s\""*client-rebuild* ]]
	[ "$(field client:1 total)" = 100 ]
	{ evs 400 0 1 1.00 pg:1:1:s c 4; evs 500 0 1 1.00 pg:3:1:s c 5; } >input
	run -78 --separate-stderr client-project <input
	[[ $stderr == *"stdin:2: position from source \"pg:3:1:s\""* ]]
}

@test "snapshot rows and queue events count once by outbox id; one too old to tell is refused, never doubled" {
	{ evs 100 0 1 1.00 pg:1:1:s c 10; evs 200 0 1 2.00 pg:1:1:s c 11; } >input
	run -0 --separate-stderr client-project <input
	# A snapshot (op r) re-sends row 11 and a row that was never applied.
	{ evs 300 0 1 2.00 pg:1:1:s r 11; evs 300 1 1 4.00 pg:1:1:s r 12; } >input
	run -0 --separate-stderr client-project -v <input
	[ "$stderr" = "client-project: 1 applied, 0 replayed, 1 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 total)" = 700 ]
	# The stream after the snapshot brings row 12 again with a position: a duplicate.
	evs 400 0 1 4.00 pg:1:1:s c 12 >input
	run -0 --separate-stderr client-project -v <input
	[ "$stderr" = "client-project: 0 applied, 0 replayed, 1 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:1 pos)" = 000000000000000004000000000000 ]
	# A queue reorders and redelivers: every event twice, shuffled, counts once.
	for i in $(seq 20 39); do evs "$i" 0 2 1.00 sqs:q c "$i"; evs "$i" 0 2 1.00 sqs:q c "$i"; done | shuf >input
	awk '{ sub(/"__lsn":[0-9]+/, "\"__lsn\":" NR); print }' input >numbered
	run -0 --separate-stderr client-project -v <numbered
	[ "$stderr" = "client-project: 20 applied, 0 replayed, 20 duplicates, 0 skipped, 0 rejected" ]
	[ "$(field client:2 total)" = 2000 ]
	# With a window of 2 ids (up to 4 kept), an id that fell out of it cannot be told apart.
	rcli flushall >/dev/null
	for i in 1 2 3 4 5; do evs "$i" 0 3 1.00 sqs:q c "$i"; done >input
	run -0 --separate-stderr client-project -W 2 <input
	[ "$(rcli get '{client:3}:ids')" = ' 4 5 ' ]	# cut back to 2 past 4
	[ "$(field client:3 low)" = 3 ]
	{ evs 6 0 3 1.00 sqs:q c 2; evs 7 0 3 1.00 sqs:q c 6; } >input
	run -0 --separate-stderr client-project -W 2 -v --reject-file rej <input
	[[ ${stderr_lines[0]} == *"stdin:1: id 2: cannot tell whether it was applied"* ]]
	[ "$(field client:3 total)" = 600 ]
	[ "$(jq -r .input rej)" = stdin:1 ]
}

@test "many rejections, at the ends of batches too: each reason goes with its own line, and every event is accounted for" {
	for i in $(seq 1 300); do evs "$i" 0 "$((i % 3 + 1))" 1.00 sqs:q c "$i"; done >in1
	run -0 --separate-stderr client-project -W 2 <in1
	# Shuffled, every one again: most are too old for a window of 4.
	awk 'BEGIN { srand(7) } { print rand() "\t" $0 }' in1 | sort -n | cut -f2- |
		awk '{ sub(/"__lsn":[0-9]+/, "\"__lsn\":" (1000 + NR)); print }' >in2
	run -0 --separate-stderr client-project -W 2 -b 7 --reject-file rej -v <in2
	[[ ${stderr_lines[-1]} =~ ^client-project:\ 0\ applied,\ 0\ replayed,\ ([0-9]+)\ duplicates,\ 0\ skipped,\ ([0-9]+)\ rejected$ ]]
	[ "$((BASH_REMATCH[1] + BASH_REMATCH[2]))" = 300 ]
	[ "$(wc -l <rej)" = "${BASH_REMATCH[2]}" ]
	run -0 bash -c "jq -r '[(.reason | capture(\"^id (?<r>[0-9]+)\").r), (.line | fromjson | .id | tostring)] | join(\" \")' rej | awk '\$1 != \$2'"
	[ -z "$output" ]
	# Nothing was counted twice.
	[ $(( $(field client:1 total) + $(field client:2 total) + $(field client:3 total) )) = 30000 ]
}
