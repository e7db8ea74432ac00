#!/usr/bin/env bats
# cqrs-httpd.bats: the AWS sample's HTTP API on the local stack, and the --api clients (order-place, client-get).

load test_helper
bats_require_minimum_version 1.5.0

SAMPLE='{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}'
PW=s3cret-Adm1n		# admin's password (SHA-512 crypt, openssl passwd -6)
BPW=b0b-pw-Bcrypt	# bob's password (bcrypt $2y$, htpasswd -B)

setup_file() {
	require_tool curl
	require_tool openssl
	require_tool htpasswd
	stack_setup_file
	D=$BATS_FILE_TMPDIR
	export D
	echo "admin:$(openssl passwd -6 "$PW")" >"$D/htpasswd"
	htpasswd -bB "$D/htpasswd" bob "$BPW" 2>/dev/null
	grep -q '^bob:\$2y\$' "$D/htpasswd"
	start_httpd "$D/httpd" --prefix /prod -t 3
	PORT=$HTTPD_PORT
	export PORT URL=http://127.0.0.1:$HTTPD_PORT/prod
	start_stub
}

teardown_file() {
	local f pid
	for f in "$D"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null || true
	done
	stack_teardown_file
}

setup() {
	reset_state
	sql 'TRUNCATE order_request' >/dev/null
	KEY=$(printf 'admin:%s' "$PW" | base64)	# the sample's admin_key, decoded by the user
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	if [ -n "${OWN_PID:-}" ]; then
		kill -9 "$OWN_PID" 2>/dev/null || true
	fi
	if [ -n "${LOCKER_PID:-}" ]; then
		sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'httpd-locker'" >/dev/null || true
		wait "$LOCKER_PID" 2>/dev/null || true
	fi
	if [ -n "${SLOW_PID:-}" ]; then
		kill "$SLOW_PID" 2>/dev/null || true
	fi
	"$CQRS_REPO/scripts/stack" up >/dev/null 2>&1 || true
}

# start_httpd NAME ARGS...: cqrs-httpd on 127.0.0.1, a free port, stderr in NAME.err,
# pid in NAME.pid; HTTPD_PORT and HTTPD_PID set.
start_httpd() {
	local name=$1 i
	shift
	cqrs-httpd --htpasswd "$D/htpasswd" -l 127.0.0.1:0 "$@" 2>"$name.err" 3>&- &
	HTTPD_PID=$!
	echo "$HTTPD_PID" >"$name.pid"
	for i in $(seq 200); do
		HTTPD_PORT=$(sed -n 's|^cqrs-httpd: listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$name.err")
		[ -n "$HTTPD_PORT" ] && return 0
		kill -0 "$HTTPD_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$name.err" >&2
	echo "start_httpd: cqrs-httpd did not start" >&2
	return 1
}

# start_stub: a tiny HTTP server on 127.0.0.1 (perl) for the answers cqrs-httpd never
# gives: the first path segment says what to answer.  Requests are logged to $D/stub.log.
start_stub() {
	cat >"$D/stub.pl" <<'PERL'
use strict; use IO::Socket::INET;
$SIG{PIPE} = "IGNORE";	# a client that hangs up must not end the stub
my ($portfile, $logfile) = @ARGV;
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1) or die "listen: $!";
open(my $pf, '>', "$portfile.tmp") or die; print $pf $s->sockport, "\n"; close $pf; rename("$portfile.tmp", $portfile);
my %n;
while (my $c = $s->accept) {
	local $/ = "\r\n";
	my $line = <$c>;
	next unless defined $line;
	my ($m, $p) = split / /, $line;
	my ($len, $auth) = (0, '-');
	while (defined(my $h = <$c>)) {
		last if $h eq "\r\n";
		$len = $1 if $h =~ /^Content-Length:\s*(\d+)/i;
		$auth = $1 if $h =~ /^Authorization:\s*(\S+ \S+)/i;
	}
	my $body = ''; read($c, $body, $len) if $len;
	my ($mode) = $p =~ m{^/([^/]+)/};
	$mode //= '';
	$n{$mode}++;
	open(my $log, '>>', $logfile); print $log "$m $p $auth\n"; close $log;
	my ($code, $b, $extra) = (200, '', '');
	my $ok = $m eq 'POST' ? '{"statusCode": 200, "body": "Order created successfully!"}'
	    : '{"name": "Bob", "email": "bob@anemailprovider.com", "total": 3000.0, "last_purchase": 1707484820}';
	if ($mode eq '401') { ($code, $b) = (401, '{"message":"Unauthorized"}') }
	elsif ($mode eq '403') { ($code, $b) = (403, '{"message":"User is not authorized to access this resource with an explicit deny"}') }
	elsif ($mode eq '404') { ($code, $b) = (404, 'Client not found') }
	elsif ($mode eq '429') { ($code, $b, $extra) = (429, '{"message":"Too Many Requests"}', "Retry-After: 0\r\n") }
	elsif ($mode eq '500') { ($code, $b) = (500, '{"message":"Internal server error"}') }
	elsif ($mode eq 'lambda') { ($code, $b) = (200, '{"statusCode": 500, "body": "An internal error occurred."}') }
	elsif ($mode eq 'junk') { print $c "garbage, not HTTP\r\n\r\n"; close $c; next }
	elsif ($mode eq 'huge') { ($code, $b) = (200, '{"x":"' . ('a' x (2 * 1024 * 1024)) . '"}') }
	elsif ($mode eq 'array') { ($code, $b) = (200, '[1]') }
	elsif ($mode eq 'flaky') { ($code, $b) = $n{$mode} % 3 ? (503, '{"message":"Service Unavailable"}') : (200, $ok) }
	else { ($code, $b) = (200, $ok) }
	print $c "HTTP/1.1 $code X\r\nContent-Type: application/json\r\nContent-Length: " . length($b) .
	    "\r\nConnection: close\r\n$extra\r\n$b";
	close $c;
}
PERL
	perl "$D/stub.pl" "$D/stub.port" "$D/stub.log" 3>&- &
	echo $! >"$D/stub.pid"
	local i
	for i in $(seq 100); do
		[ -s "$D/stub.port" ] && break
		sleep 0.05
	done
	STUB=http://127.0.0.1:$(cat "$D/stub.port")
	export STUB
}

# counts: the row counts of the order tables and the keys, one line.
counts() {
	sql 'SELECT (SELECT count(*) FROM "order"), (SELECT count(*) FROM order_item),
		(SELECT count(*) FROM order_event), (SELECT count(*) FROM order_request)'
}

# post BODY [CURL ARGS...]: POST BODY as JSON to /prod/orders as admin; the
# status in $code, the answer in $body.
post() {
	local b=$1
	shift
	body=$(curl -s -o - -w '\n%{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' "$@" \
		--data-binary "$b" "$URL/orders")
	code=${body##*$'\n'}
	body=${body%$'\n'*}
}

# project: the outbox's new rows into the read model (outbox-tail | client-project).
project() {
	outbox-tail --once -w 5 2>/dev/null | client-project
}

@test "the sample README's two curl commands, verbatim but for the host, give the sample's answers" {
	run -0 --separate-stderr outbox-tail --once -w 5	# the slot: the order below is streamed
	run -0 --separate-stderr curl -d '{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":2,"quantity":3}]}' -H "Content-Type: application/json" -H "Authorization: Basic $KEY" -X POST "http://127.0.0.1:$PORT/prod/orders"
	[ "$(jq -c '{statusCode, body}' <<<"$output")" = '{"statusCode":200,"body":"Order created successfully!"}' ]
	[[ $output == '{"statusCode":200,"body":"Order created successfully!",'* ]]
	date=$(jq .placement_date <<<"$output")
	[ "$(jq -c '[.id_order, .id_client, .order_total, .id_event]' <<<"$output")" = \
		"[$(sql 'SELECT id FROM "order"'),1,3000,$(sql 'SELECT id FROM order_event')]" ]
	[ "$(counts)" = "1|2|1|0" ]
	project
	run -0 --separate-stderr curl -H "Authorization: Basic $KEY" "http://127.0.0.1:$PORT/prod/clients/1"
	# The sample's fields, as they are, then the id that client-get prints too.
	[ "$output" = "{\"name\":\"Bob\",\"email\":\"bob@anemailprovider.com\",\"total\":3000.0,\"last_purchase\":$date,\"id_client\":1}" ]
	[ "$output" = "$(client-get 1)" ]
}

@test "authentication: no header 401 with WWW-Authenticate; wrong or unknown credentials 403; nothing written" {
	before=$(counts)
	run -0 curl -s -i -H 'Content-Type: application/json' -d "$SAMPLE" "$URL/orders"
	[[ $output == "HTTP/1.1 401 "* ]]
	[[ $output == *$'\r\nWWW-Authenticate: Basic realm="cqrs-httpd"'* ]]
	[[ $output == *$'\r\n\r\n{"message":"Unauthorized"}' ]]
	deny='{"message":"User is not authorized to access this resource with an explicit deny"}'
	for auth in "Basic $(printf admin:wrong | base64)" "Basic $(printf nobody:"$PW" | base64)" \
		"Basic $(printf admin | base64)" "Basic !!!" "Bearer $KEY" "Basic $(printf 'admin:%s\n' "$PW" | base64)" \
		"Basic $(printf 'admin:%sx' "$PW" | base64)" "Basic $(printf 'Admin:%s' "$PW" | base64)"; do
		run -0 curl -s -w ' %{http_code}' -H "Authorization: $auth" -H 'Content-Type: application/json' -d "$SAMPLE" "$URL/orders"
		[ "$output" = "$deny 403" ] || { echo "$auth: $output" >&2; return 1; }
		run -0 curl -s -w ' %{http_code}' -H "Authorization: $auth" "$URL/clients/1"
		[ "$output" = "$deny 403" ]
	done
	[ "$(counts)" = "$before" ]
}

@test "bcrypt (\$2y\$, htpasswd -B) and SHA-512 (openssl passwd -6) hashes both work" {
	post "$SAMPLE" -u "bob:$BPW"
	[ "$code" = 200 ]
	post "$SAMPLE"
	[ "$code" = 200 ]
	[ "$(counts)" = "2|4|2|0" ]
}

@test "a bad body is 400 naming the field as order-place does; nothing written" {
	before=$(counts)
	for c in '{"products":[{"id_product":1,"quantity":1}]}|id_client: missing' \
		'{"id_client":"1","products":[{"id_product":1,"quantity":1}]}|id_client: must be a positive integer' \
		'{"id_client":1,"products":[]}|products: must be a non-empty array' \
		'{"id_client":1,"products":[{"id_product":1,"quantity":0}]}|products[0].quantity: must be an integer from 1 to 1000000' \
		'{"id_client":1,"products":[{"id_product":1,"quantity":1}],"coupon":1}|coupon: unknown key' \
		'{"id_client":1,"id_client":2,"products":[]}|duplicate object key' \
		'[1]|not a JSON object' \
		'{"id_client":1,|' ; do
		post "${c%%|*}"
		[ "$code" = 400 ] || { echo "${c%%|*}: $code $body" >&2; return 1; }
		[[ $(jq -r .message <<<"$body") == "${c#*|}"* ]] || { echo "${c%%|*}: $body" >&2; return 1; }
	done
	# The same message order-place gives for the same line.
	post '{"id_client":1,"products":[{"id_product":1,"quantity":1000001}]}'
	run -65 --separate-stderr order-place <<<'{"id_client":1,"products":[{"id_product":1,"quantity":1000001}]}'
	[ "$stderr" = "order-place: stdin:1: $(jq -r .message <<<"$body")" ]
	[ "$(counts)" = "$before" ]
}

@test "unknown client or product: 422 naming it; nothing written" {
	before=$(counts)
	post '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}'
	[ "$code" = 422 ]
	[ "$body" = '{"message":"id_client: unknown client 42"}' ]
	post '{"id_client":1,"products":[{"id_product":1,"quantity":1},{"id_product":9,"quantity":1}]}'
	[ "$code" = 422 ]
	[ "$body" = '{"message":"products[1].id_product: unknown product 9"}' ]
	[ "$(counts)" = "$before" ]
}

@test "Content-Type other than JSON 415, a body over 1 MiB 413, nothing written" {
	before=$(counts)
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -d "$SAMPLE" "$URL/orders"	# form-urlencoded
	[ "$output" = '{"message":"Content-Type: must be application/json"} 415' ]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: text/plain' -d "$SAMPLE" "$URL/orders"
	[[ $output == *' 415' ]]
	post "$SAMPLE" -H 'Content-Type: application/json; charset=utf-8'
	[ "$code" = 200 ]
	# 1 MiB + 1 byte: an otherwise valid order padded with spaces.
	{ printf '{"id_client":1,'; head -c $((1024 * 1024 - 57)) /dev/zero | tr '\0' ' '; printf '"products":[{"id_product":1,"quantity":1}]}'; } >big
	[ "$(wc -c <big)" -eq $((1024 * 1024 + 1)) ]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' --data-binary @big "$URL/orders"
	[[ $output == *' 413' ]]
	[ "$(counts)" = "1|2|1|0" ]
}

@test "routes: unknown path 404, wrong method 405 with Allow, malformed client id 400" {
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "$URL/nothing"
	[ "$output" = '{"message":"Not Found"} 404' ]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "http://127.0.0.1:$PORT/orders"	# no /prod
	[[ $output == *' 404' ]]
	run -0 curl -s -i -u "admin:$PW" "$URL/orders"
	[[ $output == "HTTP/1.1 405 "* ]]
	[[ $output == *$'\r\nAllow: POST\r\n'* ]]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -X DELETE "$URL/clients/1"
	[[ $output == *' 405' ]]
	for id in 0 x -1 01 2147483648 1.5; do
		run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "$URL/clients/$id"
		[ "$output" = '{"message":"id: must be a positive integer"} 400' ] || { echo "$id: $output" >&2; return 1; }
	done
}

@test "GET: an unknown client is 404 \"Client not found\", as the sample" {
	run -0 curl -s -i -u "admin:$PW" "$URL/clients/2"
	[[ $output == "HTTP/1.1 404 "* ]]
	[[ $output == *$'\r\n\r\nClient not found' ]]
}

@test "Idempotency-Key: three retries place one order and get the first answer; another body 422" {
	post "$SAMPLE" -H 'Idempotency-Key: order-7f3a'
	[ "$code" = 200 ]
	first=$body
	for i in 1 2 3; do
		run -0 curl -s -i -u "admin:$PW" -H 'Content-Type: application/json' -H 'Idempotency-Key: order-7f3a' -d "$SAMPLE" "$URL/orders"
		[[ $output == *$'\r\nIdempotent-Replayed: true\r\n'* ]]
		[ "${output##*$'\r\n\r\n'}" = "$first" ]
	done
	[ "$(counts)" = "1|2|1|1" ]
	post '{"id_client":1,"products":[{"id_product":1,"quantity":2}]}' -H 'Idempotency-Key: order-7f3a'
	[ "$code" = 422 ]
	[ "$body" = '{"message":"request_id: order-7f3a was used for another order"}' ]
	[ "$(counts)" = "1|2|1|1" ]
	# A key that is not 1 to 255 printable characters: 400, nothing written.
	post "$SAMPLE" -H "Idempotency-Key: $(head -c 256 /dev/zero | tr '\0' k)"
	[ "$code" = 400 ]
	[ "$(counts)" = "1|2|1|1" ]
}

@test "Idempotency-Key: concurrent retries place one order" {
	for i in $(seq 8); do
		curl -s -u "admin:$PW" -H 'Content-Type: application/json' -H 'Idempotency-Key: same' -d "$SAMPLE" "$URL/orders" >"out.$i" &
	done
	wait
	[ "$(cat out.* | sort -u | wc -l)" -eq 1 ]
	[ "$(counts)" = "1|2|1|1" ]
}

@test "order-place --api and client-get --api, end to end through cqrs-httpd, PostgreSQL and Redis" {
	run -0 --separate-stderr outbox-tail --once -w 5
	printf '%s\n' "$SAMPLE" '{"id_client":2,"products":[{"id_product":3,"quantity":2}],"request_id":"r-1"}' \
		'{"id_client":2,"products":[{"id_product":3,"quantity":2}],"request_id":"r-1"}' >orders
	CQRS_API_AUTH=admin:$PW run -0 --separate-stderr order-place --api "$URL" <orders
	[ "${#lines[@]}" -eq 3 ]
	[ "$(jq -c '[.line, .id_client, .order_total, .replayed]' <<<"$output" | paste -sd' ')" = \
		'[1,1,3000,null] [2,2,2000,null] [3,2,2000,true]' ]
	[ "$(jq .id_order <<<"${lines[1]}")" = "$(jq .id_order <<<"${lines[2]}")" ]
	# Two keys: r-1, and the one order-place made for the retries of line 1.
	[ "$(counts)" = "2|3|2|2" ]
	# The same fields and values as order-place on PostgreSQL prints.
	[ "$(jq -c 'del(.line)' <<<"${lines[0]}")" = "$(sql 'SELECT json_build_object('"'id_order'"', o.id, '"'id_client'"', o.id_client,
		'"'order_total'"', e.order_total, '"'placement_date'"', o.placement_date, '"'id_event'"', e.id)
		FROM "order" o JOIN order_event e ON e.id_client = o.id_client WHERE o.id_client = 1' | jq -c .)" ]
	project
	CQRS_API_AUTH=admin:$PW run -0 --separate-stderr client-get --api "$URL" 1 2
	[ "$output" = "$(client-get 1 2)" ]
	CQRS_API_AUTH=admin:$PW run -1 --separate-stderr client-get --api "$URL" 3 1
	[ "$output" = "$(client-get 1)" ]
	[ "$stderr" = "client-get: client 3: not found" ]
}

@test "--api takes credentials from ~/.netrc; none: 77" {
	export HOME=$BATS_TEST_TMPDIR
	unset CQRS_API_AUTH
	run -77 --separate-stderr order-place --api "$URL" <<<"$SAMPLE"
	[ "$stderr" = 'order-place: stdin:1: HTTP 401: Unauthorized' ]
	printf 'machine 127.0.0.1\nlogin admin\npassword %s\n' "$PW" >.netrc
	chmod 600 .netrc
	run -0 --separate-stderr order-place --api "$URL" <<<"$SAMPLE"
	[ "$(jq .line <<<"$output")" = 1 ]
	run -1 --separate-stderr client-get --api "$URL" 1
	[ "$stderr" = "client-get: client 1: not found" ]
}

@test "--api client exit codes: 401 403 77, 404, 4xx 65, 429 500 and a 200 with statusCode 500 retried then 75, refused 69" {
	local -a failures=()
	export CQRS_API_AUTH=admin:x
	for c in 401:77:77 403:77:77 404:65:1 429:75:75 500:75:75 lambda:75:75; do
		mode=${c%%:*} want_op=${c#*:} want_op=${want_op%%:*} want_cg=${c##*:}
		: >"$D/stub.log"
		run --separate-stderr order-place --api "$STUB/$mode" <<<"$SAMPLE"
		[ "$status" -eq "$want_op" ] || failures+=("order-place $mode: exit $status, want $want_op: $stderr")
		[ -z "$output" ] || failures+=("order-place $mode: stdout: $output")
		[[ $stderr == "order-place: stdin:1: "* ]] || failures+=("order-place $mode: $stderr")
		n=$(grep -c "^POST /$mode/orders " "$D/stub.log")
		case $mode in
		429|500|lambda) [ "$n" -eq 4 ] || failures+=("order-place $mode: $n attempts, want 4") ;;
		*) [ "$n" -eq 1 ] || failures+=("order-place $mode: $n attempts, want 1") ;;
		esac
		run --separate-stderr client-get --api "$STUB/$mode" 1
		[ "$status" -eq "$want_cg" ] || failures+=("client-get $mode: exit $status, want $want_cg: $stderr")
		[ -z "$output" ] || failures+=("client-get $mode: stdout: $output")
	done
	# The sample's own answers: its 200 body, and a retried 503 that then succeeds.
	run --separate-stderr order-place --api "$STUB/flaky" <<<"$SAMPLE"
	[ "$status" -eq 0 ] || failures+=("order-place flaky: exit $status: $stderr")
	[ "$output" = '{"id_client":1,"line":1}' ] || failures+=("order-place flaky: $output")
	run --separate-stderr client-get --api "$STUB/sample" 1
	[ "$output" = '{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,"last_purchase":1707484820,"id_client":1}' ] ||
		failures+=("client-get sample: $output")
	# The Basic credentials went as given.
	grep -q "^GET /sample/clients/1 Basic $(printf admin:x | base64)\$" "$D/stub.log" || failures+=("no Basic credentials")
	run --separate-stderr order-place --api http://127.0.0.1:1 <<<"$SAMPLE"
	[ "$status" -eq 69 ] || failures+=("order-place refused: exit $status")
	run --separate-stderr client-get --api http://127.0.0.1:1 1
	[ "$status" -eq 69 ] || failures+=("client-get refused: exit $status")
	[ "$(counts)" = "0|0|0|0" ]
	[ "${#failures[@]}" -eq 0 ] || { printf '%s\n' "${failures[@]}" >&2; return 1; }
}

@test "--api: an answer that is not HTTP, too long, or not an object: 76" {
	export CQRS_API_AUTH=admin:x
	run -76 --separate-stderr order-place --api "$STUB/junk" <<<"$SAMPLE"
	[[ $stderr == "order-place: stdin:1: "* ]]
	run -76 --separate-stderr client-get --api "$STUB/junk" 1
	run -76 --separate-stderr order-place --api "$STUB/huge" <<<"$SAMPLE"
	[ "$stderr" = "order-place: stdin:1: the answer is longer than 1048576 bytes" ]
	run -76 --separate-stderr client-get --api "$STUB/array" 1
	[ "$stderr" = "client-get: client 1: the answer is not a JSON object" ]
	[ -z "$output" ]
}

@test "--api with -k: a refused order is reported and the rest placed (exit 65)" {
	printf '%s\n' "$SAMPLE" '{"id_client":42,"products":[{"id_product":1,"quantity":1}]}' "$SAMPLE" >orders
	CQRS_API_AUTH=admin:$PW run -65 --separate-stderr order-place -k --api "$URL" <orders
	[ "$(jq -c .line <<<"$output" | paste -sd' ')" = "1 3" ]
	[ "$stderr" = 'order-place: stdin:2: HTTP 422: id_client: unknown client 42' ]
	[ "$(counts)" = "2|4|2|2" ]
}

@test "--api: credentials in the URL, a bad URL or CQRS_API_AUTH: 78, nothing shown" {
	run -78 --separate-stderr order-place --api "http://admin:$PW@127.0.0.1:$PORT/prod" <<<"$SAMPLE"
	[[ $stderr != *"$PW"* ]]
	run -78 --separate-stderr client-get --api "http://admin:$PW@127.0.0.1:$PORT/prod" 1
	[[ $stderr != *"$PW"* ]]
	run -78 --separate-stderr env CQRS_API_AUTH="$PW" order-place --api "$URL" <<<"$SAMPLE"
	[[ $stderr != *"$PW"* ]]
	run -78 --separate-stderr order-place --api "ftp://127.0.0.1/" <<<"$SAMPLE"
	run -64 --separate-stderr order-place --api "$URL" -d orders <<<"$SAMPLE"
	run -64 --separate-stderr client-get --api "$URL" --all
	[ "$(counts)" = "0|0|0|0" ]
}

@test "a 10 MB body and a slowloris connection do not stop other clients" {
	post "$SAMPLE"
	[ "$code" = 200 ]
	# 10 MB with its length declared: refused at once.
	head -c $((10 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >ten
	run -0 curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' --data-binary @ten "$URL/orders"
	[ "$output" = 413 ]
	# 10 MB chunked, with no length: the connection is closed past 1 MiB.
	run curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' \
		-H 'Transfer-Encoding: chunked' --data-binary @ten "$URL/orders"
	[ "$output" != 200 ]
	# A slowloris: a header line that never ends, a byte a second, for up to 60 s.
	exec 5<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'POST /prod/orders HTTP/1.1\r\nHost: x\r\n' >&5
	(for i in $(seq 60); do printf 'X' >&5 || exit 0; sleep 1; done) 3>&- &
	SLOW_PID=$!
	# Meanwhile other clients are served, many times over.
	for i in $(seq 20); do
		post "$SAMPLE"
		[ "$code" = 200 ]
		run -0 curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW" "$URL/clients/1"
		[ "$output" = 404 ]
	done
	# The server hangs up on it (-t 3) although it keeps sending.
	run timeout 45 cat <&5
	[ "$status" -ne 124 ]
	exec 5<&-
	kill "$SLOW_PID" 2>/dev/null || true
	[ "$(counts)" = "21|42|21|0" ]
}

@test "a database made by the AWS sample (no function): orders by plain SQL; an Idempotency-Key is 501" {
	psql -qX -c 'DROP DATABASE IF EXISTS sample' -c 'CREATE DATABASE sample' >/dev/null
	psql -qX -v ON_ERROR_STOP=1 -d sample >/dev/null <<-'SQL'
	CREATE TABLE product (id serial PRIMARY KEY, name varchar, price float);
	CREATE TABLE client (id serial PRIMARY KEY, name varchar, email varchar);
	CREATE TABLE "order" (id serial PRIMARY KEY, id_client int REFERENCES client(id), placement_date int);
	CREATE TABLE order_item (id serial PRIMARY KEY, id_order int REFERENCES "order"(id),
		id_product int REFERENCES product(id), price_when_item_was_ordered float, quantity int);
	CREATE TABLE order_event (id serial PRIMARY KEY, id_client int REFERENCES client(id),
		name varchar, email varchar, order_total float, event_date int);
	INSERT INTO product (name, price) VALUES ('Computer', 1500), ('Phone', 500), ('TV', 1000);
	INSERT INTO client (name, email) VALUES ('Bob', 'bob@anemailprovider.com');
	SQL
	start_httpd "$BATS_TEST_TMPDIR/own" -d sample
	OWN_PID=$HTTPD_PID
	u=http://127.0.0.1:$HTTPD_PORT
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' -d "$SAMPLE" "$u/orders"
	[[ $output == '{"statusCode":200,"body":"Order created successfully!","id_order":1,"id_client":1,"order_total":3000,'*' 200' ]]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' -d '{"id_client":2,"products":[{"id_product":1,"quantity":1}]}' "$u/orders"
	[ "$output" = '{"message":"id_client: unknown client 2"} 422' ]
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' -H 'Idempotency-Key: k' -d "$SAMPLE" "$u/orders"
	[ "$output" = '{"message":"Idempotency-Key: this database cannot keep keys"} 501' ]
	[ "$(psql -qXAt -d sample -c 'SELECT count(*) FROM "order"')" = 1 ]
	kill -TERM "$OWN_PID"
	wait "$OWN_PID" || true
	OWN_PID=
	psql -qX -c 'DROP DATABASE sample' >/dev/null
}

@test "database down: 503, nothing half-written; back: 200 without a restart" {
	post "$SAMPLE"
	[ "$code" = 200 ]
	"$CQRS_REPO/scripts/stack" crash pg
	post "$SAMPLE"
	[ "$code" = 503 ]
	[[ $body == '{"message":"database unavailable'* ]]
	"$CQRS_REPO/scripts/stack" up >/dev/null 2>&1
	post "$SAMPLE"
	[ "$code" = 200 ]
	[ "$(counts)" = "2|4|2|0" ]
}

@test "Redis down: GET 503; back: 200 without a restart" {
	rcli hset client:1 name Bob email bob@anemailprovider.com total 300000 last_purchase 1707484820 >/dev/null
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "$URL/clients/1"
	[[ $output == *' 200' ]]
	"$CQRS_REPO/scripts/stack" crash redis
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "$URL/clients/1"
	[ "$output" = '{"message":"read model unavailable"} 503' ]
	"$CQRS_REPO/scripts/stack" up >/dev/null 2>&1
	rcli hset client:1 name Bob email bob@anemailprovider.com total 300000 last_purchase 1707484820 >/dev/null
	run -0 curl -s -w ' %{http_code}' -u "admin:$PW" "$URL/clients/1"
	[[ $output == *' 200' ]]
}

@test "SIGTERM: the request in flight is answered, then exit 0" {
	start_httpd "$BATS_TEST_TMPDIR/own"
	OWN_PID=$HTTPD_PID
	# An order that waits for a lock, so that it is in flight when SIGTERM comes.
	PGAPPNAME=httpd-locker psql -qX -c 'BEGIN' -c 'LOCK TABLE "order" IN ACCESS EXCLUSIVE MODE' \
		-c 'SELECT pg_sleep(3)' -c 'COMMIT' >/dev/null 2>&1 3>&- &
	LOCKER_PID=$!
	for i in $(seq 100); do
		[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'httpd-locker' AND query LIKE '%pg_sleep%'")" = 1 ] && break
		sleep 0.1
	done
	curl -s -w ' %{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' -d "$SAMPLE" \
		"http://127.0.0.1:$HTTPD_PORT/orders" >answer 3>&- &
	curl_pid=$!
	for i in $(seq 100); do
		[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cqrs-httpd' AND wait_event_type = 'Lock'")" = 1 ] && break
		sleep 0.1
	done
	kill -TERM "$OWN_PID"
	wait "$curl_pid"
	rc=0
	wait "$OWN_PID" || rc=$?
	OWN_PID=
	[ "$rc" -eq 0 ]
	[[ $(cat answer) == '{"statusCode":200,'*' 200' ]]
	[ "$(counts)" = "1|2|1|0" ]
	grep -q '^cqrs-httpd: stopped after 1 requests$' own.err
}

@test "SIGUSR1 and --stats: a JSON line of requests served and in flight; the server goes on" {
	start_httpd "$BATS_TEST_TMPDIR/own" --stats 0.2
	OWN_PID=$HTTPD_PID
	run -0 curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW" -H 'Content-Type: application/json' \
		-d "$SAMPLE" "http://127.0.0.1:$HTTPD_PORT/orders"
	[ "$output" = 200 ]
	kill -USR1 "$OWN_PID"
	for i in $(seq 100); do
		[ "$(grep -c '^{"time":' own.err)" -ge 3 ] && break
		sleep 0.05
	done
	line=$(grep '^{"time":' own.err | tail -n 1)
	[ "$(jq -r .prog <<<"$line")" = cqrs-httpd ]
	[ "$(jq .requests <<<"$line")" = 1 ]
	[ "$(jq .in_flight <<<"$line")" = 0 ]
	[ "$(jq -r '.requests_per_s | type' <<<"$line")" = number ]
	run -0 curl -s -o /dev/null -w '%{http_code}' -u "admin:$PW" "http://127.0.0.1:$HTTPD_PORT/clients/1"
	[ "$output" = 404 ]
	kill -TERM "$OWN_PID"
	rc=0
	wait "$OWN_PID" || rc=$?
	OWN_PID=
	[ "$rc" -eq 0 ]
	run -64 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" --stats 0
	[[ $stderr == *"--stats 0: want seconds from 0.1 to 86400"* ]]
}

@test "the access log: one line per request, method, path, status, microseconds; no credentials" {
	: >"$D/httpd.err.mark"
	before=$(wc -l <"$D/httpd.err")
	post "$SAMPLE"
	curl -s -o /dev/null -u "admin:$PW" "$URL/clients/1"
	curl -s -o /dev/null -u "admin:wr0ng-pw" "$URL/clients/1"
	sleep 0.2
	run -0 tail -n +$((before + 1)) "$D/httpd.err"
	[ "${#lines[@]}" -eq 3 ]
	[[ ${lines[0]} =~ ^cqrs-httpd:\ 127\.0\.0\.1\ POST\ /prod/orders\ 200\ [0-9]+us$ ]]
	[[ ${lines[1]} =~ ^cqrs-httpd:\ 127\.0\.0\.1\ GET\ /prod/clients/1\ 404\ [0-9]+us$ ]]
	[[ ${lines[2]} =~ ^cqrs-httpd:\ 127\.0\.0\.1\ GET\ /prod/clients/1\ 403\ [0-9]+us$ ]]
	run grep -c -e "$PW" -e wr0ng-pw -e "$KEY" -e "$BPW" "$D/httpd.err"
	[ "$output" = 0 ]
}

@test "htpasswd: plain text, \$apr1\$, a legacy hash, no users, a missing file: exit 78, the hash not shown" {
	printf 'admin:plaintext-pw\n' >h1
	run -78 --separate-stderr cqrs-httpd --htpasswd h1 -l 127.0.0.1:0
	[[ $stderr == "cqrs-httpd: h1:1: user admin: not a crypt(3) hash (plain-text passwords are refused"* ]]
	[[ $stderr != *plaintext-pw* ]]
	printf '# users\n\nadmin:%s\n' "$(openssl passwd -apr1 pw)" >h2
	run -78 --separate-stderr cqrs-httpd --htpasswd h2 -l 127.0.0.1:0
	[[ $stderr == "cqrs-httpd: h2:3: user admin: \$apr1\$"* ]]
	printf 'admin:%s\n' "$(openssl passwd -1 pw)" >h3
	run -78 --separate-stderr cqrs-httpd --htpasswd h3 -l 127.0.0.1:0
	[[ $stderr == "cqrs-httpd: h3:1: user admin: a legacy hash method"* ]]
	printf '# nobody\n' >h4
	run -78 --separate-stderr cqrs-httpd --htpasswd h4 -l 127.0.0.1:0
	run -78 --separate-stderr cqrs-httpd --htpasswd "$BATS_TEST_TMPDIR/missing" -l 127.0.0.1:0
}

@test "configuration: a malformed conninfo or Redis URL 78, -l in use 69, bad -l 64" {
	run -78 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" -l 127.0.0.1:0 -d 'host=/x bogus'
	run -78 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" -l 127.0.0.1:0 -r http://x
	run -69 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" -l "127.0.0.1:$PORT"
	run -64 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" -l localhost
	run -64 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" --prefix prod
	run -64 --separate-stderr cqrs-httpd
	[ "$stderr" = "$(printf 'usage: %s\n' "$(synopsis cqrs-httpd)" | sed 's/^usage: //; s/^/usage: /')" ] || [[ $stderr == "usage: cqrs-httpd "* ]]
}

@test "Redis refuses the password at start: 77; SIGINT: cqrs-httpd dies by the signal" {
	run -77 --separate-stderr cqrs-httpd --htpasswd "$D/htpasswd" -l 127.0.0.1:0 -r "unix://:wr0ng-pw@$CQRS_STACK_DIR/redis/redis.sock"
	[[ $stderr == "cqrs-httpd: redis: AUTH: "* ]]
	[[ $stderr != *wr0ng-pw* ]]
	start_httpd "$BATS_TEST_TMPDIR/own"
	OWN_PID=$HTTPD_PID
	post "$SAMPLE"
	kill -INT "$OWN_PID"
	rc=0
	wait "$OWN_PID" || rc=$?
	OWN_PID=
	[ "$rc" -eq 130 ]
}

@test "-h: help on stdout, exit 0; -V: the version" {
	run -0 --separate-stderr cqrs-httpd -h
	[[ ${lines[0]} == "usage: cqrs-httpd "* ]]
	[[ $output == *"--htpasswd FILE"* ]]
	[ -z "$stderr" ]
	run -0 --separate-stderr cqrs-httpd -V
	[[ $output =~ ^cqrs-httpd\ .*[0-9]+\.[0-9]+ ]]
}
