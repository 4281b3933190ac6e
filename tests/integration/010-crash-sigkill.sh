# blockd under a stream of writes, killed with SIGKILL at random moments and
# restarted; every acknowledged write is checked after each restart.
. "$(dirname "$0")/lib.sh"
"$BUILD/kura-crashtest" --blockd "$BUILD/blockd" --dir "$WORK/store" \
	--cycles "${KURA_CRASH_CYCLES:-50}" --seed "$(date +%s)" || fail "crash test"
