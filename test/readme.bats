#!/usr/bin/env bats
# readme: every shell block of README.md runs as pasted or is marked; output is in blocks of its own; the command table is complete.
#
# The README's convention, for fenced blocks (``` and an info string):
#
#   ```sh           shell commands: this suite runs them all, in the order
#                   of the README, in one bash (-e, pipefail) as if pasted
#                   into one shell, in a directory where bin/, scripts/ and
#                   the rest of the checkout are, with bin/ not on PATH,
#                   against the suite's own stack ($CQRS_STACK_DIR); they
#                   must exit 0
#   ```sh no-test   shell commands this suite only checks with bash -n:
#                   they need root (apt-get, make install), AWS, Kafka, a
#                   server that keeps running, or they are the long test
#                   runs themselves (make check); scripts/clean-room runs
#                   the fresh-machine ones
#   ```text         output, or a file that is not a shell's (pg_hba.conf)
#   ```sql ```ini ```crontab   what the name says
#
# and no indented (4-space) code blocks, whose kind nobody could tell.

load test_helper
bats_require_minimum_version 1.5.0

README=$CQRS_REPO/README.md

# blocks DIR: write each fenced block of the README to DIR/N (dedented),
# its info string to DIR/N.info, and its first line's number to DIR/N.line.
blocks() {
	awk -v dir="$1" '
		match($0, /^ *```/) {
			if (!inb) {
				inb = 1; n++; ind = RLENGTH - 3
				info = substr($0, RLENGTH + 1)
				print info > (dir "/" n ".info"); close(dir "/" n ".info")
				print NR > (dir "/" n ".line"); close(dir "/" n ".line")
				printf "" > (dir "/" n)
			} else {
				inb = 0; close(dir "/" n)
			}
			next
		}
		inb { print substr($0, ind + 1) >> (dir "/" n) }
	' "$README"
}

setup_file() {
	stack_setup_file
	B=$BATS_FILE_TMPDIR/blocks
	mkdir -p "$B"
	blocks "$B"
	# The directory the blocks run in: the checkout, with the binaries
	# and objects of this run (bin-asan under check-asan).
	W=$BATS_FILE_TMPDIR/w
	mkdir -p "$W"
	local bin build f
	bin=${CQRS_BIN:-$CQRS_REPO/bin}
	build=$(dirname "$bin")/$(basename "$bin" | sed 's/^bin/build/')
	for f in "$CQRS_REPO"/*; do
		case ${f##*/} in bin | build | bin-* | build-* | bench-results) ;; *) ln -s "$f" "$W/" ;; esac
	done
	ln -s "$bin" "$W/bin"
	ln -s "$build" "$W/build"
	export B W
}

teardown_file() {
	"$CQRS_REPO/scripts/pipeline" stop >/dev/null 2>&1 || true
	stack_teardown_file
}

# ids INFO: the numbers of the blocks whose info string is INFO.
ids() {
	local f
	for f in "$B"/*.info; do
		[ "$(cat "$f")" = "$1" ] && basename "$f" .info
	done | sort -n
}

@test "every fenced block is marked sh, sh no-test, text, sql, ini or crontab, and none is indented" {
	local f info bad=
	for f in "$B"/*.info; do
		info=$(cat "$f")
		case $info in
		sh | "sh no-test" | text | sql | ini | crontab) ;;
		*) bad="$bad line $(cat "${f%.info}.line"): '$info';" ;;
		esac
	done
	[ -z "$bad" ] || { echo "unmarked or unknown blocks:$bad"; false; }
	[ -n "$(ids sh)" ]
	[ -n "$(ids 'sh no-test')" ]
	# An indented code block: 4 spaces after a blank line, outside fences.
	run -0 awk '/^ *```/ { f = !f; next } !f && prev == "" && /^    / { print NR ": " $0 } { prev = $0 }' "$README"
	[ -z "$output" ] || { echo "indented code blocks:"; echo "$output"; false; }
}

@test "every shell block is valid bash and holds no output lines" {
	local n
	for n in $(ids sh) $(ids 'sh no-test'); do
		bash -n "$B/$n" || { echo "block at line $(cat "$B/$n.line"): bash -n fails"; false; }
		# Output in a command block: a JSON line, or a prompt.
		! grep -n '^{"\|^\$ ' "$B/$n" || { echo "block at line $(cat "$B/$n.line") holds output"; false; }
	done
}

@test "the sh blocks run as pasted, in order, against the suite's stack; the flow prints what the README shows" {
	require_tool mandoc
	local n script=$BATS_FILE_TMPDIR/pasted
	# As pasted in order into one shell: one bash for all the blocks, each
	# block's output in files of its own, and the built commands not on
	# PATH (the README's export puts them there).
	echo 'set -e -o pipefail' >"$script"
	for n in $(ids sh); do
		{
			echo "echo $n >$BATS_FILE_TMPDIR/at"
			echo "{"
			cat "$B/$n"
			echo "} >$BATS_FILE_TMPDIR/out.$n 2>$BATS_FILE_TMPDIR/out.$n.err"
		} >>"$script"
		grep -q '^client-get 1$' "$B/$n" && flow=$n
	done
	cd "$W"
	PATH=$(tr : '\n' <<<"$PATH" | grep -vxF -e "$CQRS_REPO/bin" -e "${CQRS_BIN:-$CQRS_REPO/bin}" | paste -sd:) \
		bash "$script" || {
		n=$(cat "$BATS_FILE_TMPDIR/at")
		echo "block at README line $(cat "$B/$n.line") failed:"
		cat "$B/$n" "$BATS_FILE_TMPDIR/out.$n" "$BATS_FILE_TMPDIR/out.$n.err"
		false
	}
	[ -n "${flow:-}" ]
	# Its output block is the next block, marked text: the same lines,
	# with the same fields in the same order, the same totals.
	want=$B/$((flow + 1))
	[ "$(cat "$want.info")" = text ]
	got=$BATS_FILE_TMPDIR/out.$flow
	[ "$(wc -l <"$got")" -eq "$(wc -l <"$want")" ]
	run -0 diff <(jq -c 'keys_unsorted' "$want") <(jq -c 'keys_unsorted' "$got")
	run -0 diff <(jq -c '[.order_total, .total, .name, .id_client]' "$want") \
		<(jq -c '[.order_total, .total, .name, .id_client]' "$got")
	# client-get's line ends with the client's id.
	[[ $(tail -n 1 "$got") == *'"id_client":1}' ]]
}

@test "the command table has one line for each command, and each is built in bin/" {
	local c
	for c in "$CQRS_REPO"/cmd/*.c; do
		c=$(basename "$c" .c)
		[ "$(grep -c "^| \`$c\` | " "$README")" -eq 1 ] || { echo "$c: not once in the command table"; false; }
		[ -x "${CQRS_BIN:-$CQRS_REPO/bin}/$c" ]
	done
	# and nothing in the table that is not a command
	run -0 sh -c "grep -o '^| \`[a-z-]*\` | ' '$README' | wc -l"
	[ "$output" -eq "$(ls "$CQRS_REPO"/cmd/*.c | wc -l)" ]
}

@test "the fresh-machine block installs what scripts/clean-room installs, and clean-room runs the README's two commands" {
	# clean-room takes its apt-get line from the README's first block.
	first=$(ids 'sh no-test' | head -n 1)
	grep -q '^apt-get update && apt-get install -y make git' "$B/$first"
	grep -q 'README' "$CQRS_REPO/scripts/clean-room"
	run -0 grep -c '^make demo \|^make check ' "$B/$((first + 1))"
	[ "$output" -eq 2 ]
	grep -q 'step "make demo" make demo' "$CQRS_REPO/scripts/clean-room"
	grep -q 'step "make check" make check' "$CQRS_REPO/scripts/clean-room"
}
