#!/usr/bin/env bats
# prg: progress lines (common/prg) through test/lib/prg-test: one JSON line of counts and rates on SIGUSR1 or every --stats seconds, and the command goes on.

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	PRG=${CQRS_BIN:-$CQRS_REPO/bin}/test/prg-test
	[ -x "$PRG" ] || { echo "no $PRG: run make" >&2; return 1; }
	cd "$BATS_TEST_TMPDIR"
	PID=
}

teardown() {
	[ -z "$PID" ] || kill -KILL "$PID" 2>/dev/null || true
	exec 4>&- 2>/dev/null || true
	return 0
}

# start ARGS...: prg-test ARGS in the background, stdin from the idle fifo
# "in" (held open on fd 4), stdout to "out", stderr to "err".
start() {
	idle_input
	"$PRG" "$@" <in >out 2>err 4>&- 3>&- &
	PID=$!
	# Ready for SIGUSR1 once its handler is in place.
	wait_until 10 sig_caught "$PID" 10
}

# nlines FILE: the number of lines in FILE.
nlines() {
	wc -l <"$1"
}

# has_lines FILE N: FILE has at least N lines.
has_lines() {
	[ "$(nlines "$1")" -ge "$2" ]
}

# wait_until SECONDS CMD...: CMD every 50 ms until it succeeds.
wait_until() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 20; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	echo "wait_until: '$*' still failing after $secs s" >&2
	return 1
}

# The shape of every line: these members, in this order, and nothing else.
SHAPE='keys_unsorted == ["time","prog","pid","elapsed_s","lines","lines_per_s","bytes","bytes_per_s","partial_bytes"]
	and (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"))
	and .prog == "prg-test" and (.elapsed_s | type) == "number" and .elapsed_s >= 0
	and ([.lines, .bytes, .partial_bytes] | all(type == "number" and . >= 0 and . == floor))'

@test "the module's argument checks (names, limits, --stats values, timeouts)" {
	run -0 "$PRG" --selftest
	[ -z "$output" ]
}

@test "SIGUSR1 prints one JSON line of counts so far on stderr and the command goes on to the right result" {
	start
	printf 'one\ntwo\nthr' >&4
	# Nothing is printed unasked.
	sleep 0.3
	[ ! -s err ]
	kill -USR1 "$PID"
	wait_until 10 has_lines err 1
	kill -0 "$PID"
	line=$(sed -n 1p err)
	jq -e "$SHAPE" <<<"$line"
	# The rate is the count over the time so far (to rounding).
	jq -e --argjson pid "$PID" '.pid == $pid and .lines == 2 and .bytes == 11 and .partial_bytes == 3
		and .elapsed_s > 0
		and ((.lines_per_s - .lines / .elapsed_s) | fabs) <= 0.01 + .lines / .elapsed_s / 100
		and ((.bytes_per_s - .bytes / .elapsed_s) | fabs) <= 0.01 + .bytes / .elapsed_s / 100' <<<"$line"
	printf 'ee\nfour\n' >&4
	kill -USR1 "$PID"
	wait_until 10 has_lines err 2
	jq -e '.lines == 4 and .bytes == 19 and .partial_bytes == 0' <<<"$(sed -n 2p err)"
	# The second line comes later than the first.
	[[ $(sed -n 2p err | jq -r .time) > $(sed -n 1p err | jq -r .time) ]] ||
		[[ $(sed -n 2p err | jq -r .time) == $(sed -n 1p err | jq -r .time) ]]
	exec 4>&-
	wait_job "$PID"
	PID=
	[ "$rc" -eq 0 ]
	[ "$(cat out)" = "4 lines, 19 bytes" ]
	[ "$(nlines err)" -eq 2 ]
}

@test "--stats: a line every interval, never early, while the input is idle and while it flows" {
	start --stats 0.2
	wait_until 20 has_lines err 3
	printf 'a\nb\n' >&4
	wait_until 20 grep -q '"lines":2,' err
	exec 4>&-
	wait_job "$PID"
	PID=
	[ "$rc" -eq 0 ]
	[ "$(cat out)" = "2 lines, 4 bytes" ]
	# Every line is whole and well-formed; the k-th (from 1) comes no
	# earlier than k intervals after the start (late ones are skipped,
	# never bunched), and the clocks never go back.
	jq -se 'length >= 4 and all(.[]; '"$SHAPE"')' err
	jq -se '. as $all | [range(length) as $k | ($all[$k].elapsed_s * 1000 | round) >= ($k + 1) * 200] | all' err || { cat err; false; }
	jq -se '[.[].elapsed_s] | . == sort' err
	jq -se '[.[].time] | . == sort' err
	jq -se 'first.lines == 0 and last.lines == 2 and last.bytes == 4' err
}

@test "--stats takes seconds from 0.1 to 86400; anything else is a usage error" {
	for bad in 0 0.05 -1 86401 1s '' nan inf ' 2'; do
		run -64 --separate-stderr "$PRG" --stats "$bad"
		[[ $stderr == "prg-test: --stats $bad: want seconds from 0.1 to 86400" ]] ||
			{ echo "--stats '$bad': $stderr"; false; }
	done
	run -0 --separate-stderr "$PRG" --stats 86400 </dev/null
	[ "$output" = "0 lines, 0 bytes" ]
	[ -z "$stderr" ]
	run -0 --separate-stderr "$PRG" -h
	[[ $output == "usage: prg-test"* ]]
	run -64 --separate-stderr "$PRG" extra
}

@test "many signals while data flows: every line whole, and the result right" {
	start
	for i in $(seq 30); do
		seq 1000 >&4
		kill -USR1 "$PID"
	done
	wait_until 10 has_lines err 1
	exec 4>&-
	wait_job "$PID"
	PID=
	[ "$rc" -eq 0 ]
	[ "$(cat out)" = "30000 lines, $((30 * $(seq 1000 | wc -c))) bytes" ]
	[ "$(nlines err)" -ge 1 ]
	jq -se 'all(.[]; '"$SHAPE"') and ([.[].lines] | . == sort)' err
}
