#!/bin/sh
# Runs every test: the unit tests (one runner), then the integration tests
# (numbered scripts under tests/integration/ that start real processes) and
# the cluster tests (tests/cluster/: hosts as network namespaces, etcd).
# Ends with one line "N passed, N failed, N skipped".
#   tests/run.sh BUILD_DIR        (make test; make test SAN=1 uses build-san)
# Environment: KURA_CRASH_CYCLES (default 50), KURA_CRASH_POINTS (fake-disk cut points per series, default 40)
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
export BUILD ROOT
passed=0 failed=0 skipped=0

echo "== unit tests"
out=$("$BUILD/unit-tests" 2>&1)
status=$?
echo "$out"
line=$(echo "$out" | tail -n 1)
p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p')
if [ -z "$p" ]; then
	echo "FAIL unit-tests (runner ended abnormally, status $status)"
	failed=$((failed + 1))
else
	set -- $p
	passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
fi

echo "== integration and cluster tests"
for t in "$ROOT"/tests/integration/[0-9]*.sh "$ROOT"/tests/cluster/[0-9]*.sh; do
	name=$(basename "$t" .sh)
	log=$(mktemp /tmp/kura-it-XXXXXX.log)
	start=$(date +%s)
	sh "$t" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	if [ $rc -eq 0 ]; then
		echo "ok   $name (${secs}s)"
		passed=$((passed + 1))
	elif [ $rc -eq 77 ]; then
		echo "skip $name: $(tail -n 1 "$log")"
		skipped=$((skipped + 1))
	else
		echo "FAIL $name (${secs}s, exit $rc); last lines:"
		# a sanitizer's leak report after a failure would fill the tail
		# and hide why the test failed: its stack lines are left out
		# (its SUMMARY line stays)
		grep -v -e "^cycle [0-9]*: verified" -e "^ *#[0-9][0-9]* 0x" -e "^ *Direct leak of" \
			-e "^ *Indirect leak of" -e "^ *$" "$log" | tail -n 30 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
	rm -f "$log"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
