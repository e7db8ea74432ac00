#!/usr/bin/env bats
# client-project: events to the Redis read model, exactly once, in cents; bad lines, acks, Redis faults.

bats_require_minimum_version 1.5.0
load test_helper

USAGE='usage: client-project [-hkvV] [-a ack-file] [-b batch] [-L latency-file]
                      [-P password-file] [-r url]'
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

# snapshot: every key of the read model with its fields, sorted, and its DUMP.
snapshot() {
	local k
	rcli --scan | sort | while read -r k; do
		echo "$k"
		rcli hgetall "$k" | paste - - | sort
		rcli --raw dump "$k" | od -An -tx1
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
	# one key, client:1, as the first event left it
	[ "$(rcli eval "return {redis.call('dbsize'),
	    redis.call('hget', 'client:1', 'total'),
	    redis.call('hget', 'client:1', 'pos')}" 0 | paste -sd ' ')" = "1 300000 $POS100" ]
	[ "$(cat ack)" = "100 0" ]
}

@test "one event: client-get shows it, the hash holds cents and the position" {
	ev 100 0 | sed 's/"name":"Client1"/"name":"Bob"/; s/c1@/bob@/' >input
	run -0 --separate-stderr client-project <input
	[ -z "$output" ]
	[ -z "$stderr" ]
	run -0 --separate-stderr client-get 1
	[ "$output" = '{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820}' ]
	[ "$(field client:1 total)" = 300000 ]
	[ "$(field client:1 pos)" = 00000000000000000100$(printf %010d 0) ]
	[ "$(field client:1 last_purchase)" = 1707484820 ]
	[ "$(rcli hlen client:1)" = 5 ]
	[ "$(rcli --scan)" = client:1 ]
}

@test "the position is 20 digits of __lsn and 10 of __seq" {
	ev 9223372036854775807 4294967295 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 pos)" = 092233720368547758074294967295 ]
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
	snapshot >want
	for b in 1 7; do
		rcli flushall >/dev/null
		run -0 --separate-stderr client-project -b "$b" --ack-file ack <input
		snapshot >got
		cmp want got
		[ "$(cat ack)" = "10000 1" ]
	done
}

@test "negative totals subtract, integer totals count whole units" {
	{ ev 100 0 1 3000; ev 200 0 1 -0.5; } >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 299950 ]
}

@test "last_purchase never goes backwards; name and email follow the last event" {
	{ ev 100 0 1 1.00 2000; ev 200 0 1 1.00 1000 | sed 's/Client1/Robert/'; } >input
	run -0 --separate-stderr client-project -v <input
	[ "$stderr" = "client-project: 2 applied, 0 replayed, 0 skipped" ]
	[ "$(field client:1 last_purchase)" = 2000 ]
	[ "$(field client:1 total)" = 200 ]
	[ "$(field client:1 name)" = Robert ]
	[ "$(field client:1 pos)" = 000000000000000002000000000000 ]
}

@test "the same stream fed twice changes nothing the second time" {
	for i in $(seq 20); do ev "$((100 * i))" 0 "$((i % 3 + 1))" "1$i.25" "$((1707484820 - i))"; done >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 20 applied, 0 replayed, 0 skipped" ]
	snapshot >first
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 0 applied, 20 replayed, 0 skipped" ]
	snapshot >second
	cmp first second
	[ "$(cat ack)" = "2000 0" ]
}

@test "a stream whose first half comes again in the middle counts each position once" {
	for i in $(seq 10); do ev "$((100 * i))" 0 "$((i % 3 + 1))" "$i.01"; done >all
	{ head -n 5 all; head -n 5 all; tail -n 5 all; } >replayed
	run -0 --separate-stderr client-project -v --ack-file ack <replayed
	[ "$stderr" = "client-project: 10 applied, 5 replayed, 0 skipped" ]
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
	[ "$stderr" = "client-project: 2 applied, 1 replayed, 0 skipped" ]
	[ "$(field client:1 total)" = 100 ]
	[ "$(field client:2 total)" = 700 ]
	[ "$(cat ack)" = "200 0" ]
}

@test "events of other tables are skipped and acknowledged" {
	{ ev 100 0 1 1.00 1 public.order_item; ev 100 1 1 1.00 1 public.client; } >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 0 applied, 0 replayed, 2 skipped" ]
	[ -z "$output" ]
	[ "$(rcli dbsize)" = 0 ]
	[ "$(cat ack)" = "100 1" ]
	# a line without __table is not an order_event row either
	echo '{"__lsn":200,"__seq":0,"id_client":"not checked"}' >input
	run -0 --separate-stderr client-project -v --ack-file ack <input
	[ "$stderr" = "client-project: 0 applied, 0 replayed, 1 skipped" ]
	[ "$(cat ack)" = "200 0" ]
}

@test "the ack file is one line \"LSN SEQ\" of the last event, written atomically" {
	{ ev 100 0; ev 100 1 2; ev 250 3 3; } >input
	run -0 --separate-stderr client-project --ack-file ack <input
	printf '250 3\n' | cmp - ack
	[ -z "$(ls -A | grep '^ack\.')" ]	# no temporary file left
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
		'.__lsn = "200"'		'__lsn: must be an integer from 0 to 9223372036854775807'
		'.__lsn = 200.5'		'__lsn: must be an integer from 0 to 9223372036854775807'
		'del(.id_client)'		'id_client: missing'
		'.id_client = 0'		'id_client: must be *'
		'.id_client = "1"'		'id_client: must be *'
		'.id_client = -1'		'id_client: must be *'
		'.id_client = 2147483648'	'id_client: must be *'
		'del(.order_total)'		'order_total: missing'
		'.order_total = "3000"'		'order_total: must be a number'
		'.order_total = 0.001'		'order_total: more than two decimals'
		'.order_total = 12.345'		'order_total: more than two decimals'
		'.order_total = 1e14'		'order_total: out of range'
		'.order_total = -1e14'		'order_total: out of range'
		'.order_total = 1e13 + 0.5'	'order_total: out of range'
		'del(.name)'			'name: missing'
		'.name = 1'			'name: must be a string'
		'.email = null'			'email: must be a string'
		'del(.event_date)'		'event_date: missing'
		'.event_date = 1.5'		'event_date: must be an integer'
		'.event_date = "1707484820"'	'event_date: must be an integer'
	)
	# not i: bats's own functions, which run calls, set i
	for ((case_no = 0; case_no < ${#cases[@]}; case_no += 2)); do
		echo "case: ${cases[case_no]}"
		rcli flushall >/dev/null
		rm -f ack
		rejects "$(ev 200 0 | jq -c "${cases[case_no]}")" "${cases[case_no + 1]}"
	done
	rcli flushall >/dev/null
	rejects "$(ev 200 0 0)" "id_client: must be *"
	[ "$(rcli exists client:0)" = 0 ]
}

@test "a bad line: 65 naming stdin:2, nothing changed by that line or after it" {
	local cases=(
		'{"__table":"public.client","__lsn":200}'	'__seq: missing'
		'{"__lsn":200,'					'*expected near end of file (column 13)'
		''						'blank line'
		' 	'					'blank line'
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

@test "order_total of 10^13 is out of range" {
	rejects "$(ev 200 0 1 10000000000000)" "order_total: out of range"
	rcli flushall >/dev/null
	rejects "$(ev 200 0 1 -10000000000000)" "order_total: out of range"
}

@test "order_total of 10^13 written with decimals is out of range" {
	rejects "$(ev 200 0 1 10000000000000.00)" "order_total: out of range"
}

@test "order_total just below 10^13 is exact" {
	ev 100 0 1 9999999999999.99 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 999999999999999 ]
	ev 200 0 1 -9999999999999.99 >input
	run -0 --separate-stderr client-project <input
	[ "$(field client:1 total)" = 0 ]
}

@test "-k reports a bad line, applies the rest, and exits 65" {
	{ ev 100 0; ev 200 0 0; ev 300 0 2 5.00; ev 400 0 | jq -c 'del(.email)'; } >input
	run -65 --separate-stderr client-project -k -v --ack-file ack <input
	[ "${#stderr_lines[@]}" = 3 ]
	[[ ${stderr_lines[0]} == "client-project: stdin:2: id_client: must be "* ]]
	[ "${stderr_lines[1]}" = "client-project: stdin:4: email: missing" ]
	[ "${stderr_lines[2]}" = "client-project: 2 applied, 0 replayed, 0 skipped" ]
	[ "$(field client:1 total)" = 300000 ]
	[ "$(field client:2 total)" = 500 ]
	[ "$(cat ack)" = "300 0" ]
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
	[ "$(cat err)" = "client-project: 3 applied, 0 replayed, 0 skipped" ]
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
	[[ $stderr == "client-project: redis: client:1: OOM "* ]]
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
	[[ $stderr == "client-project: redis: client:1: WRONGTYPE "* ]]
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
}

@test "a database number the server refuses: 78" {
	REDIS_URL="unix://$CQRS_STACK_DIR/redis/redis.sock?db=99" \
	    run -78 --separate-stderr client-project </dev/null
	[[ $stderr == "client-project: redis: SELECT 99: "* ]]
}

@test "usage: -h, unknown options, operands and bad batch sizes are 64" {
	run -64 --separate-stderr client-project -h
	[ "$stderr" = "$USAGE" ]
	[ -z "$output" ]
	run -64 --separate-stderr client-project --help
	[ "$stderr" = "$USAGE" ]
	run -64 --separate-stderr client-project -x
	[ "${stderr_lines[0]}" = "client-project: invalid option -- 'x'" ]
	[ "$(printf '%s\n' "${stderr_lines[@]:1}")" = "$USAGE" ]
	run -64 --separate-stderr client-project operand
	[ "$stderr" = "$USAGE" ]
	for b in 0 65537 -1 x 1x ''; do
		run -64 --separate-stderr client-project -b "$b"
		[ "$stderr" = "client-project: -b: want 1 to 65536" ]
	done
	run -0 --separate-stderr client-project -b 65536 </dev/null
}

@test "-L appends the commit-to-applied time of each event, in milliseconds" {
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
	[ "$first" -ge 2000 ]
	[ "$first" -lt 60000 ]
	[ "$second" -ge 1000 ]
	[ "$second" -lt "$first" ]
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
	[[ $stderr == "client-project: /nonexistent/dir/f"* ]]
	[ "$(field client:1 total)" = 300000 ]
}

@test "reading stdin fails: 74" {
	run -74 --separate-stderr client-project </
	[[ $stderr == "client-project: stdin: "* ]]
}

@test "-v prints the counts on stderr, nothing on stdout" {
	{ ev 100 0; ev 100 0; ev 200 0 1 1.00 1 public.client; ev 300 0 2; } >input
	run -0 --separate-stderr client-project -v <input
	[ -z "$output" ]
	[ "$stderr" = "client-project: 2 applied, 1 replayed, 1 skipped" ]
	run -0 --separate-stderr client-project --verbose <input
	[ "$stderr" = "client-project: 0 applied, 3 replayed, 1 skipped" ]
	run -0 --separate-stderr client-project <input
	[ -z "$stderr" ]
}
