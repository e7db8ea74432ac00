#!/usr/bin/env bats
# demo: make demo's script on a stack of its own: Bob's order through the pipeline, then the sample's two curl commands through cqrs-httpd.

bats_require_minimum_version 1.5.0
load test_helper

@test "scripts/demo: the order reaches the read model, the outbox empties, the HTTP API answers; nothing is left running" {
	export CQRS_DEMO_DIR=$BATS_TEST_TMPDIR/demo
	run -0 --separate-stderr timeout 300 "$CQRS_REPO/scripts/demo"
	[[ $output == *'{"name":"Bob","email":"bob@anemailprovider.com","total":3000.0,'*'"id_client":1}'* ]]
	[[ $output == *'{"statusCode":200,"body":"Order created successfully!","id_order":2,"id_client":1,"order_total":3000.00,'* ]]
	[[ $output == *'"total":6000.0,'* ]]
	[[ $output == *'{"message":"Unauthorized"} (HTTP 401)'* ]]
	[[ $stderr == *"demo: done"* ]]
	# The demo stack is gone, and with it its servers.
	[ ! -e "$CQRS_DEMO_DIR" ]
	! pgrep -f "$CQRS_DEMO_DIR" >/dev/null
}
