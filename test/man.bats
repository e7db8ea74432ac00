#!/usr/bin/env bats
# man: every command has a page that mandoc accepts, whose SYNOPSIS is what -h prints.

load test_helper
bats_require_minimum_version 1.5.0

commands() {
	local c
	for c in "$CQRS_REPO"/cmd/*.c; do basename "$c" .c; done
}

@test "every command has a manual page and a test suite" {
	for c in $(commands); do
		[ -f "$CQRS_REPO/man/$c.1" ] || { echo "no man/$c.1"; false; }
		[ -f "$CQRS_REPO/test/$c.bats" ] || { echo "no test/$c.bats"; false; }
	done
}

@test "mandoc -Tlint -Wwarning accepts every page" {
	require_tool mandoc
	run -0 mandoc -Tlint -Wwarning "$CQRS_REPO"/man/*.1
	[ -z "$output" ]
}

@test "usage() prints exactly each page's SYNOPSIS, and -h exits 64" {
	require_tool mandoc
	for c in $(commands); do
		run -64 --separate-stderr "$c" -h
		want="usage: $(synopsis "$c")"
		got=$(tr -s ' \n' '  ' <<<"$stderr" | sed 's/ $//')
		[ "$got" = "$want" ] || { printf '%s\n  -h:  %s\n  man: %s\n' "$c" "$got" "$want"; false; }
	done
}

@test "every page has the sections of the house style, in order" {
	for c in $(commands); do
		got=$(grep '^\.Sh' "$CQRS_REPO/man/$c.1" | cut -d' ' -f2- | tr '\n' ' ')
		for s in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" EXAMPLES "SEE ALSO"; do
			[[ $got == *"$s"* ]] || { echo "$c: no $s section: $got"; false; }
		done
		order=$(grep -o 'NAME\|SYNOPSIS\|DESCRIPTION\|ENVIRONMENT\|FILES\|EXIT STATUS\|EXAMPLES\|SEE ALSO' <<<"$got" | tr '\n' ,)
		[[ $order == NAME,SYNOPSIS,DESCRIPTION,*EXIT\ STATUS,EXAMPLES,SEE\ ALSO, ]] || { echo "$c: order $order"; false; }
	done
}

@test "-V prints a version and exits 0" {
	for c in $(commands); do
		run -0 "$c" -V
		[[ $output == "$c (cqrs-pipes) "[0-9]* ]]
	done
}
