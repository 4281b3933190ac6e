# Shared helpers for integration tests: a private work dir that is removed,
# with every process the test started, however the test ends.
set -u
WORK=$(mktemp -d /tmp/kura-test-XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }
# expect_fail "what" "expected text" cmd...: cmd must exit non-zero with one
# stderr line containing the text.
expect_fail() {
	what=$1; want=$2; shift 2
	out=$("$@" 2>&1 >/dev/null); rc=$?
	[ $rc -ne 0 ] || fail "$what: exit status 0"
	[ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "$what: expected one error line, got: $out"
	printf '%s' "$out" | grep -q -- "$want" || fail "$what: expected '$want' in: $out"
	echo "ok: $what: $out"
}
wait_socket() {
	i=0
	while [ ! -S "$1" ]; do
		i=$((i + 1)); [ $i -lt 500 ] || fail "socket $1 did not appear"
		sleep 0.02
	done
}
