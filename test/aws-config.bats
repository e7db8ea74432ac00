#!/usr/bin/env bats
# aws-config: the SigV4 verifier on AWS's test vectors; AWS configuration as the SDKs read it: shared files, endpoints, container credentials, IMDSv2, renewal.

bats_require_minimum_version 1.5.0
load test_helper
load lib/aws

setup_file() {
	aws_setup_file
}

teardown_file() {
	aws_teardown_file
}

setup() {
	aws_env
	cd "$BATS_TEST_TMPDIR"
	QN=q$BATS_TEST_NUMBER
	Q=$(make_queue "$QN")
	printf '{"id":1,"id_client":1,"__table":"public.order_event","__lsn":100,"__seq":0}\n' >in
}

teardown() {
	aws_no_rejections
}

@test "the verifier recomputes AWS's published SigV4 test vectors, and refuses each once altered" {
	run -0 node "$CQRS_REPO/test/aws/vectors.mjs" "$CQRS_REPO/test/vectors/sigv4.json"
	[[ ${lines[-1]} == "18 vectors: "*" passed, 0 failed" ]]
}

@test "a static profile of the credentials file, chosen by AWS_PROFILE, with its region in the config file" {
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
	printf '# comment\n[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n[cqrs]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
		"$AWS_TEST_KEY" "$AWS_TEST_SECRET" >credentials
	printf '[profile cqrs]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 4\n' >config
	export AWS_SHARED_CREDENTIALS_FILE=$PWD/credentials AWS_CONFIG_FILE=$PWD/config AWS_PROFILE=cqrs
	run -0 --separate-stderr event-publish "$Q" <in
	[ "$(messages "$QN")" = 1 ]
	# The queue names its region; a topic ARN does too, whatever is configured.
	export AWS_REGION=us-east-1
	run -0 --separate-stderr event-publish "$Q" <in
	[ "$(messages "$QN")" = 2 ]
}

@test "static keys in the config file's [default], and a services section for the endpoint" {
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL
	printf '[default]\nregion = eu-west-1\nservices = local\naws_access_key_id = %s\naws_secret_access_key = %s\n\n[services local]\nsqs =\n  endpoint_url = http://127.0.0.1:%s\n' \
		"$AWS_TEST_KEY" "$AWS_TEST_SECRET" "$AWS_PORT" >config
	export AWS_CONFIG_FILE=$PWD/config
	run -0 --separate-stderr event-publish "$Q" <in
	[ "$(messages "$QN")" = 1 ]
	# AWS_ENDPOINT_URL_SQS wins over the file; a bad one is 78.
	export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$AWS_PORT/path
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"AWS_ENDPOINT_URL_SQS: the endpoint must be scheme://host[:port] with no user, path or query"* ]]
}

@test "configuration errors are 78, naming what is wrong and never a secret" {
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"no AWS credentials: none in the environment"* ]]
	export AWS_PROFILE=nosuch
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"AWS_PROFILE: profile \"nosuch\" is in neither"* ]]
	printf '[profile sso]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n' >config
	export AWS_CONFIG_FILE=$PWD/config AWS_PROFILE=sso
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"profile sso: role_arn is not supported"* ]]
	printf '[default]\naws_access_key_id = %s\nthis line is wrong\n' "$AWS_TEST_KEY" >config
	unset AWS_PROFILE
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"config:3: neither a [section] nor a key = value line"* ]] || { echo "$stderr"; false; }
	aws_env
	export AWS_SECRET_ACCESS_KEY=
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"* ]]
	aws_env
	unset AWS_REGION
	run -78 --separate-stderr event-publish "http://127.0.0.1:$AWS_PORT/000000000000/$QN" <in
	[[ $stderr == *"no AWS region"* ]]
}

@test "a session token is sent and signed; a wrong one is 77 InvalidClientTokenId" {
	echo "AKIDCQRSTEMP00000001 temp/Secret+1 tok3n/with+chars=" >>"$AWS_DIR/keys"
	export AWS_ACCESS_KEY_ID=AKIDCQRSTEMP00000001 AWS_SECRET_ACCESS_KEY=temp/Secret+1 AWS_SESSION_TOKEN=tok3n/with+chars=
	run -0 --separate-stderr event-publish "$Q" <in
	export AWS_SESSION_TOKEN=other
	run -77 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *InvalidClientTokenId* ]]
	[[ $stderr != *other* && $stderr != *temp/Secret* ]]
	[[ $(take_rejections) == "InvalidClientTokenId sqs SendMessageBatch "* ]]
}

@test "container credentials: the full URI on loopback, the token from its file; a refused token is 77, plain http elsewhere 78" {
	creds_server
	echo "AKIDCQRSCONT00000001 cont/Secret+1 conttoken1" >>"$AWS_DIR/keys"
	echo "AKIDCQRSCONT00000001 cont/Secret+1 conttoken1" >"$CREDS_DIR/issue"
	echo "Bearer s3cret-auth" >"$CREDS_DIR/auth"
	echo "Bearer s3cret-auth" >tokenfile
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:$CREDS_PORT/container
	export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$PWD/tokenfile
	run -0 --separate-stderr event-publish "$Q" <in
	grep -q '^AKIDCQRSCONT00000001 sqs SendMessageBatch$' "$AWS_DIR/accepted.log"
	echo "Bearer wrong" >tokenfile
	run -77 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"container credentials: http://127.0.0.1:$CREDS_PORT/container: HTTP 403"* ]]
	[[ $stderr != *Bearer* ]]
	export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://192.0.2.1/creds
	run -78 --separate-stderr event-publish "$Q" <in
	[[ $stderr == *"AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http only to a loopback"* ]]
}

@test "instance metadata, IMDSv2: a session token first, then the role's credentials" {
	creds_server
	echo "AKIDCQRSIMDS00000001 imds/Secret+1 imdstoken1" >>"$AWS_DIR/keys"
	echo "AKIDCQRSIMDS00000001 imds/Secret+1 imdstoken1" >"$CREDS_DIR/issue"
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED
	export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$CREDS_PORT
	run -0 --separate-stderr event-publish "$Q" <in
	[ "$(cat "$CREDS_DIR/fetch.log")" = "imds token
imds AKIDCQRSIMDS00000001" ]
	grep -q '^AKIDCQRSIMDS00000001 sqs SendMessageBatch$' "$AWS_DIR/accepted.log"
}

@test "credentials that expire are fetched again before they do, while event-consume runs" {
	creds_server
	printf 'AKIDCQRSROT000000001 rot/Secret+1 rottoken1\nAKIDCQRSROT000000002 rot/Secret+2 rottoken2\n' >"$CREDS_DIR/issue"
	cat "$CREDS_DIR/issue" >>"$AWS_DIR/keys"
	echo 302 >"$CREDS_DIR/ttl"	# renewed when less than 300 s remain
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:$CREDS_PORT/container
	event-consume "$Q" >out 2>err &
	pid=$!
	wait_until 'grep -q "^AKIDCQRSROT000000001 sqs ReceiveMessage" "$AWS_DIR/accepted.log"' || { cat err "$CREDS_DIR/fetch.log"; false; }
	sleep 3	# the first credentials are now due for renewal
	send "$Q" '{"id":9,"id_client":1}'
	wait_until '[ -s out ]'
	wait_until 'grep -q "^AKIDCQRSROT000000002 sqs " "$AWS_DIR/accepted.log"'
	kill -TERM "$pid"
	wait "$pid"
	[ "$(jq .id out)" = 9 ]
	[ "$(grep -c '^container AKIDCQRSROT' "$CREDS_DIR/fetch.log")" -ge 2 ]
}
