#!/usr/bin/env bats
# event-consume: SQS messages of every shape to event lines, deleted once acknowledged; exactly once with client-project, end to end with kill -9.

bats_require_minimum_version 1.5.0
load test_helper
load lib/aws

USAGE='usage: event-consume [-hvV] [--once] [-a ack-file] [-c receivers] [-F file] [-g group]
                     [--lag-file file] [-t seconds] [-w seconds]
                     [--reject-file file] [--stats seconds] [-X key=value] src'

setup_file() {
	stack_setup_file
	aws_setup_file
}

teardown_file() {
	aws_teardown_file
	stack_teardown_file
}

setup() {
	aws_env
	reset_state
	cd "$BATS_TEST_TMPDIR"
	QN=q$BATS_TEST_NUMBER
	Q=$(make_queue "$QN")
	SRC=sqs:$Q
	PIDS=
}

teardown() {
	local p
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null || true
	done
	aws_no_rejections
}

# row ID CLIENT TOTAL DATE: the outbox row as Debezium's ExtractNewRecordState writes it.
row() {
	printf '{"id":%s,"id_client":%s,"name":"Client%s","email":"c%s@anemailprovider.com","order_total":%s,"event_date":%s}' \
		"$1" "$2" "$2" "$2" "$3" "$4"
}

# sample ID CLIENT TOTAL DATE: the message the AWS sample's queue holds: the SNS
# envelope around the pipe's {"key":{"schema":..,"payload":{"id":N}},"value":row}.
sample() {
	jq -nc --arg m "{\"key\":{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"id\"}],\"optional\":false,\"name\":\"orders.public.order_event.Key\"},\"payload\":{\"id\":$1}},\"value\":$(row "$@")}" \
		'{Type: "Notification", MessageId: "m", TopicArn: "arn:aws:sns:us-east-1:123456789012:cqrs", Message: $m, Timestamp: "2024-02-09T13:20:20.000Z", SignatureVersion: "1"}'
}

@test "-h prints the usage on stdout; a bad option or no operand prints it on stderr, 64; -V" {
	run -0 --separate-stderr event-consume -h
	[[ $output == "$USAGE"* ]]
	run -64 --separate-stderr event-consume --bogus "$Q"
	[ "$(tail -n 3 <<<"$stderr")" = "$USAGE" ]
	run -64 --separate-stderr event-consume
	[ "$stderr" = "$USAGE" ]
	run -64 --separate-stderr event-consume -t 43201 "$Q"
	run -64 --separate-stderr event-consume arn:aws:sns:eu-west-1:1:topic
	run -0 event-consume -V
	[[ $output == "event-consume (cqrs-pipes) "* ]]
}

@test "every shape of message becomes the same flat event line; the queue is empty after --once" {
	send "$Q" "$(row 1 1 3000.00 1707484820)"
	send "$Q" "$(sample 2 2 12.50 1707484821)"
	send "$Q" "{\"key\":{\"id\":3},\"value\":$(row 3 3 0.10 1707484822)}"
	send "$Q" "{\"schema\":{\"type\":\"struct\"},\"payload\":$(row 4 1 1 1707484823)}"
	send "$Q" "$(row 5 2 5 1707484824 | sed 's/}$/,"__table":"public.order_event","__op":"c","__lsn":900,"__seq":3,"__src":"pg:7301:1:s","__xid":77,"__ts_ms":1707484824000}/')"
	send "$Q" "$(jq -nc --arg m "$(row 6 3 6 1707484825)" '{Type: "Notification", Message: $m, MessageAttributes: {table: {Type: "String", Value: "public.order_event"}}}')"
	run -0 --separate-stderr event-consume --once -v "$Q"
	[[ $stderr == "event-consume: 6 received, 6 lines, 0 skipped, 0 rejected, 0 left; 6 deleted"* ]]
	[ "${#lines[@]}" = 6 ]
	# Sorted by id: the columns as written, then our own fields.
	[ "$(jq -r .__src <<<"${lines[0]}")" = "$SRC" ]
	[ "$(printf '%s\n' "${lines[@]}" | jq -r '[.id, .id_client, .order_total, .__table, .__op, .__seq] | @tsv' | sort -n | paste -sd ' ')" = \
	  "$(printf '1\t1\t3000\tpublic.order_event\tc\t0 2\t2\t12.5\tpublic.order_event\tc\t0 3\t3\t0.1\tpublic.order_event\tc\t0 4\t1\t1\tpublic.order_event\tc\t0 5\t2\t5\tpublic.order_event\tc\t0 6\t3\t6\tpublic.order_event\tc\t0')" ]
	# Numbers keep the digits they were written with.
	[[ "$(printf '%s\n' "${lines[@]}" | grep '"id":1,')" == '{"id":1,"id_client":1,"name":"Client1","email":"c1@anemailprovider.com","order_total":3000.00,"event_date":1707484820,"__table":"public.order_event","__op":"c","__src":"'"$SRC"'","__lsn":'* ]]
	# Our own event line keeps its origin; __xid and __ts_ms pass through.
	[ "$(printf '%s\n' "${lines[@]}" | jq -c 'select(.id == 5) | [.__xid, .__ts_ms, .__origin_src, .__origin_lsn, .__origin_seq]')" = '[77,1707484824000,"pg:7301:1:s",900,3]' ]
	# __lsn rises by one along the output.
	[ "$(printf '%s\n' "${lines[@]}" | jq -s '[.[].__lsn] | (. == (sort) and .[-1] - .[0] == 5)')" = true ]
	[ "$(messages "$QN")" = 0 ]
}

@test "tombstones and deletes are skipped and deleted" {
	send "$Q" 'null'
	send "$Q" '{"key":{"id":1},"value":null}'
	send "$Q" "$(row 2 1 1 1707484820 | sed 's/}$/,"__op":"d"}/')"
	send "$Q" "$(row 3 1 1 1707484820 | sed 's/}$/,"__deleted":"true"}/')"
	send "$Q" '{"schema":{},"payload":null}'
	run -0 --separate-stderr event-consume --once -v "$Q"
	[ -z "$output" ]
	[[ $stderr == *"5 received, 0 lines, 5 skipped"* ]]
	[ "$(messages "$QN")" = 0 ]
}

@test "a message that cannot be read stays in the queue, named on stderr, exit 65; with --reject-file it is kept there and deleted" {
	send "$Q" "$(row 1 1 1 1707484820)"
	send "$Q" 'not json'
	send "$Q" '{"name":"no id"}'
	run -65 --separate-stderr event-consume --once -t 1 "$Q"
	[ "${#lines[@]}" = 1 ]
	[[ $stderr == *"message "*": not JSON: "*"(left in the queue for its redrive policy)"* ]]
	[[ $stderr == *"message "*": id: missing: an outbox row needs its id"* ]]
	wait_until '[ "$(messages "$QN")" = 2 ]'
	run -0 --separate-stderr event-consume --once --reject-file rej "$Q"
	[ -z "$output" ]
	[ "$(jq -r .message rej | LC_ALL=C sort | paste -sd '|')" = 'not json|{"name":"no id"}' ]
	[ "$(jq -r .source rej | sort -u)" = "$SRC" ]
	[ "$(messages "$QN")" = 0 ]
}

@test "a message is deleted only once every ack file covers its line; the counter goes on above them in the next run" {
	for i in 1 2 3; do send "$Q" "$(row "$i" 1 1 1707484820)"; done
	event-consume -t 1 -a a1 -a a2 "$Q" >out 2>err &
	PIDS=$!
	wait_until '[ "$(wc -l <out)" = 3 ]'
	lsn2=$(sed -n 2p out | jq .__lsn)
	lsn3=$(sed -n 3p out | jq .__lsn)
	echo "$lsn3 0 $SRC" >a1
	sleep 0.5
	[ "$(messages "$QN")" = 3 ]
	echo "$lsn2 0 $SRC" >a2
	wait_until '[ "$(messages "$QN")" = 1 ]'
	echo "$lsn3 0 $SRC" >a2
	wait_until '[ "$(messages "$QN")" = 0 ]'
	kill -TERM "$PIDS"
	wait "$PIDS"
	send "$Q" "$(row 4 1 1 1707484820)"
	# A long poll of the stopped run may still take it: it comes back after 1 s.
	sleep 2
	echo "$((lsn3 + 5000000000)) 0 $SRC" >a1
	run -75 --separate-stderr event-consume --once -w 1 -a a1 "$Q"
	[ "$(jq .__lsn <<<"$output")" = $((lsn3 + 5000000001)) ] || { echo "$output"; echo "$stderr"; false; }
}

@test "SIGUSR1 and --stats: a JSON line of what was received and deleted; it goes on" {
	for i in 1 2 3; do send "$Q" "$(row "$i" 1 1 1707484820)"; done
	event-consume -t 1 -a a1 --stats 0.2 "$Q" >out 2>err &
	PIDS=$!
	wait_until '[ "$(wc -l <out)" = 3 ]'
	echo "$(sed -n 3p out | jq .__lsn) 0 $SRC" >a1
	wait_until '[ "$(messages "$QN")" = 0 ]'
	wait_until 'grep "^{\"time\":" err | tail -n 1 | jq -e ".deleted == 3" >/dev/null'
	kill -USR1 "$PIDS"
	line=$(grep '^{"time":' err | tail -n 1)
	[ "$(jq -r .prog <<<"$line")" = event-consume ]
	[ "$(jq '[.received, .lines, .skipped, .rejected, .deleted] | map(tostring) | join(" ")' -r <<<"$line")" = "3 3 0 0 3" ]
	kill -0 "$PIDS"
	kill -TERM "$PIDS"
	wait "$PIDS"
	run -64 --separate-stderr event-consume --stats 0 "$Q"
	[[ $stderr == *"--stats 0: want seconds from 0.1 to 86400"* ]]
}

@test "an ack file of another stream is 78; --once with lines never acknowledged is 75 and leaves them in the queue" {
	send "$Q" "$(row 1 1 1 1707484820)"
	echo "100 0 pg:7301:1:cqrs_outbox" >other
	run -78 --separate-stderr event-consume --once -a other "$Q"
	[[ $stderr == *"other: positions of \"pg:7301:1:cqrs_outbox\", not of $SRC"* ]]
	run -75 --separate-stderr event-consume --once -w 1 -a never "$Q"
	[ "${#lines[@]}" = 1 ]
	[[ $stderr == *"1 lines written but not acknowledged within 1 s"* ]]
	[ "$(messages "$QN")" = 1 ]
}

@test "a message waiting for its acknowledgement is kept hidden: no other receiver gets it" {
	send "$Q" "$(row 1 1 1 1707484820)"
	event-consume -t 2 -a never "$Q" >out 2>err &
	PIDS=$!
	wait_until '[ -s out ]'
	wait_until 'grep -q ChangeMessageVisibilityBatch "$AWS_DIR/accepted.log"'
	sleep 3
	run -0 --separate-stderr event-consume --once "$Q"
	[ -z "$output" ]
	[ "$(messages "$QN")" = 1 ]
}

@test "a wrong secret is 77 with AWS's code; a queue that does not exist is 78" {
	export AWS_SECRET_ACCESS_KEY=wrong/Secret+0000000000000000000000000000
	run -77 --separate-stderr event-consume --once "$Q"
	[[ $stderr == *SignatureDoesNotMatch* ]]
	[[ $stderr != *wrong/Secret* ]]
	[[ $(take_rejections) == "SignatureDoesNotMatch sqs ReceiveMessage "* ]]
	aws_env
	run -78 --separate-stderr event-consume --once "http://sqs.eu-west-1.localhost:$AWS_PORT/000000000000/nosuch"
	[[ $stderr == *"does not exist"* ]]
}

# expected_model FILE: per client "id total-cents last_purchase" from rows "id client total date".
expected_model() {
	awk '{ c[$2] += int($3 * 100 + 0.5); if ($4 > d[$2]) d[$2] = $4 }
	     END { for (k in c) print k, c[k], d[k] }' "$1" | sort -n
}

# read_model: per client in Redis "id total last_purchase".
read_model() {
	local k
	for k in $(rcli --scan --pattern 'client:*' | sort -t: -k2 -n); do
		echo "${k#client:} $(rcli hget "$k" total) $(rcli hget "$k" last_purchase)"
	done
}

@test "the sample's own messages, shuffled and each delivered twice, count once" {
	awk 'BEGIN { srand(13); for (i = 1; i <= 60; i++)
		printf "%d %d %.2f %d\n", i, 1 + int(rand() * 3), int(rand() * 300000) / 100, 1707484000 + int(rand() * 100000) }' >rows
	while read -r id c t d; do sample "$id" "$c" "$t" "$d"; echo; sample "$id" "$c" "$t" "$d"; echo; done <rows |
		grep . | shuf --random-source=rows >msgs
	while IFS= read -r m; do send "$Q" "$m"; done <msgs
	[ "$(messages "$QN")" = 120 ]
	event-consume --once -a proj.pos "$Q" 2>ec.err | client-project -v -a proj.pos --reject-file rej 2>cp.err
	[ "$(read_model)" = "$(expected_model rows)" ]
	[ ! -e rej ]
	[ "$(messages "$QN")" = 0 ]
	grep -q "60 applied" cp.err
}

@test "a queue that redelivers at once (visibility 0) and duplicates sent on purpose still count once" {
	awk 'BEGIN { srand(7); for (i = 1; i <= 40; i++)
		printf "%d %d %.2f %d\n", i, 1 + int(rand() * 3), int(rand() * 100000) / 100, 1707484000 + int(rand() * 100000) }' >rows
	while read -r id c t d; do send "$Q" "$(row "$id" "$c" "$t" "$d")"; done <rows
	head -n 15 rows | while read -r id c t d; do send "$Q" "$(row "$id" "$c" "$t" "$d")"; done
	mkfifo lines
	event-consume -t 0 -c 4 -a proj.pos "$Q" >lines 2>ec.err &
	PIDS=$!
	client-project -a proj.pos --reject-file rej <lines 2>cp.err &
	PIDS="$PIDS $!"
	# A message received again before its delete holds a new receipt
	# handle, so the queue may never empty: the read model is what counts.
	wait_until '[ "$(read_model)" = "$(expected_model rows)" ]'
	wait_until '[ -s proj.pos ]'
	sleep 1
	[ "$(read_model)" = "$(expected_model rows)" ]
	[ ! -e rej ]
}

# Ground truth from SQL: per client "id total-cents last_purchase".
sql_model() {
	sql "SELECT id_client, (sum(order_total) * 100)::bigint, max(event_date) FROM order_event GROUP BY id_client ORDER BY id_client" |
		tr '|' ' '
}

no_active_slot() {
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ]
}

# start_publisher: outbox-tail | event-fanout | event-publish to the topic, in the background.
start_publisher() {
	wait_until no_active_slot
	rm -f ep.pid
	outbox-tail --ack-file pub.pos 2>>ot.err |
		event-fanout "echo \$\$ >ep.pid; exec event-publish --ack-file pub.pos -b 20 -j 2 $T 2>>ep.err" 2>>ef.err &
	PIDS="$PIDS $!"
	wait_until '[ -s ep.pid ]'
}

# start_consumer: event-consume | client-project, in the background; EC is event-consume's pid.
start_consumer() {
	rm -f lines
	mkfifo lines
	event-consume -t 5 -a proj.pos "$Q" >lines 2>>ec.err &
	EC=$!
	client-project -W 1000 -a proj.pos --reject-file rej <lines 2>>cp.err &
	PIDS="$PIDS $EC $!"
}

@test "client-project's window bounds how late a duplicate may come: within it absorbed, past it refused, never doubled" {
	# Client 1: ids 1..9 applied with a window of 4 (it keeps 4 to 8 ids:
	# past 8 it is cut back to the last 4, 6..9); then 9 again (in the
	# window: absorbed), 1 again (left it: refused); 2 for the first time
	# would be refused too, so only duplicates are sent late here.
	for i in 1 2 3 4 5 6 7 8 9; do send "$Q" "$(row "$i" 1 10 $((1707484820 + i)))"; done
	event-consume --once -a p.pos "$Q" 2>/dev/null | client-project -W 4 -a p.pos 2>cp.err
	[ "$(read_model)" = "1 9000 1707484829" ]
	send "$Q" "$(row 9 1 10 1707484829)"
	event-consume --once -a p.pos "$Q" 2>/dev/null | client-project -W 4 -a p.pos --reject-file rej 2>cp.err
	[ ! -e rej ]
	send "$Q" "$(row 1 1 10 1707484821)"
	event-consume --once -a p.pos "$Q" 2>/dev/null | client-project -W 4 -a p.pos --reject-file rej 2>cp.err
	[ "$(jq -r .line rej | jq .id)" = 1 ]
	[[ $(jq -r .reason rej) == "id 1: cannot tell whether it was applied"* ]]
	[ "$(read_model)" = "1 9000 1707484829" ]
	[ "$(messages "$QN")" = 0 ]
}

@test "end to end: outbox-tail, event-fanout, event-publish to SNS, SQS, event-consume, client-project equals SQL, with kill -9 on the way" {
	T=$(make_topic "t$BATS_TEST_NUMBER")
	subscribe "$T" "$QN"
	awk 'BEGIN { srand(3); for (i = 0; i < 600; i++)
		printf "{\"id_client\":%d,\"products\":[{\"id_product\":%d,\"quantity\":%d}]}\n", 1 + int(rand() * 3), 1 + int(rand() * 3), 1 + int(rand() * 4) }' >orders
	start_publisher
	start_consumer
	head -n 200 orders | order-place >/dev/null
	wait_until '[ -s pub.pos ]'
	kill -9 "$(cat ep.pid)"
	sed -n 201,400p orders | order-place >/dev/null
	kill -9 "$EC"
	start_publisher
	start_consumer
	sed -n 401,600p orders | order-place >/dev/null
	wait_until '[ "$(read_model)" = "$(sql_model)" ]'
	wait_until '[ "$(messages "$QN")" = 0 ]'
	[ ! -e rej ] || { cat rej cp.err; false; }
	[ "$(sql 'SELECT count(*) FROM order_event')" = 600 ]
}
