#!/usr/bin/env bats
# event-publish: event lines to SNS and SQS (fauxqs behind a SigV4 verifier): batches, formats, FIFO, acks, refusals, retries, exit codes.

bats_require_minimum_version 1.5.0
load test_helper
load lib/aws

USAGE='usage: event-publish [-hkvV] [-a ack-file] [-b batch] [-F file] [-f format]
                     [-j requests] [--reject-file file] [--stats seconds]
                     [-X key=value] dest'

setup_file() {
	aws_setup_file
}

teardown_file() {
	aws_teardown_file
}

setup() {
	aws_env
	cd "$BATS_TEST_TMPDIR"
	Q=$(make_queue "q$BATS_TEST_NUMBER")
	QN=q$BATS_TEST_NUMBER
}

teardown() {
	aws_no_rejections
}

# ev ID LSN [ID_CLIENT [ORDER_TOTAL]]: an event line as outbox-tail writes it.
ev() {
	printf '{"id":%s,"id_client":%s,"name":"Bob","email":"bob@anemailprovider.com","order_total":%s,"event_date":1707484820,"__table":"public.order_event","__op":"c","__lsn":%s,"__seq":0,"__src":"pg:7301:1:cqrs_outbox","__xid":7,"__ts_ms":1707484820123}\n' \
		"$1" "${3:-1}" "${4:-3000.00}" "$2"
}

# events N: N event lines, ids 1..N, positions 100, 200, ...
events() {
	local i
	for i in $(seq "$1"); do ev "$i" $((i * 100)) $((i % 3 + 1)); done
}

@test "-h prints the usage on stdout; a bad option or no operand prints it on stderr, 64; -V" {
	run -0 --separate-stderr event-publish -h
	[[ $output == "$USAGE"* ]]
	[[ $output == *"--reject-file FILE"* ]]
	run -64 --separate-stderr event-publish --bogus "$Q"
	[ "$(tail -n 3 <<<"$stderr")" = "$USAGE" ]
	run -64 --separate-stderr event-publish
	[ "$stderr" = "$USAGE" ]
	run -64 --separate-stderr event-publish -j 0 "$Q"
	run -64 --separate-stderr event-publish -f xml "$Q"
	run -0 event-publish -V
	[[ $output == "event-publish (cqrs-pipes) "* ]]
}

@test "a destination that is neither a topic ARN nor a queue URL is 64, before any input is read" {
	run -64 --separate-stderr event-publish arn:aws:s3:::bucket </dev/null
	[[ $stderr == *"arn:aws:s3:::bucket: not an SNS topic ARN"* ]]
	run -64 --separate-stderr event-publish 'https://sqs.eu-west-1.amazonaws.com/1/bad name' </dev/null
	# A malformed kafka:// name (kafka.bats has the rest of Kafka).
	run -64 --separate-stderr event-publish kafka://127.0.0.1/orders </dev/null
}

@test "each event becomes one SQS message, byte for byte, with the table and op attributes; the ack file holds the last position" {
	events 25 >in
	run -0 --separate-stderr event-publish -v -a ack "$Q" <in
	[[ $stderr == "event-publish: 25 published, 0 replayed, 0 rejected; "* ]]
	[ "$(cat ack)" = "2500 0 pg:7301:1:cqrs_outbox" ]
	[ "$(bodies "$QN" | sort)" = "$(sort in)" ]
	attrs=$(curl -sf "http://127.0.0.1:$AWS_PORT/_standin/queue/$QN" |
		jq -cS '[.messages.ready[].messageAttributes] | unique')
	[ "$attrs" = '[{"op":{"DataType":"String","StringValue":"c"},"table":{"DataType":"String","StringValue":"public.order_event"}}]' ]
	# Run again: every event is at or below the ack file, nothing is sent twice.
	run -0 --separate-stderr event-publish -v -a ack "$Q" <in
	[[ $stderr == "event-publish: 0 published, 25 replayed, "* ]]
	[ "$(messages "$QN")" = 25 ]
}

@test "--format=sample writes the pipe's {key, value} with the columns as written and no __ fields" {
	ev 7 700 2 0.10 >in
	run -0 event-publish --format=sample "$Q" <in
	[ "$(bodies "$QN")" = '{"key":{"id":7},"value":{"id":7,"id_client":2,"name":"Bob","email":"bob@anemailprovider.com","order_total":0.10,"event_date":1707484820}}' ]
}

@test "to an SNS topic: the subscribed queue gets SNS envelopes whose Message is the event line" {
	T=$(make_topic "t$BATS_TEST_NUMBER")
	subscribe "$T" "$QN"
	events 12 >in
	run -0 --separate-stderr event-publish -a ack "$T" <in
	[ "$(cat ack)" = "1200 0 pg:7301:1:cqrs_outbox" ]
	[ "$(bodies "$QN" | jq -r .Type | sort -u)" = Notification ]
	[ "$(bodies "$QN" | jq -r .Message | sort)" = "$(sort in)" ]
	[ "$(bodies "$QN" | jq -r '.MessageAttributes.table.Value' | sort -u)" = public.order_event ]
}

@test "a FIFO queue gets the client id as group and the position as deduplication id: a second run sends nothing new" {
	F=$(make_queue "f$BATS_TEST_NUMBER.fifo" '{"FifoQueue":"true"}')
	events 6 >in
	run -0 event-publish "$F" <in
	run -0 event-publish "$F" <in
	[ "$(messages "f$BATS_TEST_NUMBER.fifo")" = 6 ]
	groups=$(curl -sf "http://127.0.0.1:$AWS_PORT/_standin/queue/f$BATS_TEST_NUMBER.fifo" |
		jq -r '.messages.ready[] | "\(.messageGroupId) \(.messageDeduplicationId)"' | sort)
	[ "$(head -n 1 <<<"$groups")" = "1 300.0.$(head -n 1 <<<"$groups" | cut -d. -f3)" ]
	[[ $groups == *"2 100.0."* ]]
}

@test "an event the queue refuses (sender's fault) stops the run with 65, naming its line and AWS's code; the events before it are acknowledged" {
	S=$(make_queue "s$BATS_TEST_NUMBER" '{"MaximumMessageSize":"1024"}')
	{ ev 1 100; ev 2 200 | sed "s/\"Bob\"/\"$(head -c 1100 /dev/zero | tr '\0' x)\"/"; ev 3 300; } >in
	run -65 --separate-stderr event-publish -a ack "$S" <in
	[[ $stderr == "event-publish: stdin:2: SQS refused it: InvalidParameterValue: "* ]]
	[ "$(cat ack)" = "100 0 pg:7301:1:cqrs_outbox" ]
	run -0 --separate-stderr event-publish -a ack --reject-file rej "$S" <in
	[[ $stderr == *"stdin:2: SQS refused it: InvalidParameterValue"*"(rejected)"* ]]
	[ "$(cat ack)" = "300 0 pg:7301:1:cqrs_outbox" ]
	[ "$(jq -r .reason rej)" = "$(jq -r .reason rej | grep '^SQS refused it: InvalidParameterValue')" ]
	[ "$(jq -r .line rej | jq -r .id)" = 2 ]
	# Event 3 went out with 2 in the first run, unacknowledged: at least once.
	[ "$(bodies "s$BATS_TEST_NUMBER" | jq -r .id | sort -u | paste -sd ' ')" = "1 3" ]
}

@test "an event longer than SNS takes is refused before sending" {
	T=$(make_topic "t$BATS_TEST_NUMBER")
	{ ev 1 100; ev 2 200 | X=300000 perl -pe 's/"Bob"/"${\("x" x $ENV{X})}"/'; } >in
	run -65 --separate-stderr event-publish -a ack "$T" <in
	[[ $stderr == "event-publish: stdin:2: SNS refused it: too long: "*"more than 262144" ]]
	[ "$(cat ack)" = "100 0 pg:7301:1:cqrs_outbox" ]
}

@test "5xx answers and entries failed by no fault of the sender are sent again; each event arrives once" {
	fault '{"action":"SendMessageBatch","status":503,"count":2}'
	fault '{"action":"SendMessageBatch","entry":"InternalError","count":3}'
	events 30 >in
	run -0 --separate-stderr event-publish -a ack "$Q" <in
	[ "$(cat ack)" = "3000 0 pg:7301:1:cqrs_outbox" ]
	[ "$(bodies "$QN" | sort)" = "$(sort in)" ]
}

@test "throttling that does not stop is 75 after the bounded retries, nothing acknowledged" {
	fault '{"action":"PublishBatch","status":400,"code":"Throttling","count":100}'
	T=$(make_topic "t$BATS_TEST_NUMBER")
	events 3 >in
	run -75 --separate-stderr event-publish -a ack "$T" <in
	[[ $stderr == *"SNS: $T: Throttling, 10 tries"* ]]
	[ ! -e ack ]
	fault '{"action":"PublishBatch","status":400,"code":"Throttling","count":0}'
}

@test "a wrong secret is 77 with AWS's code, and the secret is never printed" {
	export AWS_SECRET_ACCESS_KEY=wrong/Secret+0000000000000000000000000000
	events 2 >in
	run -77 --separate-stderr event-publish -a ack "$Q" <in
	[[ $stderr == *"SignatureDoesNotMatch"* ]]
	[[ $stderr != *wrong/Secret* ]]
	[ ! -e ack ]
	[[ $(take_rejections) == "SignatureDoesNotMatch sqs SendMessageBatch "* ]]
	export AWS_ACCESS_KEY_ID=AKIDUNKNOWN000000000
	T=$(make_topic "t$BATS_TEST_NUMBER")
	run -77 --separate-stderr event-publish "$T" <in
	[[ $stderr == *"InvalidClientTokenId"* ]]
	[[ $(take_rejections) == "InvalidClientTokenId sns PublishBatch "* ]]
}

@test "a topic or queue that does not exist is 78" {
	events 1 >in
	run -78 --separate-stderr event-publish arn:aws:sns:eu-west-1:000000000000:nosuch <in
	[[ $stderr == *"NotFound"* ]]
	run -78 --separate-stderr event-publish "http://sqs.eu-west-1.localhost:$AWS_PORT/000000000000/nosuch" <in
	[[ $stderr == *"does not exist"* ]]
	[[ $stderr == *QueueDoesNotExist* || $stderr == *NonExistentQueue* ]]
}

@test "an endpoint that does not answer is 69 after the bounded retries" {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	export AWS_ENDPOINT_URL=http://127.0.0.1:$port
	events 1 >in
	run -69 --separate-stderr event-publish -a ack "$Q" <in
	[[ $stderr == *"10 tries"* ]]
	[ ! -e ack ]
}

@test "a bad input line is 65 naming it; the events before it are published and acknowledged" {
	{ ev 1 100; echo '{"id":2}'; ev 3 300; } >in
	run -65 --separate-stderr event-publish -a ack "$Q" <in
	[ "$stderr" = "event-publish: stdin:2: __lsn: missing" ]
	[ "$(cat ack)" = "100 0 pg:7301:1:cqrs_outbox" ]
	[ "$(messages "$QN")" = 1 ]
}

@test "a second publisher on the same ack file is 75" {
	idle_input
	event-publish -a ack "$Q" <in 4>&- &
	pid=$!
	wait_until ack_held_by_other
	run -75 --separate-stderr event-publish -a ack "$Q" </dev/null
	[[ $stderr == *"in use by another consumer"* ]]
	exec 4>&-
	wait "$pid"
}

ack_held_by_other() {
	[ -e ack.lock ] && ! flock -n ack.lock true
}

@test "killed with -9 while publishing, a new run publishes what was not acknowledged: every event arrives at least once" {
	events 3000 >in
	event-publish -a ack -b 50 -j 2 "$Q" <in &
	pid=$!
	wait_for_file ack
	kill -9 "$pid"
	wait "$pid" || true
	run -0 --separate-stderr event-publish -a ack "$Q" <in
	[ "$(cat ack)" = "300000 0 pg:7301:1:cqrs_outbox" ]
	[ "$(bodies "$QN" | sort -u)" = "$(sort -u in)" ]
}

@test "SIGUSR1 and --stats: a JSON line of what was published, while it waits for input; it goes on" {
	idle_input
	event-publish -a ack --stats 0.2 "$Q" <in 2>err 3>&- 4>&- &
	pid=$!
	for _ in $(seq 200); do sig_caught "$pid" 10 && break; sleep 0.05; done
	events 2 >&4
	wait_for_file ack
	kill -USR1 "$pid"
	for _ in $(seq 200); do [ "$(grep -c '^{"time":' err)" -ge 3 ] && break; sleep 0.05; done
	line=$(grep '^{"time":' err | tail -n 1)
	[ "$(jq -r .prog <<<"$line")" = event-publish ]
	[ "$(jq .published <<<"$line")" = 2 ]
	[ "$(jq .rejected <<<"$line")" = 0 ]
	[ "$(jq '.requests >= 1' <<<"$line")" = true ]
	ev 3 300 >&4
	exec 4>&-
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" = 0 ]
	[ "$(messages "$QN")" = 3 ]
	run -64 --separate-stderr event-publish --stats 0 "$Q"
	[[ $stderr == *"--stats 0: want seconds from 0.1 to 86400"* ]]
}
