#!/usr/bin/env bats
# kafka: event-publish and event-consume over kafka:// against librdkafka's mock cluster, kcat as the independent client; exactly once into client-project through rebalances, kill -9 and brokers that go away.

bats_require_minimum_version 1.5.0
load test_helper
load lib/kafka

setup_file() {
	stack_setup_file
}

teardown_file() {
	stack_teardown_file
}

setup() {
	reset_state
	cd "$BATS_TEST_TMPDIR"
	T=t$BATS_TEST_NUMBER
	PIDS=
	KM=
}

teardown() {
	local p
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null || true
	done
	kafka_stop
}

# row ID CLIENT TOTAL DATE: the outbox row as Debezium's ExtractNewRecordState writes it.
row() {
	printf '{"id":%s,"id_client":%s,"name":"Client%s","email":"c%s@anemailprovider.com","order_total":%s,"event_date":%s}' \
		"$1" "$2" "$2" "$2" "$3" "$4"
}

# line ID CLIENT LSN: an event line as outbox-tail writes it.
line() {
	printf '{"id":%s,"id_client":%s,"name":"Client%s","email":"c%s@anemailprovider.com","order_total":10.50,"event_date":1707484820,"__table":"public.order_event","__op":"c","__src":"pg:7301:1:cqrs_outbox","__lsn":%s,"__seq":0}\n' \
		"$1" "$2" "$2" "$2" "$3"
}

SCHEMA_KEY='{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"orders.public.order_event.Key"},"payload":{"id":%s}}'

# expected_model ROWS: per client "id cents last_purchase" from "id client total date" lines.
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

# ec ARGS...: event-consume with a short session, so that the mock's group
# coordinator, which waits for a departed member's session to end before it
# lets the next one join, waits 6 s rather than 45.
# (KX: the same options for a consumer in the background, whose pid counts.)
KX=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=500)
ec() {
	event-consume "${KX[@]}" "$@"
}

# committed PARTITION: the offset committed for it, as the lag file says.
committed() {
	jq -r --argjson p "$1" '.partitions[] | select(.partition == $p) | .committed' lag.json 2>/dev/null
}

@test "-h names the Kafka options; usage errors are 64; bad properties 78, a missing -F file 66" {
	kafka_start "$T"
	run -0 --separate-stderr event-publish -h
	[[ $output == *"-X KEY=VALUE"*"kafka://HOST:PORT"* ]]
	run -0 --separate-stderr event-consume -h
	[[ $output == *"-g, --group GROUP"*"--lag-file FILE"* ]]
	run -64 --separate-stderr event-publish -X acks=all https://sqs.us-east-1.amazonaws.com/1/q
	[[ $stderr == *"-F and -X: for a kafka:// destination only"* ]]
	run -64 --separate-stderr event-consume -g g https://sqs.us-east-1.amazonaws.com/1/q
	for bad in kafka://h/t kafka://h:1 "kafka://h:1/" "kafka://h:1/a b" "kafka://h:99999/t" "kafka://:1/t" "kafka://u@h:1/t"; do
		run -64 --separate-stderr event-publish "$bad" </dev/null
		[[ $stderr == *"not kafka://HOST:PORT[,HOST:PORT...]/TOPIC"* ]]
		run -64 --separate-stderr event-consume "$bad"
	done
	run -64 --separate-stderr event-publish -X acks kafka://$B/$T </dev/null
	[[ $stderr == *"-X: want key=value"* ]]
	run -64 --separate-stderr event-publish -X bootstrap.servers=h:1 kafka://$B/$T </dev/null
	[[ $stderr == *"bootstrap.servers: set by event-publish: use kafka://HOST:PORT/TOPIC"* ]]
	run -64 --separate-stderr event-publish -X enable.idempotence=false kafka://$B/$T </dev/null
	[[ $stderr == *"enable.idempotence: event-publish needs true"* ]]
	run -64 --separate-stderr event-consume -X enable.auto.commit=true kafka://$B/$T
	run -64 --separate-stderr event-consume -X group.id=x kafka://$B/$T
	[[ $stderr == *"use -g GROUP"* ]]
	run -78 --separate-stderr event-publish -X no.such.property=1 kafka://$B/$T </dev/null
	[[ $stderr == *"-X no.such.property: No such configuration property"* ]]
	run -66 --separate-stderr event-consume -F nonesuch kafka://$B/$T
	[[ $stderr == *"-F nonesuch"* ]]
	run -66 --separate-stderr event-publish -F nonesuch kafka://$B/$T </dev/null
	printf '# MSK\n\nclient.id = mine\nthis is not a property\n' >props
	run -78 --separate-stderr event-consume -F props kafka://$B/$T
	[[ $stderr == *"props:4: not key=value"* ]]
}

@test "secrets given by -X or -F never appear in a message; -X warns that argv is visible, -F that the file is readable" {
	kafka_start "$T"
	printf 'sasl.username=alice\nsasl.password=hunter2secret\nsecurity.protocol=nonesuch\n' >props
	chmod 600 props
	run -78 --separate-stderr event-publish -F props kafka://$B/$T </dev/null
	[[ $stderr == *"props:3"* ]]
	[[ $stderr != *hunter2* ]]
	[[ $stderr != *"other users may read it"* ]]
	chmod 644 props
	run -78 --separate-stderr event-consume -F props kafka://$B/$T
	[[ $stderr == *"props: holds a secret and other users may read it: chmod 600 it"* || $stderr == *"props:3"* ]]
	[[ $stderr != *hunter2* ]]
	run -78 --separate-stderr event-publish -X sasl.password=hunter2secret -X ssl.key.password=hunter2secret -X security.protocol=nonesuch kafka://$B/$T </dev/null
	[[ $stderr == *"-X sasl.password: a secret on the command line is visible to other users (ps): give it with -F FILE, mode 0600"* ]]
	[[ $stderr != *hunter2* ]]
	# A value refused is not echoed either (librdkafka's own message would).
	run -78 --separate-stderr event-publish -X security.protocol=sasl_plaintext -X sasl.password=hunter2secret -X sasl.mechanisms=hunter2secret kafka://$B/$T </dev/null
	[[ $stderr == *"Unsupported SASL mechanism: ***"* ]]
	[[ $stderr != *hunter2* ]]
	# SASL against brokers without it: an authentication failure, 77 or 69, never the secret.
	printf 'security.protocol=sasl_plaintext\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=alice\nsasl.password=hunter2secret\nmessage.timeout.ms=3000\n' >props
	chmod 600 props
	line 1 1 100 >in
	run --separate-stderr event-publish -v -a pub.pos -F props kafka://$B/$T <in
	[ "$status" = 77 ] || [ "$status" = 69 ]
	[[ $stderr == *"stdin:1: kafka://$B/$T: not published"* ]]
	[[ $stderr != *hunter2* ]]
	[ ! -e pub.pos ]
	run -77 --separate-stderr ec --once -F props kafka://$B/$T
	[[ $stderr != *hunter2* ]]
}

@test "event-publish: each client's events in one partition, in order, keyed as Java clients key them, with headers; the ack file at the last one" {
	kafka_start "$T"
	for i in $(seq 1 300); do line "$i" $((i % 7 + 1)) $((1000 + i)); done >in
	run -0 --separate-stderr event-publish -v -a pub.pos kafka://$B/$T <in
	[[ $stderr == *"300 published"* ]]
	[ "$(cat pub.pos)" = "1300 0 pg:7301:1:cqrs_outbox" ]
	kcat_read "$T" '%p %k %h %s\n' >got
	[ "$(wc -l <got)" = 300 ]
	# One partition per client (the key), ids rising within it.
	[ "$(awk '{ print $2, $1 }' got | sort -u | wc -l)" = 7 ]
	awk '{ split($4, a, "[:,]"); id = a[2]; if (id <= last[$2]) { print "out of order:", $0; exit 1 } last[$2] = id }' got
	[ "$(head -n 1 got | cut -d' ' -f3)" = "table=public.order_event,op=c,lsn=1001,seq=0,src=pg:7301:1:cqrs_outbox" ] ||
		grep -q "table=public.order_event,op=c,lsn=1001,seq=0,src=pg:7301:1:cqrs_outbox" got
	# The value is the event line as read.
	diff <(sort in) <(cut -d' ' -f4- got | sort)
	# Each client where the Java client would put its key (murmur2, as Kafka's Utils).
	awk '{ print $2, $1 }' got | sort -u | while read -r k p; do
		[ "$p" = "$(java_partition "$k" 4)" ] || { echo "key $k in partition $p, Java's: $(java_partition "$k" 4)"; false; }
	done
	# kcat with Kafka Connect's partitioner puts each key where we did.
	for c in 1 2 3 4 5 6 7; do echo "$c	x"; done |
		kcat -P -b "$B" -t "$T" -K '	' -X partitioner=murmur2_random
	kcat_read "$T" '%p %k %s\n' | awk '{ p[$2] = p[$2] " " $1 } END { for (k in p) print k, p[k] }' >parts
	while read -r k ps; do
		[ "$(tr ' ' '\n' <<<"$ps" | sort -u | wc -l)" = 1 ] || { echo "key $k in partitions $ps"; false; }
	done <parts
}

@test "event-publish: a message Kafka refuses stops at its line (65); with --reject-file it is kept there and the rest published" {
	kafka_start "$T"
	{
		line 1 1 101
		line 2 2 102
		printf '{"id":3,"id_client":3,"name":"%s","email":"e","order_total":1,"event_date":1707484820,"__table":"public.order_event","__op":"c","__src":"pg:7301:1:cqrs_outbox","__lsn":103,"__seq":0}\n' "$(head -c 3000 /dev/zero | tr '\0' x)"
		line 4 1 104
	} >in
	run -65 --separate-stderr event-publish -a pub.pos -X message.max.bytes=2000 kafka://$B/$T <in
	[[ $stderr == *"stdin:3: Kafka refused it: Broker: Message size too large"* ]]
	[ "$(cat pub.pos)" = "102 0 pg:7301:1:cqrs_outbox" ]
	run -0 --separate-stderr event-publish -a pub.pos --reject-file rej -X message.max.bytes=2000 kafka://$B/$T <in
	[ "$(jq -r .reason rej)" = "Kafka refused it: Broker: Message size too large (MSG_SIZE_TOO_LARGE)" ]
	[ "$(cat pub.pos)" = "104 0 pg:7301:1:cqrs_outbox" ]
	# 4 may be in Kafka twice: sent while the batch was read, before 3 stopped
	# the first run, and not acknowledged then; each event counts once downstream.
	[ "$(kcat_read "$T" | jq -c .id | sort -nu | tr '\n' ' ')" = "1 2 4 " ]
}

@test "event-publish: brokers that go away: a recovery when they come back, 69 naming the line when they stay away; nothing acknowledged that Kafka lacks" {
	kafka_start "$T"
	for i in $(seq 1 50); do line "$i" $((i % 3 + 1)) $((1000 + i)); done >in
	run -0 event-publish -a pub.pos kafka://$B/$T < <(head -n 10 in)
	brokers_down
	mkfifo feed
	event-publish -a pub.pos kafka://$B/$T <feed 2>ep.err &
	EP=$!
	PIDS=$EP
	exec 5>feed
	sed -n 11,30p in >&5
	sleep 3
	[ "$(cat pub.pos)" = "1010 0 pg:7301:1:cqrs_outbox" ]
	brokers_up
	kwait '[ "$(cat pub.pos)" = "1030 0 pg:7301:1:cqrs_outbox" ]'
	exec 5>&-
	wait_job "$EP"
	[ "$rc" = 0 ] || { cat ep.err; false; }
	grep -q "all brokers are down" ep.err
	brokers_down
	run -69 --separate-stderr event-publish -a pub.pos -X message.timeout.ms=2000 kafka://$B/$T < <(sed -n 31,50p in)
	[[ $stderr == *"stdin:1: kafka://$B/$T: not published: Kafka did not take it: Local: Message timed out"* ]]
	[ "$(cat pub.pos)" = "1030 0 pg:7301:1:cqrs_outbox" ]
	brokers_up
	run -0 event-publish -a pub.pos kafka://$B/$T < <(sed -n 31,50p in)
	[ "$(cat pub.pos)" = "1050 0 pg:7301:1:cqrs_outbox" ]
	[ "$(kcat_read "$T" | jq .id | sort -un | wc -l)" = 50 ]
}

@test "event-consume: every shape of record becomes the same flat event line; tombstones and deletes skipped; offsets committed" {
	kafka_start "$T"
	{
		printf '%s\t%s\n' "$(printf "$SCHEMA_KEY" 1)" "$(row 1 1 1500 1707484820)"
		printf '%s\t%s\n' '{"id":2}' "$(row 2 2 500 1707484821)"
		printf '%s\t%s\n' '{"id":3}' "{\"schema\":{\"type\":\"struct\"},\"payload\":$(row 3 3 1000 1707484822)}"
		printf '%s\t%s\n' "$(printf "$SCHEMA_KEY" 4)" '{"id_client":1,"name":"Client1","email":"c1@anemailprovider.com","order_total":2,"event_date":1707484823}'
		printf '%s\t%s\n' 1 "$(line 5 1 1005)"
		printf '%s\t%s\n' '{"id":6}' '{"id":6,"id_client":1,"name":"x","email":"y","order_total":1,"event_date":1,"__deleted":"true"}'
		printf '%s\t%s\n' '{"id":7}' '{"id":7,"id_client":1,"name":"x","email":"y","order_total":1,"event_date":1,"__op":"d"}'
		printf '%s\t\n' '{"id":8}'
	} | kcat -P -b "$B" -t "$T" -K '	' -Z -p 0
	run -0 --separate-stderr ec -v --once --lag-file lag.json kafka://$B/$T
	[ "${#lines[@]}" = 5 ]
	[[ $stderr == *"8 received, 5 lines, 3 skipped, 0 rejected; 8 committed"* ]]
	[ "$(jq -c '[.id, .id_client, .order_total, .__table, .__op, .__seq, .__origin_partition, .__origin_offset]' <<<"$output" | tr '\n' ' ')" = \
		'[1,1,1500,"public.order_event","c",0,0,0] [2,2,500,"public.order_event","c",0,0,1] [3,3,1000,"public.order_event","c",0,0,2] [4,1,2,"public.order_event","c",0,0,3] [5,1,10.5,"public.order_event","c",0,0,4] ' ]
	[ "$(jq -r .__src <<<"$output" | sort -u)" = "kafka:$B/$T" ]
	[ "$(sed -n 5p <<<"$output" | jq -c '[.__origin_src, .__origin_lsn]')" = '["pg:7301:1:cqrs_outbox",1005]' ]
	# __lsn rises; committed: a second run has nothing.
	jq .__lsn <<<"$output" | sort -c -n -u
	[ "$(committed 0)" = 8 ]
	run -0 --separate-stderr ec --once kafka://$B/$T
	[ -z "$output" ]
	# Another group reads it all again.
	run -0 --separate-stderr ec --once -g other kafka://$B/$T
	[ "${#lines[@]}" = 5 ]
}

@test "event-consume: a record that cannot be read is 65 and not committed; with --reject-file it is kept there and committed" {
	kafka_start -p 1 "$T"
	{ row 1 1 10 1707484820; echo; echo 'not json'; row 2 1 10 1707484821; echo; } |
		kcat -P -b "$B" -t "$T"
	run -65 --separate-stderr ec --once --lag-file lag.json kafka://$B/$T
	[ "${#lines[@]}" = 1 ]
	[[ $stderr == *"message $T/0@1: not JSON"*"not committed"* ]]
	[ "$(committed 0)" = 1 ]
	run -0 --separate-stderr ec --once --reject-file rej --lag-file lag.json kafka://$B/$T
	[ "$(jq -r .id <<<"$output")" = 2 ]
	[ "$(jq -r .message rej)" = "not json" ]
	[ "$(jq -r .input rej)" = "message $T/0@1" ]
	[ "$(committed 0)" = 3 ]
}

@test "event-consume: an offset is committed only once every ack file covers its line; an ack file of another stream is 78; --once unacknowledged is 75" {
	kafka_start -p 1 "$T"
	for i in 1 2 3; do row "$i" 1 1 1707484820; echo; done | kcat -P -b "$B" -t "$T"
	event-consume "${KX[@]}" -a a1 -a a2 --lag-file lag.json kafka://$B/$T >out 2>err &
	PIDS=$!
	kwait '[ "$(wc -l <out)" = 3 ]'
	SRC=$(jq -r .__src <out | head -n 1)
	lsn2=$(sed -n 2p out | jq .__lsn)
	lsn3=$(sed -n 3p out | jq .__lsn)
	echo "$lsn3 0 $SRC" >a1
	sleep 2
	[ "$(committed 0)" = null ] || [ "$(committed 0)" = "" ]
	echo "$lsn2 0 $SRC" >a2
	kwait '[ "$(committed 0)" = 2 ]'
	echo "$lsn3 0 $SRC" >a2
	kwait '[ "$(committed 0)" = 3 ]'
	kill -TERM "$PIDS"
	wait "$PIDS"
	row 4 1 1 1707484820 | kcat -P -b "$B" -t "$T"
	echo "100 0 pg:7301:1:cqrs_outbox" >other
	run -78 --separate-stderr ec --once -a other kafka://$B/$T
	[[ $stderr == *"other: positions of \"pg:7301:1:cqrs_outbox\", not of kafka:$B/$T"* ]]
	run -75 --separate-stderr ec --once -w 1 -a a1 kafka://$B/$T
	[ "$(jq .id <<<"$output")" = 4 ]
	(( $(jq .__lsn <<<"$output") > lsn3 ))
	[[ $stderr == *"1 lines written but not acknowledged within 1 s"* ]]
	run -0 --separate-stderr ec --once kafka://$B/$T
	[ "$(jq .id <<<"$output")" = 4 ]
	# No broker at all: --once gives up after 30 s.
	kafka_stop
	run -69 --separate-stderr ec --once kafka://$B/$T
	[[ $stderr == *"no broker reachable for 30 s"* ]]
}

@test "the sample's Debezium records, produced by kcat, shuffled and each twice, count once" {
	kafka_start "$T"
	awk 'BEGIN { srand(13); for (i = 1; i <= 80; i++)
		printf "%d %d %.2f %d\n", i, 1 + int(rand() * 3), int(rand() * 300000) / 100, 1707484000 + int(rand() * 100000) }' >rows
	while read -r id c t d; do
		for n in 1 2; do printf '%s\t%s\n' "$(printf "$SCHEMA_KEY" "$id")" "$(row "$id" "$c" "$t" "$d")"; done
	done <rows | shuf --random-source=rows >msgs
	kcat -P -b "$B" -t "$T" -K '	' -X partitioner=murmur2_random <msgs
	ec --once -a proj.pos kafka://$B/$T 2>ec.err | client-project -v -a proj.pos --reject-file rej 2>cp.err
	[ "$(read_model)" = "$(expected_model rows)" ]
	[ ! -e rej ]
	grep -q "80 applied" cp.err
	# Debezium redelivers after a connector restart: the same records again.
	kcat -P -b "$B" -t "$T" -K '	' -X partitioner=murmur2_random <msgs
	ec --once -a proj.pos kafka://$B/$T 2>ec.err | client-project -v -a proj.pos --reject-file rej 2>cp.err
	[ "$(read_model)" = "$(expected_model rows)" ]
	[ ! -e rej ]
}

# Clients 4 to 12 besides the seed's 1 to 3, so that every partition has some.
more_clients() {
	sql "INSERT INTO client (name, email) SELECT 'Client' || i, 'c' || i || '@anemailprovider.com' FROM generate_series(4, 12) i" >/dev/null
}

# orders N SEED: N order requests over clients 1 to 12.
orders() {
	awk -v n="$1" -v s="$2" 'BEGIN { srand(s); for (i = 0; i < n; i++)
		printf "{\"id_client\":%d,\"products\":[{\"id_product\":%d,\"quantity\":%d}]}\n", 1 + int(rand() * 12), 1 + int(rand() * 3), 1 + int(rand() * 4) }'
}

no_active_slot() {
	[ "$(sql 'SELECT count(*) FROM pg_replication_slots WHERE active')" = 0 ]
}

# start_publisher: outbox-tail | event-fanout | event-publish kafka://, in the background.
start_publisher() {
	kwait no_active_slot
	rm -f ep.pid
	outbox-tail --ack-file pub.pos 2>>ot.err |
		event-fanout "echo \$\$ >ep.pid; exec event-publish --ack-file pub.pos -b 20 kafka://$B/$T 2>>ep.err" 2>>ef.err &
	PIDS="$PIDS $!"
	kwait '[ -s ep.pid ]'
}

# start_consumer N: event-consume | client-project number N, in the background; EC is event-consume's pid.
start_consumer() {
	rm -f "lines$1"
	mkfifo "lines$1"
	event-consume "${KX[@]}" -v -a "proj$1.pos" --lag-file "lag$1.json" \
		kafka://$B/$T >"lines$1" 2>>"ec$1.err" &
	EC=$!
	client-project -a "proj$1.pos" --reject-file "rej$1" <"lines$1" 2>>"cp$1.err" &
	PIDS="$PIDS $EC $!"
}

@test "end to end: outbox-tail, event-fanout, event-publish to Kafka, event-consume, client-project equals SQL, with kill -9 of publisher and consumer" {
	kafka_start "$T"
	more_clients
	orders 600 3 >orders
	start_publisher
	start_consumer 1
	head -n 200 orders | order-place >/dev/null
	kwait '[ -s pub.pos ]'
	kill -9 "$(cat ep.pid)"
	sed -n 201,400p orders | order-place >/dev/null
	kwait '[ -s proj1.pos ]'
	kill -9 "$EC"
	start_publisher
	start_consumer 1
	sed -n 401,600p orders | order-place >/dev/null
	kwait 'client-verify -w 0 >/dev/null 2>&1'
	run -0 client-verify
	[ ! -e rej1 ] || { cat rej1 cp1.err; false; }
	[ "$(sql 'SELECT count(*) FROM order_event')" = 600 ]
	# Per-client partitioning held all along.
	[ "$(kcat_read "$T" '%p %k\n' | sort -u | awk '{ print $2 }' | sort | uniq -d)" = "" ]
}

@test "two event-consume in one group split the partitions and apply everything once, also when one is killed mid-stream" {
	kafka_start -p 6 "$T"
	more_clients
	orders 900 5 >orders
	start_publisher
	start_consumer 1
	C1=$EC
	kwait 'grep -q "assigned partitions" ec1.err'
	start_consumer 2
	kwait 'grep -q "assigned partitions" ec2.err'
	head -n 300 orders | order-place >/dev/null
	# Each one holds some of the six partitions.
	kwait '[ "$(jq ".partitions | length" lag1.json 2>/dev/null)" -gt 0 ] && [ "$(jq ".partitions | length" lag2.json 2>/dev/null)" -gt 0 ]'
	kwait 'client-verify -w 0 >/dev/null 2>&1'
	sed -n 301,600p orders | order-place >/dev/null &
	sleep 0.5
	kill -9 "$C1"
	wait $!
	# The survivor takes them all over.
	kwait '[ "$(jq ".partitions | length" lag2.json)" = 6 ]'
	sed -n 601,900p orders | order-place >/dev/null
	kwait 'client-verify -w 0 >/dev/null 2>&1'
	run -0 client-verify
	[ ! -e rej1 ] && [ ! -e rej2 ] || { cat rej* cp*.err; false; }
	[ "$(sql 'SELECT count(*) FROM order_event')" = 900 ]
	grep -q "revoked partitions" ec1.err || grep -q "revoked partitions" ec2.err
}

@test "event-consume: brokers that go away and come back: nothing lost, nothing doubled" {
	kafka_start "$T"
	more_clients
	orders 300 9 >orders
	start_publisher
	start_consumer 1
	head -n 100 orders | order-place >/dev/null
	kwait 'client-verify -w 0 >/dev/null 2>&1'
	brokers_down
	sed -n 101,200p orders | order-place >/dev/null
	sleep 3
	brokers_up
	sed -n 201,300p orders | order-place >/dev/null
	kwait 'client-verify -w 0 >/dev/null 2>&1'
	run -0 client-verify
	[ ! -e rej1 ] || { cat rej1 cp1.err; false; }
}
