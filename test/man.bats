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

@test "usage() prints exactly each page's SYNOPSIS on a usage error (64); -h prints it and the options (0)" {
	require_tool mandoc
	for c in $(commands); do
		want="usage: $(synopsis "$c")"
		run -64 --separate-stderr "$c" --no-such-option
		got=$(sed 1d <<<"$stderr" | tr -s ' \n' '  ' | sed 's/ $//')
		[ "$got" = "$want" ] || { printf '%s\n  usage: %s\n  man:   %s\n' "$c" "$got" "$want"; false; }
		run -0 --separate-stderr "$c" -h
		[ -z "$stderr" ]
		got=$(sed '/^$/,$d' <<<"$output" | tr -s ' \n' '  ' | sed 's/ $//')
		[ "$got" = "$want" ] || { printf '%s\n  -h:  %s\n  man: %s\n' "$c" "$got" "$want"; false; }
		# then one line per option of the synopsis
		for o in $(grep -o '\[-[a-zA-Z]\+\|--[a-z-]\+' <<<"$want" | tr -d '[' | sed 's/^-\([a-zA-Z]\)/\1/'); do
			case $o in
			--*) grep -q -- "$o" <<<"$output" || { echo "$c -h: no line for $o"; false; } ;;
			*) for ((k = 0; k < ${#o}; k++)); do
				grep -q -- "-${o:k:1}[, ]" <<<"$output" || { echo "$c -h: no line for -${o:k:1}"; false; }
			   done ;;
			esac
		done
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
