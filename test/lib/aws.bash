# aws.bash: the SNS/SQS stand-in for the tests: fauxqs behind a SigV4 verifier on 127.0.0.1, and AWS variables pointing at it.
#
# aws_setup_file starts test/aws/standin.mjs (installing fauxqs from
# test/aws/package-lock.json first when node_modules is missing) and
# exports credentials of the test, region eu-west-1, AWS_ENDPOINT_URL,
# and shared files that do not exist, so that nothing of the machine's
# own AWS set-up is read and no request leaves 127.0.0.1 (instance
# metadata is disabled).  Every request the verifier refuses goes to
# $AWS_DIR/rejected.log: aws_no_rejections (in each teardown) fails the
# test if any request was refused that the test did not take with
# take_rejections.

AWS_TEST_KEY=AKIDCQRSTEST0000001
AWS_TEST_SECRET=cqrs/test+Secret0000000000000000000000001

# require_node: node >= 20 and the stand-in's npm packages, installed once.
# Where the system's node is older (Debian 12 has 18, on which fauxqs
# cannot start), Node.js 20 comes from the npm registry, pinned in
# test/aws/node20/package-lock.json, and goes first on PATH.  Without npm:
# under CI=true fail; otherwise export AWS_SKIP, the reason, and aws_env
# skips each test with it (bats 1.8 cannot skip in setup_file: it reports
# the file as failed).
require_node() {
	local why= n20=$CQRS_REPO/test/aws/node20
	node_ok() { command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; }
	if ! node_ok && [ -x "$n20/node_modules/.bin/node" ]; then
		PATH=$n20/node_modules/.bin:$PATH
	fi
	if ! command -v npm >/dev/null; then
		node_ok && [ -f "$CQRS_REPO/test/aws/node_modules/fauxqs/package.json" ] && return 0
		why="npm is not installed"
	elif ! node_ok; then
		npm ci --prefix "$n20" --no-audit --no-fund --loglevel=error >&2 || return 1
		PATH=$n20/node_modules/.bin:$PATH
		node_ok || why="node 20 from test/aws/node20 does not run here"
	fi
	export PATH
	if [ -n "$why" ]; then
		if [ "${CI:-}" = true ]; then
			echo "require_node: $why (CI=true: failing, not skipping)" >&2
			return 1
		fi
		export AWS_SKIP=$why
		return 0
	fi
	[ -f "$CQRS_REPO/test/aws/node_modules/fauxqs/package.json" ] ||
		npm ci --prefix "$CQRS_REPO/test/aws" --no-audit --no-fund --loglevel=error >&2
}

aws_setup_file() {
	require_node || return 1
	[ -z "${AWS_SKIP:-}" ] || return 0
	AWS_DIR=$BATS_FILE_TMPDIR/aws
	mkdir -p "$AWS_DIR"
	echo "$AWS_TEST_KEY $AWS_TEST_SECRET" >"$AWS_DIR/keys"
	node "$CQRS_REPO/test/aws/standin.mjs" "$AWS_DIR" eu-west-1 \
		>"$AWS_DIR/standin.log" 2>&1 &
	echo $! >"$AWS_DIR/standin.pid"
	local i
	for i in $(seq 200); do
		[ -s "$AWS_DIR/port" ] && break
		sleep 0.05
	done
	[ -s "$AWS_DIR/port" ] || { cat "$AWS_DIR/standin.log" >&2; return 1; }
	AWS_PORT=$(cat "$AWS_DIR/port")
	export AWS_DIR AWS_PORT
	aws_env
}

# aws_env: the variables of the test's AWS set-up, none of the machine's.
aws_env() {
	[ -z "${AWS_SKIP:-}" ] || skip "$AWS_SKIP"
	export AWS_ACCESS_KEY_ID=$AWS_TEST_KEY AWS_SECRET_ACCESS_KEY=$AWS_TEST_SECRET
	export AWS_REGION=eu-west-1 AWS_ENDPOINT_URL=http://127.0.0.1:$AWS_PORT
	export AWS_EC2_METADATA_DISABLED=true
	export AWS_CONFIG_FILE=$AWS_DIR/no-config AWS_SHARED_CREDENTIALS_FILE=$AWS_DIR/no-credentials
	unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_REGION AWS_ENDPOINT_URL_SNS AWS_ENDPOINT_URL_SQS \
		AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
		AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \
		AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
}

aws_teardown_file() {
	local p
	[ -n "${AWS_DIR:-}" ] || return 0	# setup_file skipped before making it
	p=$(cat "$AWS_DIR/standin.pid" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null || true
	p=$(cat "$AWS_DIR/creds.pid" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null || true
}

# aws_no_rejections: fail if the verifier refused a request the test did not expect.
aws_no_rejections() {
	[ -n "${AWS_DIR:-}" ] || return 0
	if [ -s "$AWS_DIR/rejected.log" ]; then
		echo "the SigV4 verifier refused requests:" >&2
		cat "$AWS_DIR/rejected.log" >&2
		mv "$AWS_DIR/rejected.log" "$AWS_DIR/rejected.log.seen"
		return 1
	fi
}

# take_rejections: print the refusals so far and clear them (they were expected).
take_rejections() {
	cat "$AWS_DIR/rejected.log" 2>/dev/null || true
	rm -f "$AWS_DIR/rejected.log"
}

# sq ACTION JSON, sn ACTION JSON: an SQS or SNS call straight to the emulator (set-up only).
sq() {
	curl -sf -XPOST "http://127.0.0.1:$AWS_PORT/_standin/sqs/$1" -d "${2:-{\}}"
}
sn() {
	curl -sf -XPOST "http://127.0.0.1:$AWS_PORT/_standin/sns/$1" -d "${2:-{\}}"
}

# make_queue NAME [ATTRIBUTES-JSON]: create a queue; print its URL.
make_queue() {
	sq CreateQueue "{\"QueueName\":\"$1\",\"Attributes\":${2:-{\}}}" | jq -er .QueueUrl
}

# make_topic NAME [ATTRIBUTES-JSON]: create a topic; print its ARN.
make_topic() {
	local a=
	[ -n "${2:-}" ] && a=$(jq -r 'to_entries | to_entries | map(",\"Attributes.entry.\(.key + 1).key\":\"\(.value.key)\",\"Attributes.entry.\(.key + 1).value\":\"\(.value.value)\"") | join("")' <<<"$2")
	sn CreateTopic "{\"Name\":\"$1\"$a}" | sed -n 's|.*<TopicArn>\(.*\)</TopicArn>.*|\1|p'
}

# subscribe TOPIC-ARN QUEUE-NAME: the queue gets the topic's messages, in SNS envelopes.
subscribe() {
	sn Subscribe "{\"TopicArn\":\"$1\",\"Protocol\":\"sqs\",\"Endpoint\":\"arn:aws:sqs:eu-west-1:000000000000:$2\"}" >/dev/null
}

# send QUEUE-URL BODY: put one message in a queue (set-up only).
send() {
	sq SendMessage "$(jq -nc --arg u "$1" --arg b "$2" '{QueueUrl: $u, MessageBody: $b}')" >/dev/null
}

# bodies NAME: the bodies of the messages of queue NAME, ready or in flight, one a line.
bodies() {
	curl -sf "http://127.0.0.1:$AWS_PORT/_standin/queue/$1" |
		jq -r '(.messages.ready + .messages.delayed)[].body, .messages.inflight[].message.body'
}

# messages NAME: how many messages queue NAME holds.
messages() {
	curl -sf "http://127.0.0.1:$AWS_PORT/_standin/queue/$1" |
		jq '.messages.ready + .messages.delayed + .messages.inflight | length'
}

# fault JSON: the stand-in's next answers to an action fail (see standin.mjs).
fault() {
	curl -sf -XPOST "http://127.0.0.1:$AWS_PORT/_standin/fault" -d "$1" >/dev/null
}

# creds_server: start test/aws/creds.mjs in $AWS_DIR/creds; CREDS_PORT.
creds_server() {
	local d=$AWS_DIR/creds i
	[ -s "$AWS_DIR/creds.pid" ] && kill "$(cat "$AWS_DIR/creds.pid")" 2>/dev/null
	mkdir -p "$d"
	rm -f "$d/creds-port" "$d/fetch.log" "$d/auth" "$d/ttl"
	node "$CQRS_REPO/test/aws/creds.mjs" "$d" >"$d/log" 2>&1 &
	echo $! >"$AWS_DIR/creds.pid"
	for i in $(seq 200); do
		[ -s "$d/creds-port" ] && break
		sleep 0.05
	done
	CREDS_PORT=$(cat "$d/creds-port")
	CREDS_DIR=$d
}

# wait_until 'SHELL CODE': evaluate it every 50 ms until it succeeds, for up to
# 30 s (in single quotes, so that what it reads is read again each time).
wait_until() {
	local i
	for i in $(seq 600); do
		eval "$*" && return 0
		sleep 0.05
	done
	echo "wait_until: '$*' still false after 30 s" >&2
	return 1
}
