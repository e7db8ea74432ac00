#!/usr/bin/env bats
# event-fanout: every line to every subscriber, in order; ends, signals, limits.

load test_helper
bats_require_minimum_version 1.5.0

USAGE='usage: event-fanout [-hV] [--stats seconds] subscriber ...'

setup() {
	cd "$BATS_TEST_TMPDIR"
}

@test "every line reaches every subscriber, in order" {
	seq 1000 | sed 's/.*/{"id":&,"name":"Bob"}/' >input
	run -0 --separate-stderr timeout 10 event-fanout 'cat > a' 'cat > b' \
	    file:c <input
	[ -z "$stderr" ]
	[ -z "$output" ]
	cmp input a
	cmp input b
	cmp input c
}

@test "lines pass verbatim, not parsed; a last line gets its newline" {
	printf 'not json\n{"a":1, "a":2}\n\n\tlast' >input
	printf 'not json\n{"a":1, "a":2}\n\n\tlast\n' >want
	run -0 --separate-stderr timeout 10 event-fanout 'cat > a' file:b <input
	[ -z "$stderr" ]
	cmp want a
	cmp want b
}

@test "a file: subscriber appends and creates with 0666 less the umask" {
	echo old >c
	echo new | (umask 027 && timeout 10 event-fanout file:c file:d)
	[ "$(cat c)" = "$(printf 'old\nnew')" ]
	[ "$(stat -c %a d)" = 640 ]
}

@test "a lone line is delivered before stdin closes" {
	idle_input
	event-fanout 'cat > a' file:b <in 3>&- 4>&- &
	pid=$!
	echo '{"id":1}' >&4
	wait_for_file a
	wait_for_file b
	[ "$(cat a)" = '{"id":1}' ]
	[ "$(cat b)" = '{"id":1}' ]
	kill -0 "$pid"		# stdin is still open: still running
	exec 4>&-
	wait_job "$pid"
	[ "$rc" -eq 0 ]
}

@test "backpressure: a slow subscriber gets everything, memory stays bounded" {
	head -c 15000000 /dev/urandom | base64 -w 200 >input	# 20 MB
	run -0 --separate-stderr timeout 30 /usr/bin/time -f %M -o rss \
	    event-fanout 'sleep 1; cat > slow' 'cat > fast' <input
	[ -z "$stderr" ]
	cmp input slow
	cmp input fast
	rss_below 10240 rss
}

@test "a subscriber that exits while the stream is idle: 75 at once, named" {
	idle_input
	# The second waits for the first to be running: then it is stopped, not lost.
	run -75 --separate-stderr timeout 10 event-fanout 'cat > a' \
	    'until [ -e a ]; do sleep 0.01; done; exit 3' <in 4>&-
	[ "$stderr" = "event-fanout: subscriber 2 (until [ -e a ]; do sleep 0.01; done; exit 3): exited with status 3" ]
	[ -e a ]
}

@test "a subscriber that stops early with status 0 still gives 75" {
	idle_input
	printf '{"id":1}\n{"id":2}\n' >&4
	run -75 --separate-stderr timeout 10 event-fanout 'cat > a' \
	    'head -n 1 > first; until [ "$(wc -l 2>/dev/null < a)" = 2 ]; do sleep 0.01; done' <in 4>&-
	[ "$stderr" = "event-fanout: subscriber 2 (head -n 1 > first; until [ \"\$(wc -l 2>/dev/null < a)\" = 2 ]; do sleep 0.01; done): exited with status 0" ]
	[ "$(cat first)" = '{"id":1}' ]
	[ "$(cat a)" = "$(printf '{"id":1}\n{"id":2}')" ]
}

@test "a subscriber killed by a signal is reported as such" {
	idle_input
	run -75 --separate-stderr timeout 10 event-fanout 'cat > /dev/null' \
	    'kill -9 $$' <in 4>&-
	[ "$stderr" = 'event-fanout: subscriber 2 (kill -9 $$): killed by signal 9' ]
}

@test "a subscriber that fails at the end of input gives 75" {
	run -75 --separate-stderr timeout 10 event-fanout 'cat > a' \
	    'cat > /dev/null; exit 5' <<<'{"id":1}'
	[ "$stderr" = 'event-fanout: subscriber 2 (cat > /dev/null; exit 5): exited with status 5' ]
	[ "$(cat a)" = '{"id":1}' ]
}

@test "a file: subscriber whose write fails gives 75" {
	run -75 --separate-stderr timeout 10 event-fanout 'cat > a' \
	    file:/dev/full <<<'{"id":1}'
	[ "$stderr" = 'event-fanout: subscriber 2 (file:/dev/full): No space left on device' ]
}

@test "SIGTERM is passed on; all exit 0 gives 0" {
	idle_input
	event-fanout 'trap "echo TERM > got; exit 0" TERM; echo > ready1; cat > a' \
	    'trap "echo TERM > got2; exit 0" TERM; echo > ready2; cat > b' \
	    <in 3>&- 4>&- 2>err &
	pid=$!
	echo '{"id":1}' >&4
	wait_for_file ready1
	wait_for_file ready2
	wait_for_file a
	kill -TERM "$pid"	# event-fanout only, not its subscribers
	wait_job "$pid"
	[ "$rc" -eq 0 ]
	# A shell that traps TERM may say its cat was terminated; nothing failed.
	run ! grep event-fanout err
	[ "$(cat got)" = TERM ]
	[ "$(cat got2)" = TERM ]
	[ "$(cat a)" = '{"id":1}' ]
}

@test "SIGINT is passed on to each subscriber's process group; they end, and event-fanout dies by it" {
	idle_input
	event-fanout 'trap "" INT; cat > /dev/null' 'echo > ready; sleep 30 | cat' \
	    <in 3>&- 4>&- 2>err &
	pid=$!
	wait_for_file ready
	kill -INT "$pid"
	wait_job "$pid"
	[ "$rc" -eq 130 ]
	# Killed by the signal passed on is how a subscriber should end.
	[ ! -s err ]
	# The sleep of the second subscriber's pipeline got it too.
	run ! pgrep -f '^sleep 30$'
}

@test "no line length limit: a line of 1.1 MiB passes intact, with the lines around it" {
	{
		echo '{"id":1}'
		head -c 1100000 /dev/zero | tr '\0' x
		echo
		echo '{"id":3}'
	} >input
	run -0 --separate-stderr timeout 10 event-fanout 'cat > a' 'cat > b' <input
	cmp input a
	cmp input b
	[ -z "$stderr" ]
}

@test "a subscriber's command shows in messages with its passwords masked" {
	# One subscriber per run: which of two ends first, and how, is up to the scheduler.
	run -75 --separate-stderr timeout 10 event-fanout \
	    'exit 3; client-project -r redis://:S3cr3tPW@127.0.0.1:1' </dev/null
	[[ $stderr == *'subscriber 1 (exit 3; client-project -r redis://:***@127.0.0.1:1): exited with status 3'* ]]
	[[ $stderr != *S3cr3tPW* ]]
	run -75 --separate-stderr timeout 10 event-fanout \
	    "exit 4; outbox-clean -d 'host=x password=S3cr3tPW'" </dev/null
	[[ $stderr == *"subscriber 1 (exit 4; outbox-clean -d 'host=x password=***'): exited with status 4"* ]]
	[[ $stderr != *S3cr3tPW* ]]
}

@test "a read error on stdin gives 74" {
	run -74 --separate-stderr timeout 10 event-fanout 'cat > a' </
	[ "$stderr" = 'event-fanout: stdin: Is a directory' ]
	[ -e a ]
}

@test "no operand: 64 and the usage line" {
	run -64 --separate-stderr event-fanout
	[ "$stderr" = "$USAGE" ]
	[ -z "$output" ]
}

@test "-h: 0 and the help on stdout" {
	run -0 --separate-stderr event-fanout -h
	[ -z "$stderr" ]
	[ "${lines[0]}" = "$USAGE" ]
	run -0 --separate-stderr event-fanout --help cat
	[ "${lines[0]}" = "$USAGE" ]
}

@test "an unknown option: 64" {
	run -64 --separate-stderr event-fanout -x cat
	[ "${stderr##*$'\n'}" = "$USAGE" ]
}

@test "-V prints a version" {
	run -0 --separate-stderr event-fanout -V
	[[ "$output" =~ ^event-fanout\ \(cqrs-pipes\)\ [0-9]+\.[0-9]+ ]]
	[ -z "$stderr" ]
}

@test "a file: that cannot be opened gives 74; started subscribers are waited for" {
	run -74 --separate-stderr timeout 10 event-fanout \
	    'cat > /dev/null; echo done > waited' file:nodir/x <<<'{"id":1}'
	[ "$stderr" = 'event-fanout: subscriber 2 (file:nodir/x): No such file or directory' ]
	[ "$(cat waited)" = done ]
}

@test "a command that cannot be started gives 69" {
	subs=()
	for i in $(seq 20); do
		subs+=('cat > /dev/null')
	done
	# Too few file descriptors for a pipe to every subscriber.
	run -69 --separate-stderr bash -c \
	    'ulimit -n 12 && exec timeout 10 event-fanout "$@"' - "${subs[@]}" \
	    </dev/null
	want='^event-fanout: subscriber [0-9]+ \(cat > /dev/null\): pipe: '
	[[ "$stderr" =~ $want'Too many open files'$ ]]
}

@test "subscribers do not hold each other's input open" {
	# Were the first pipe inherited by the second subscriber, the first
	# would never see end of file and this would time out.
	run -0 --separate-stderr timeout 10 event-fanout 'cat > a; echo > a.done' \
	    'cat > /dev/null; until [ -e a.done ]; do sleep 0.05; done' <<<'{"id":1}'
	[ -e a.done ]
}
